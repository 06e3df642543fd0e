"""Which handler answers which of our addresses: one table. A route
without a handler would not be accepted at RCPT time (and ``mailflow
ingest`` would keep such mail as unroutable)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.digest import subscriptions
from mailflow.notify.outbox import Outgoing
from mailflow.routing import Route
from mailflow.triage import Incoming
from mailflow.workflow import actions, people, registration, roster_mail, status
from mailflow.workflow.context import Handler, Workflow
from mailflow.workflow.flows import comment, internship, submission


def answer_help(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    """A form or an empty mail gets the help text; a question goes to a person."""
    if people.is_question(incoming.parsed.text):
        return people.forward_question(session, incoming, workflow)
    workflow.send(session, Outgoing("help", incoming.sender, answering=incoming))
    return "help: answered"


HANDLERS: dict[Route, Handler] = {
    Route.HELP: answer_help,
    Route.REGISTER: registration.handle_register,
    Route.SUBMIT: submission.handle_submission,
    Route.ACTIONS: actions.handle_action,
    Route.SUBSCRIBE: subscriptions.handle_subscribe,
    Route.UNSUBSCRIBE: subscriptions.handle_unsubscribe,
    Route.BOUNCES: subscriptions.record_bounce,
    Route.COMMENT: comment.handle_comment,
    Route.INTERNSHIP: internship.handle_internship,
    Route.STATUS: status.answer_status,
    Route.FOCAL_POINTS: roster_mail.handle_focal_points,
    Route.POSTMASTER: people.forward_mailbox,
    Route.ABUSE: people.forward_mailbox,
}
