"""The fixed vocabularies of the submission form: kinds and priority areas,
with the forgiving matching SPEC section 3 promises (numbers, names,
unambiguous prefixes, singular or plural, short forms, the seed portal's
own labels), and the closest accepted value to one that is not recognised."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from functools import cache, cached_property

from mailflow.closest import closest
from mailflow.economies import normalise_name
from mailflow.words import every_language, in_every_language, pgettext


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


# Folded; the marked names are also understood in every shipped language
# ("Buenas prácticas", "Kinh nghiệm").
_KIND_WORDS = in_every_language(
    {
        pgettext("kind", "Best practice"): Kind.BEST_PRACTICE,
        "best practices": Kind.BEST_PRACTICE,
        "bp": Kind.BEST_PRACTICE,
        "practice": Kind.BEST_PRACTICE,
        pgettext("kind", "Experience"): Kind.EXPERIENCE,
        "experiences": Kind.EXPERIENCE,
        "ex": Kind.EXPERIENCE,
        "exp": Kind.EXPERIENCE,
    },
    "kind",
)


def match_kind(written: str) -> Kind | None:
    return _KIND_WORDS.get(normalise_name(written))


def closest_kind(written: str) -> Kind | None:
    """The kind meant by a value ``match_kind`` did not recognise, if any
    is close ("Best practise")."""
    return closest(normalise_name(written), _KIND_WORDS.items())


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
            pgettext("area", "Access to Financial Services"),
            pgettext("area", "Access to Technology"),
            pgettext("area", "Management and Marketing Skills"),
            pgettext("area", "Compiling Information for Policy Adjustment"),
            pgettext("area", "Policy and Regulatory Frameworks"),
            pgettext("area", "Capacity Building"),
        ),
        start=1,
    )
)


# Whole labels for an area besides its name: the seed portal's categories
# ("Access to technologies" is area 2 by the plural rule alone) and the
# short names people write. Only labels that can mean one area; a single
# word such as "Marketing" is not one, it gets "did you mean" instead.
AREA_LABELS: Mapping[str, int] = {
    "access to finance": 1,
    "access to financing": 1,
    "financial services": 1,
    "management skills": 3,
    "marketing skills": 3,
    "regulatory frameworks": 5,
}


def area_by_number(number: int) -> PriorityArea:
    return AREAS[number - 1]


def match_area(written: str) -> PriorityArea | None:
    """By number ("1", "area 1", "1. Access..."), by name or label, or by
    a prefix that only one area's name starts with; singular or plural."""
    text = _singular(written)
    number = text.removeprefix("area ").removeprefix("priority area ").split(" ")[0]
    if number.isdigit() and 1 <= int(number) <= len(AREAS):
        return area_by_number(int(number))
    if not text:
        return None
    if text in _LABELS_FOLDED:
        return area_by_number(_LABELS_FOLDED[text])
    candidates = [a for a in AREAS if _singular(a.name).startswith(text)]
    if not candidates:  # a prefix of the name in another language
        candidates = [a for a in AREAS if any(n.startswith(text) for n in _names(a)[1:])]
    return candidates[0] if len(candidates) == 1 else None


@cache
def _names(area: PriorityArea) -> list[str]:
    """The area's name, then its names in the other languages, folded."""
    english = _singular(area.name)
    others = sorted(_singular(name) for name in every_language("area", area.name))
    return [english, *(name for name in others if name != english)]


def closest_area(written: str) -> PriorityArea | None:
    """The area meant by a value ``match_area`` did not recognise, if any
    is close: "Marketing" is a word of area 3's name."""
    names = [(name, area) for area in AREAS for name in _names(area)]
    labels = [(label, area_by_number(number)) for label, number in _LABELS_FOLDED.items()]
    return closest(_singular(written), [*names, *labels])


def _singular(text: str) -> str:
    """The folded name with each word in the singular, the English way:
    "technologies" is "technology", "services" is "service"; "access" and
    "business" stay as they are."""
    return " ".join(_singular_word(word) for word in normalise_name(text).split())


def _singular_word(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


_LABELS_FOLDED = {
    **{name: area.number for area in AREAS for name in _names(area)[1:]},
    **{_singular(label): number for label, number in AREA_LABELS.items()},
}
