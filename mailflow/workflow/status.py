"""Mail to ``status@``, or an author's reply whose first word is
``status``: the sender hears where each of their cases stands (SPEC
section 4).

Read-only: a status request changes no case. The answer goes to the
sender's own address, so asking in someone else's name tells the asker
nothing.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.notify.outbox import Outgoing
from mailflow.scheduling import waiting
from mailflow.store import queries
from mailflow.triage import Incoming
from mailflow.workflow.context import Workflow
from mailflow.workflow.states import Event


def answer_status(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    """One email listing the sender's cases: ID, title, state, on whom each
    waits and since when (the newest first)."""
    cases = [
        waiting.describe(session, case, workflow)
        for case in queries.cases_of(session, incoming.sender)
    ]
    # How to withdraw is told only where it can be done: not for a case
    # that is published, rejected or withdrawn already.
    withdrawable = any(
        workflow.flows.of(w.case).next_state(w.case.state, Event.WITHDRAWN) for w in cases
    )
    workflow.send(
        session,
        Outgoing(
            "status",
            incoming.sender,
            {"cases": cases, "sender": incoming.sender, "withdrawable": withdrawable},
            answering=incoming,
            earned=bool(cases),
        ),
    )
    return f"status: {len(cases)} case(s) listed"
