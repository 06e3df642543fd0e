"""What a submission says and what it still lacks, as pure functions.

``read_submission`` turns the form of one message into recognised values
and problems (a value we could not match, with the closest accepted one);
``missing`` names the required fields a case still lacks. Each problem
carries the accepted values, so the one reply an author gets tells them
exactly what to write. A value copied unchanged from the example forms of
our own emails was not written by the author: it counts as not given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import parseaddr
from functools import cache

from mailflow.catalogs import SHIPPED
from mailflow.economies import Economies, normalise_name
from mailflow.forms import parse_form
from mailflow.notify.render import TEMPLATES, Renderer
from mailflow.parse import answerable
from mailflow.store.models import Case
from mailflow.vocab import Kind, closest_area, closest_kind, match_area, match_kind

# "Best practice   (or: Experience)" copied from the form still matches.
_TRAILING_HINT = re.compile(r"\s*\([^()]*\)\s*$")
_SUBJECT_NOISE = re.compile(r"^\s*((re|fw|fwd|aw|tr)\s*:\s*)+", re.IGNORECASE)
_CASE_TAG = re.compile(r"\[(?:BP|EX|IN|CM)-\d{4}-\d{4}\]\s*", re.IGNORECASE)

# Bounds of the columns the values go to; longer text is cut, not refused.
_LONGEST = {"title": 500, "organization": 300, "second_contact": 400}


@dataclass(frozen=True)
class Problem:
    """One thing the author must fix, as codes: which field of the form
    (``title``, ``economy``, ``area``...), what is wrong with it
    (``missing``, ``unrecognised``, ``not_a_document``, ``too_large``,
    ``no_published_case``), what they wrote and, for a value we could not
    recognise, the closest accepted one as a code (an area's number, an
    economy's code, a kind's value; empty when nothing is close).
    ``templates/mail/_problems`` says it, with the accepted values."""

    field: str
    code: str = "missing"
    value: str = ""
    closest: str = ""


@dataclass
class Submission:
    """The recognised values of one message; None means "not given"."""

    title: str | None = None
    kind: Kind | None = None
    economy: str | None = None
    area: int | None = None
    organization: str | None = None
    summary: str | None = None
    second_contact: str | None = None
    name: str | None = None
    problems: list[Problem] = field(default_factory=list)


def without_hint(value: str) -> str:
    return _TRAILING_HINT.sub("", value).strip()


def title_from_subject(subject: str) -> str:
    return _CASE_TAG.sub("", _SUBJECT_NOISE.sub("", subject)).strip()


# The example forms of our emails: their values are placeholders. The help
# form is rendered in every language (its labels are); the other is read as
# written.
HELP_FORM = "mail/_form.txt.j2"
EXAMPLE_FORMS = ("mail/internship_incomplete.txt.j2",)


@cache
def placeholders() -> frozenset[str]:
    """The values of the example forms that are not accepted values,
    folded as names are compared; lines that the templates fill in
    (``{{ }}``, ``{% %}``) are skipped."""
    found: set[str] = set()
    forms = [Renderer().render(HELP_FORM, language=language) for language in SHIPPED]
    for name in EXAMPLE_FORMS:
        text = (TEMPLATES / name).read_text(encoding="utf-8")
        forms.append("\n".join(line for line in text.splitlines() if "{" not in line))
    for form in forms:
        for value in parse_form(form).values():
            if not (match_kind(value) or match_area(value)):  # "Best practice" is real
                found.add(_folded(value))
    return frozenset(found - {""})


def is_placeholder(value: str) -> bool:
    return _folded(value) in placeholders()


def read_submission(form: dict[str, str], economies: Economies) -> Submission:
    """The recognised values and the problems of one message's form; a
    placeholder is not given, and is no problem either."""
    result = Submission(
        title=_given(form.get("title")),
        organization=_text(form.get("organization")),
        summary=_given(form.get("summary")),
        second_contact=_text(form.get("second_contact")),
        name=_text(form.get("name")),
    )
    if written := form.get("kind"):
        result.kind = match_kind(written) or match_kind(without_hint(written))
        if result.kind is None and not is_placeholder(written):
            kind = closest_kind(without_hint(written))
            result.problems.append(_unrecognised("kind", written, kind.value if kind else ""))
    if written := form.get("economy"):
        economy = economies.match(written) or economies.match(without_hint(written))
        result.economy = economy.code if economy else None
        if economy is None and not is_placeholder(written):
            near = economies.closest(without_hint(written))
            result.problems.append(_unrecognised("economy", written, near.code if near else ""))
    if written := form.get("area"):
        area = match_area(written) or match_area(without_hint(written))
        result.area = area.number if area else None
        if area is None and not is_placeholder(written):
            near_area = closest_area(without_hint(written))
            closest = str(near_area.number) if near_area else ""
            result.problems.append(_unrecognised("area", written, closest))
    return result


def given(submission: Submission) -> dict[str, str | int]:
    """The values the form gives, cut to their columns' bounds."""
    values = {
        "title": submission.title,
        "kind": submission.kind.value if submission.kind else None,
        "economy": submission.economy,
        "area": submission.area,
        "organization": submission.organization,
        "summary": submission.summary,
        "second_contact": submission.second_contact,
    }
    return {
        name: value[: _LONGEST.get(name, 100_000)] if isinstance(value, str) else value
        for name, value in values.items()
        if value is not None
    }


def apply(case: Case, submission: Submission) -> list[str]:
    """Copy the given values onto the case; returns the names of the
    fields that changed (shown to a reviewer of a revision)."""
    changed: list[str] = []
    for name, value in given(submission).items():
        if getattr(case, name) != value:
            setattr(case, name, value)
            changed.append(name)
    return changed


REQUIRED = ("title", "kind", "economy", "area", "organization", "summary")


def missing(case: Case) -> list[Problem]:
    """The required fields the case still lacks (the document aside)."""
    return [Problem(name) for name in REQUIRED if not getattr(case, name)]


def missing_document(refused: list[str]) -> Problem:
    """No document: the names of the attachments that were not one."""
    if refused:
        return Problem("document", "not_a_document", ", ".join(refused))
    return Problem("document")


def document_too_large(filename: str) -> Problem:
    """Larger than [limits].max_attachment_bytes."""
    return Problem("document", "too_large", filename)


@dataclass(frozen=True)
class Author:
    """The person an ``Author: Name <address>`` line names."""

    name: str
    email: str


def read_author(written: str) -> Author | Problem:
    """The author a line names, or the problem with it: an address we could
    not write to is ``unrecognised``, like any value we cannot use."""
    name, email = parseaddr(written)
    email = email.strip().lower()
    if "@" not in email or not answerable(email) or is_placeholder(written):
        return _unrecognised("author", written, "")
    return Author(" ".join(name.split())[:200], email)


def _unrecognised(name: str, written: str, closest: str) -> Problem:
    return Problem(name, "unrecognised", written[:80], closest)


def _given(value: str | None) -> str | None:
    return None if not value or is_placeholder(value) else value


def _text(value: str | None) -> str | None:
    return _given(without_hint(value) if value else None)


def _folded(value: str) -> str:
    return normalise_name(without_hint(value))
