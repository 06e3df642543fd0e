"""What a case is made of over time: the documents it was sent with (every
one kept; the newest is the case's) and a language editor's corrections,
each a new version whose earlier one stays in the history.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.documents import Document as PickedDocument
from mailflow.documents import pick_document
from mailflow.forms import parse_form, strip_reply
from mailflow.notify.outbox import Outgoing
from mailflow.parse import Attachment
from mailflow.store.files import files_of
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
    found = acceptable(attachments, workflow.settings.limits.max_attachment_bytes)
    if isinstance(found, Problem):
        return [found]
    keep(session, case, incoming, workflow, found)
    return []


def acceptable(attachments: tuple[Attachment, ...], largest: int) -> PickedDocument | Problem:
    """The document to keep among a message's files, or why there is none:
    none of them is a document, or it is larger than ``largest`` bytes."""
    document, refused = pick_document(attachments)
    if document is None:
        return fields.missing_document(refused)
    if len(document.content) > largest:
        return fields.document_too_large(document.filename)
    return document


def keep(
    session: Session, case: Case, incoming: Incoming, workflow: Workflow, document: PickedDocument
) -> None:
    """Store ``document`` as the case's newest; the earlier ones stay."""
    # Last in the list, as the newest by id: the list is the case's as the
    # database will have it, without reading it back.
    case.documents.append(
        Document(
            message_id=incoming.record.id,
            filename=document.filename,
            content_type=document.content_type,
            size=len(document.content),
            sha256=files_of(session).put(document.content),  # on disk before the commit
            created_at=workflow.clock.now(),
        )
    )


# Text a mail client attaches on its own (a contact card, an invitation):
# never an editor's corrected document.
_NOT_A_CORRECTION = ("text/vcard", "text/x-vcard", "text/directory", "text/calendar")


def corrected_document(incoming: Incoming, case: Case) -> PickedDocument | None:
    """The document an editor's message brings as the case's new version: a
    real document, or plain text only where the case's own document is
    plain text (a signature or contact card is not a correction)."""
    attachments = tuple(
        a for a in incoming.parsed.attachments if a.declared_type.lower() not in _NOT_A_CORRECTION
    )
    document, _ = pick_document(attachments)
    if document is None:
        return None
    current = case.document
    if document.extension == "txt" and not (current and current.content_type == "text/plain"):
        return None
    return document


def brings_correction(incoming: Incoming, case: Case) -> bool:
    """A corrected document attached, or a ``Summary:`` line."""
    return corrected_document(incoming, case) is not None or bool(_summary(incoming))


def correction_refused(incoming: Incoming, case: Case, workflow: Workflow) -> list[Problem]:
    """Why a corrected document cannot be taken (too large), before
    anything moves: the editor is told, and the case waits for them."""
    document = corrected_document(incoming, case)
    if document and len(document.content) > workflow.settings.limits.max_attachment_bytes:
        return [fields.document_too_large(document.filename)]
    return []


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
    document = corrected_document(incoming, case)
    if document is not None:
        keep(session, case, incoming, workflow, document)
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
