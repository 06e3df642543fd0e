"""What a case is made of over time: the documents it was sent with (every
one kept; the newest is the case's) and a language editor's corrections,
each a new version whose earlier one stays in the history.
"""

from __future__ import annotations

import hashlib

from sqlalchemy.orm import Session

from mailflow.documents import pick_document
from mailflow.forms import parse_form, strip_reply
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case, Document
from mailflow.triage import Incoming
from mailflow.workflow import fields, reviewing
from mailflow.workflow.context import Workflow
from mailflow.workflow.fields import Problem

SUMMARY_LIMIT = 100_000


def attach_document(
    session: Session, case: Case, incoming: Incoming, workflow: Workflow
) -> list[Problem]:
    """Keep the first acceptable attachment as the case's newest document;
    say why none was, if one was sent."""
    attachments = incoming.parsed.attachments
    if not attachments:
        return []
    document, refused = pick_document(attachments)
    if document is None:
        return [fields.missing_document(refused)]
    if len(document.content) > workflow.settings.limits.max_attachment_bytes:
        return [fields.document_too_large(document.filename)]
    session.add(
        Document(
            case_id=case.id,
            message_id=incoming.record.id,
            filename=document.filename,
            content_type=document.content_type,
            size=len(document.content),
            sha256=hashlib.sha256(document.content).hexdigest(),
            content=document.content,
            created_at=workflow.clock.now(),
        )
    )
    session.flush()
    session.refresh(case, ["documents"])
    return []


def brings_correction(incoming: Incoming) -> bool:
    """A corrected document attached, or a ``Summary:`` line."""
    document, _ = pick_document(incoming.parsed.attachments)
    return document is not None or bool(_summary(incoming))


def correct(session: Session, case: Case, workflow: Workflow, incoming: Incoming) -> list[str]:
    """An editor's correction becomes the case's new version: the history
    keeps the summary it replaces (and every document stays), and the
    author is told what changed. Returns what changed."""
    changed = []
    earlier = case.summary
    summary = _summary(incoming)
    if summary and summary != earlier:
        case.summary = summary[:SUMMARY_LIMIT]
        changed.append("summary")
    before = case.document
    if not attach_document(session, case, incoming, workflow) and case.document is not before:
        changed.append("document")
    if not changed:
        return []
    workflow.engine.record(
        session,
        case,
        "corrected",
        incoming.sender,
        incoming.record,
        note=", ".join(changed) + (f"; the summary was: {earlier}" if "summary" in changed else ""),
    )
    workflow.send(
        session,
        Outgoing(
            "case_corrected",
            case.author.email,
            {**reviewing.case_values(case, workflow), "changed": changed},
            case=case,
            reply_to=workflow.author_reply_to(session, case),  # a question goes to a person
        ),
    )
    return changed


def _summary(incoming: Incoming) -> str:
    return parse_form(strip_reply(incoming.parsed.text)).get("summary", "").strip()
