"""Review requests that cannot be delivered (SPEC section 8, "Delivery
failures").

A request to review, endorse, edit or host that fails for good leaves a
case waiting on somebody who will never hear of it: the administrators
are told at once, in the transaction that records the failure. Other
failures (an acknowledgement, a digest) wait for the daily summary.

Never mails the failing address about its own failure: an administrator
whose mailbox refuses is left out, and with nobody else to tell, the log
line is all there is.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case, OutboxMessage
from mailflow.workflow.context import Workflow

log = logging.getLogger(__name__)


def review_templates(workflow: Workflow) -> frozenset[str]:
    """The emails that ask somebody to decide: each stage's request."""
    return frozenset(stage.template for flow in workflow.flows for stage in flow.stages)


def tell_admins_of_failure(session: Session, row: OutboxMessage, workflow: Workflow) -> None:
    if row.template not in review_templates(workflow):
        return
    failing = row.recipient.lower()
    admins = [admin for admin in workflow.admins if admin.lower() != failing]
    if not admins:
        log.error(
            "outbox %s: nobody else to tell that %s did not get %s",
            row.id,
            row.recipient,
            row.template,
        )
        return
    case = session.get(Case, row.case_id) if row.case_id is not None else None
    for admin in admins:
        workflow.send(
            session,
            Outgoing(
                "delivery_failed",
                admin,
                {
                    "outbox_id": row.id,
                    "recipient": row.recipient,
                    "failed_template": row.template,
                    "reply": row.last_error,
                },
                case=case,
            ),
        )
