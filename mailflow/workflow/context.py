"""The services every workflow handler uses, built once by ``app``.

A handler has the signature ``handler(session, incoming, workflow) -> outcome``:
it receives the open transaction, changes cases only through the engine,
writes emails only through ``workflow.send`` (the outbox, same
transaction), and returns the outcome recorded on the incoming message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailflow.clock import Clock
from mailflow.config import Settings
from mailflow.economies import Economies
from mailflow.notify.outbox import Outbox, Outgoing
from mailflow.routing import Route, Router
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

    def action_address(self, token: str) -> str:
        return self.router.address(Route.ACTIONS, token)

    def author_reply_to(self, session: Session, case: Case) -> str:
        """A Reply-To for the author: their replies revise or withdraw the
        case for as long as it allows that (bound to case, not stage)."""
        token = self.tokens.issue(session, "author", case.author.email, case=case, stage="")
        return self.action_address(token)


Handler = Callable[[Session, Incoming, Workflow], str]
