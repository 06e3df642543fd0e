"""What a submission says and what it still lacks, as pure functions.

``read_submission`` turns the form of one message into recognised values
and problems (a value we could not match); ``missing`` names the required
fields a case still lacks. Each problem carries the accepted values, so
the one reply an author gets tells them exactly what to write.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from mailflow.economies import Economies
from mailflow.store.models import Case
from mailflow.vocab import Kind, match_area, match_kind

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
    ``no_published_case``) and what they wrote. ``templates/mail/_problems``
    says it, with the accepted values."""

    field: str
    code: str = "missing"
    value: str = ""


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


def read_submission(form: dict[str, str], economies: Economies) -> Submission:
    result = Submission(
        title=form.get("title"),
        organization=_text(form.get("organization")),
        summary=form.get("summary"),
        second_contact=_text(form.get("second_contact")),
        name=_text(form.get("name")),
    )
    if "kind" in form:
        result.kind = match_kind(form["kind"]) or match_kind(without_hint(form["kind"]))
        if result.kind is None:
            result.problems.append(_unrecognised("kind", form["kind"]))
    if "economy" in form:
        economy = economies.match(form["economy"]) or economies.match(without_hint(form["economy"]))
        result.economy = economy.code if economy else None
        if economy is None:
            result.problems.append(_unrecognised("economy", form["economy"]))
    if "area" in form:
        area = match_area(form["area"]) or match_area(without_hint(form["area"]))
        result.area = area.number if area else None
        if area is None:
            result.problems.append(_unrecognised("area", form["area"]))
    return result


def apply(case: Case, submission: Submission) -> list[str]:
    """Copy the given values onto the case; returns the names of the
    fields that changed (shown to a reviewer of a revision)."""
    changed: list[str] = []
    values = {
        "title": submission.title,
        "kind": submission.kind.value if submission.kind else None,
        "economy": submission.economy,
        "area": submission.area,
        "organization": submission.organization,
        "summary": submission.summary,
        "second_contact": submission.second_contact,
    }
    for name, value in values.items():
        if isinstance(value, str):
            value = value[: _LONGEST.get(name, 100_000)]
        if value is not None and getattr(case, name) != value:
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


def _unrecognised(name: str, written: str) -> Problem:
    return Problem(name, "unrecognised", written[:80])


def _text(value: str | None) -> str | None:
    return without_hint(value) if value else None
