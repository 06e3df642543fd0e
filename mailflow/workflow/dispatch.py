"""Which handler answers which of our addresses: one table.

Routes without a handler yet (subscribe, internship, comment...) are not
accepted at RCPT time; ``mailflow ingest`` keeps such mail as unroutable.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.notify.outbox import Outgoing
from mailflow.routing import Route
from mailflow.triage import Incoming
from mailflow.workflow import actions, registration, submissions
from mailflow.workflow.context import Handler, Workflow


def answer_help(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    workflow.send(session, Outgoing("help", incoming.sender, answering=incoming))
    return "help: answered"


def keep_bounce(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    """Mail to our return path that did not look like a bounce: kept, unanswered."""
    return "kept: mail to the bounce address"


HANDLERS: dict[Route, Handler] = {
    Route.HELP: answer_help,
    Route.REGISTER: registration.handle_register,
    Route.SUBMIT: submissions.handle_submission,
    Route.ACTIONS: actions.handle_action,
    Route.BOUNCES: keep_bounce,
}
