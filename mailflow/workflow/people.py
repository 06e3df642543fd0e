"""Mail that only a person can answer goes to the administrators.

Three kinds of it (SPEC section 2): a question to ``help@`` (free text, no
line of the form), an author's reply about a case that neither acts on it
nor changes it, and everything sent to ``postmaster@`` and ``abuse@`` (the
mailboxes RFC 5321 and RFC 2142 require). Each administrator gets one
email with the sender's text and the sender as ``Reply-To``, so their
answer goes straight to the person. Who asked a question is told, at most
once a day, that a person will answer; ``postmaster@`` and ``abuse@`` are
never answered at all.

The forwards are notifications to the administrators, not answers to the
sender: the outbox's limits on automatic answers (counted per recipient)
must never hold one back. Never forwards machine mail to ``help@`` or
about a case (the triage keeps it from every handler); at ``postmaster@``
and ``abuse@`` machine mail is what arrives, and it is forwarded too.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy.orm import Session

from mailflow.forms import DIGEST_KEYS, SUBMISSION_KEYS, comment_text, parse_form, strip_reply
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case
from mailflow.triage import Incoming
from mailflow.workflow import reviewing
from mailflow.workflow.context import Workflow

# Told at most once a day that a person will answer: a conversation with an
# administrator does not get the same note after each message.
NOTICE_INTERVAL = timedelta(days=1)

# The keys of the submission and the registration forms: a mail with one of
# them filled in is a form (it gets the help text), anything else a question.
FORM_KEYS = {**SUBMISSION_KEYS, **DIGEST_KEYS}

# The start of the original's header block shown to the administrators:
# enough for every Received line of an ordinary message.
HEADER_CHARS = 8000


def is_form(text: str) -> bool:
    """Whether the text fills in at least one line of a form."""
    return bool(parse_form(text, FORM_KEYS))


def is_question(text: str) -> bool:
    """Free text that is not a form: a question, a complaint."""
    return bool(strip_reply(text).strip()) and not is_form(text)


def forward_question(
    session: Session, incoming: Incoming, workflow: Workflow, case: Case | None = None
) -> str:
    """Each administrator gets the question with the sender as Reply-To;
    the sender hears, once a day at most, that a person will answer."""
    sender = incoming.sender
    values = forward_to_admins(session, incoming, workflow, case)
    if case is not None:
        workflow.engine.record(
            session,
            case,
            "question_forwarded",
            sender,
            incoming.record,
            note=f"not changed: the case is {case.state}",
        )
    about = f" about {case.public_id}" if case is not None else ""
    if workflow.sent_lately(session, sender, "question_received", NOTICE_INTERVAL):
        return f"question{about} forwarded to the administrators (sender told already today)"
    workflow.send(
        session,
        Outgoing("question_received", sender, values, case=case, answering=incoming),
    )
    return f"question{about} forwarded to the administrators"


def forward_to_admins(
    session: Session, incoming: Incoming, workflow: Workflow, case: Case | None = None
) -> dict[str, Any]:
    """Each administrator gets the sender's text with the sender as
    Reply-To, so their answer goes straight to the person. Returns the
    case's values, for the note to the sender."""
    sender = incoming.sender
    question = comment_text(incoming.parsed.text) or incoming.parsed.text.strip()
    values = reviewing.case_values(case, workflow) if case is not None else {}
    for admin in workflow.admins:
        workflow.send(
            session,
            Outgoing(
                "question_forwarded",
                admin,
                {
                    **values,
                    "sender": sender,
                    "sender_name": incoming.parsed.sender_name,
                    "subject": incoming.parsed.subject,
                    "text": question,
                },
                case=case,
                reply_to=sender,
            ),
        )
    return values


def forward_mailbox(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    """Mail to postmaster@ or abuse@: to the administrators, with its
    headers and text; nobody else hears of it."""
    assert incoming.destination is not None
    parsed = incoming.parsed
    sender = parsed.sender
    reply_to = sender if sender and not workflow.router.is_ours(sender) else ""
    for admin in workflow.admins:
        workflow.send(
            session,
            Outgoing(
                "mailbox_forwarded",
                admin,
                {
                    "mailbox": incoming.destination.address,
                    "sender": sender,
                    "envelope_sender": incoming.envelope.sender,
                    "subject": parsed.subject,
                    "headers": _header_block(incoming.record.raw),
                    "text": parsed.text.strip(),
                    "attachments": [a.filename for a in parsed.attachments],
                },
                reply_to=reply_to,
            ),
        )
    return f"{incoming.destination.route}: forwarded to the administrators, not answered"


def _header_block(raw: bytes) -> str:
    """The original's headers as they came, for a postmaster's eyes."""
    end = min((i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0), default=-1)
    head = raw[:end] if end >= 0 else raw
    return head[:HEADER_CHARS].decode("utf-8", "replace").replace("\r\n", "\n")
