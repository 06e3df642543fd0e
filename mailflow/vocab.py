"""The fixed vocabularies of the submission form: kinds and priority areas,
with the forgiving matching SPEC section 3 promises (numbers, names,
unambiguous prefixes, short forms)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from functools import cached_property

from mailflow.economies import normalise_name


class Kind(StrEnum):
    """What a case is. Submissions are best practices or experiences (the
    form's ``Kind:``); comments and internship applications are cases too,
    about a published one, with their own IDs and flows."""

    BEST_PRACTICE = "best_practice"
    EXPERIENCE = "experience"
    COMMENT = "comment"
    INTERNSHIP = "internship"

    @property
    def label(self) -> str:
        return _LABELS[self]

    @property
    def prefix(self) -> str:
        return _PREFIXES[self]

    @property
    def is_submission(self) -> bool:
        return self in (Kind.BEST_PRACTICE, Kind.EXPERIENCE)


_LABELS = {
    Kind.BEST_PRACTICE: "Best practice",
    Kind.EXPERIENCE: "Experience",
    Kind.COMMENT: "Comment",
    Kind.INTERNSHIP: "Internship application",
}
_PREFIXES = {
    Kind.BEST_PRACTICE: "BP",
    Kind.EXPERIENCE: "EX",
    Kind.COMMENT: "CM",
    Kind.INTERNSHIP: "IN",
}


_KIND_WORDS = {
    "best practice": Kind.BEST_PRACTICE,
    "best practices": Kind.BEST_PRACTICE,
    "bp": Kind.BEST_PRACTICE,
    "practice": Kind.BEST_PRACTICE,
    "experience": Kind.EXPERIENCE,
    "experiences": Kind.EXPERIENCE,
    "ex": Kind.EXPERIENCE,
    "exp": Kind.EXPERIENCE,
}


def match_kind(written: str) -> Kind | None:
    return _KIND_WORDS.get(normalise_name(written))


@dataclass(frozen=True)
class PriorityArea:
    number: int
    name: str

    @cached_property
    def slug(self) -> str:
        return normalise_name(self.name).replace(" ", "-")


AREAS: tuple[PriorityArea, ...] = tuple(
    PriorityArea(number, name)
    for number, name in enumerate(
        (
            "Access to Financial Services",
            "Access to Technology",
            "Management and Marketing Skills",
            "Compiling Information for Policy Adjustment",
            "Policy and Regulatory Frameworks",
            "Capacity Building",
        ),
        start=1,
    )
)


def area_by_number(number: int) -> PriorityArea:
    return AREAS[number - 1]


def match_area(written: str) -> PriorityArea | None:
    """By number ("1", "area 1", "1. Access..."), by name, or by a prefix
    that only one area's name starts with."""
    text = normalise_name(written)
    number = text.removeprefix("area ").removeprefix("priority area ").split(" ")[0]
    if number.isdigit() and 1 <= int(number) <= len(AREAS):
        return area_by_number(int(number))
    if not text:
        return None
    candidates = [a for a in AREAS if normalise_name(a.name).startswith(text)]
    return candidates[0] if len(candidates) == 1 else None
