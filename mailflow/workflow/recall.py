"""What the author's earlier messages about a case said that we could not
take, read again from the messages themselves.

A problem found when a message arrived is told at once only when the case
can go on at once; a submission from an unconfirmed sender waits for the
confirmation, and the reply that lists what to fix comes after it. The raw
message is the source of truth, so the problems are read again from it
rather than stored: "Priority area: Marketing" stays "not recognised, did
you mean 3 ...?", and a file that is no document stays "practice is not a
PDF ... file" (a document too large, "larger than"); none of them ever
becomes "missing" as if nothing had been sent.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.economies import Economies
from mailflow.forms import parse_form
from mailflow.parse import ParsedMessage, parse_message
from mailflow.store import queries
from mailflow.store.models import Case
from mailflow.workflow import fields, versions
from mailflow.workflow.fields import Problem, read_submission


def authors_messages(session: Session, case: Case) -> list[ParsedMessage]:
    """The author's messages about the case, parsed again, the newest first."""
    return [parse_message(message.raw) for message in queries.authors_messages(session, case)]


def unrecognised(messages: list[ParsedMessage], case: Case, economies: Economies) -> list[Problem]:
    """The values we could not recognise in ``messages``, for the fields
    the case still lacks."""
    found: list[Problem] = []
    for message in messages:
        problems = read_submission(parse_form(message.text), economies).problems
        found += [p for p in problems if not getattr(case, p.field, None)]
    return found


def document_problem(messages: list[ParsedMessage], largest: int) -> Problem:
    """Why the case has no document, as the newest of ``messages`` that
    brought files said it: its document was larger than ``largest`` bytes,
    or none of its files was a document; "missing" when none brought one."""
    for message in messages:
        found = versions.acceptable(message.attachments, largest) if message.attachments else None
        if isinstance(found, Problem):
            return found
    return fields.missing_document([])
