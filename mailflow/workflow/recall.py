"""What the author's earlier messages about a case said that we could not
recognise, read again from the messages themselves.

A problem found when a message arrived is told at once only when the case
can go on at once; a submission from an unconfirmed sender waits for the
confirmation, and the reply that lists what to fix comes after it. The raw
message is the source of truth, so the problems are read again from it
rather than stored: "Priority area: Marketing" stays "not recognised, did
you mean 3 ...?" and never becomes "missing".
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.economies import Economies
from mailflow.forms import parse_form
from mailflow.parse import parse_message
from mailflow.store import queries
from mailflow.store.models import Case
from mailflow.workflow.fields import Problem, read_submission


def unrecognised(session: Session, case: Case, economies: Economies) -> list[Problem]:
    """The values we could not recognise in the author's messages about
    the case, for the fields the case still lacks, the newest first."""
    found: list[Problem] = []
    for message in queries.authors_messages(session, case):
        form = parse_form(parse_message(message.raw).text)
        problems = read_submission(form, economies).problems
        found += [p for p in problems if not getattr(case, p.field, None)]
    return found
