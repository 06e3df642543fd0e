"""The services every workflow handler uses, built once by ``app``.

A handler has the signature ``handler(session, incoming, workflow) -> outcome``:
it receives the open transaction, changes cases only through the engine,
writes emails only through ``workflow.send`` (the outbox, same
transaction), and returns the outcome recorded on the incoming message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.orm import Session

from mailflow.clock import Clock
from mailflow.config import Settings
from mailflow.economies import Economies
from mailflow.notify.outbox import Outbox, Outgoing
from mailflow.routing import Route, Router
from mailflow.store import queries
from mailflow.store.models import Case
from mailflow.tokens import Tokens
from mailflow.triage import Incoming
from mailflow.workflow.engine import Engine
from mailflow.workflow.flow import Flows


@dataclass(frozen=True)
class Workflow:
    settings: Settings
    router: Router
    economies: Economies
    engine: Engine
    flows: Flows
    tokens: Tokens
    outbox: Outbox
    clock: Clock

    @property
    def admins(self) -> list[str]:
        return list(self.settings.admin.addresses)

    def send(self, session: Session, outgoing: Outgoing) -> None:
        self.outbox.enqueue(session, outgoing)

    def sent_lately(self, session: Session, address: str, template: str, within: timedelta) -> bool:
        """Whether ``address`` got ``template`` within the interval: for the
        notes a person gets once in a while, not with every message."""
        if session.get_bind().dialect.name == "postgresql":
            # Two messages from one address in parallel transactions must
            # not both see "not sent yet": they queue on a lock held until
            # commit. (SQLite's BEGIN IMMEDIATE runs writers one at a time.)
            session.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:key))"),
                {"key": f"{template}:{address}"},
            )
        since = self.clock.now() - within
        return queries.emails_since(session, address, template, since) > 0

    def action_address(self, token: str) -> str:
        return self.router.address(Route.ACTIONS, token)

    def author_reply_to(self, session: Session, case: Case) -> str:
        """A Reply-To for the author: their replies revise or withdraw the
        case for as long as it allows that (bound to case, not stage)."""
        token = self.tokens.issue(session, "author", case.author.email, case=case, stage="")
        return self.action_address(token)


Handler = Callable[[Session, Incoming, Workflow], str]
