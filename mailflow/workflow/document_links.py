"""Documents too large to attach (SPEC section 8): a review email links
the document instead, with a private link of its own for each reviewer.

The link carries a token bound to case, stage and reviewer; it is not
spent by a download (a reviewer may open it again), and it ends with the
reviewer's action tokens: when it expires or the case leaves the stage
(decided, withdrawn, rejected). The archive's web server answers it.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.notify.outbox import FileAttachment
from mailflow.store.models import Case, Document
from mailflow.workflow.context import Workflow

ACTION = "document"
PATH = "/documents/"


def too_large(document: Document, workflow: Workflow) -> bool:
    return document.size > workflow.settings.outbound.max_attachment_bytes


def link_for(session: Session, case: Case, workflow: Workflow, person: str) -> str:
    """A new private link to the case's document for ``person``."""
    secret = workflow.tokens.issue(session, ACTION, person, case=case)
    return workflow.settings.site.base_url.rstrip("/") + PATH + secret


def linked_document(session: Session, workflow: Workflow, secret: str) -> FileAttachment | None:
    """The document a link still opens, or None for any link that does
    not (unknown, expired, its stage over)."""
    token = workflow.tokens.follow(session, secret, ACTION)
    if token is None:
        return None
    case = session.get(Case, token.case_id)
    document = case.document if case else None
    if document is None:
        return None
    return FileAttachment(document.filename, document.content_type, document.content)
