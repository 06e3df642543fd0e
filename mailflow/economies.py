"""The 21 APEC economies and the forgiving matching of what people write.

The list ships as package data (``data/economies.toml``); ``[economies.XX]``
tables in the config change single keys of it. Matching accepts the name,
the ISO code, a common alias or the name CLDR gives it in a shipped
language, ignoring case, accents, punctuation and a leading "the", so
"Viet Nam", "vietnam", "VN" and "越南" are the same economy.
"""

from __future__ import annotations

import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from typing import Any

from mailflow.catalogs import territory_names
from mailflow.closest import closest


@dataclass(frozen=True)
class Economy:
    code: str
    name: str
    aliases: tuple[str, ...]
    travel_eligible: bool
    focal_points: tuple[str, ...] = ()
    language: str = "en"  # a shipped tag (mailflow.languages)


def normalise_name(text: str) -> str:
    """Fold a written name to the form used for comparisons."""
    words = "".join(map(fold_char, text)).split()
    if words and words[0] == "the":
        words = words[1:]
    return " ".join(words)


@lru_cache(maxsize=4096)
def fold_char(char: str) -> str:
    """One written character as comparisons see it: without accents or
    tones, in lower case, punctuation as a space. "đ" is a "d" (people type
    "dong y" for "đồng ý"); Thai keeps its marks, which tell words apart
    ("ใช่" is yes, "ใช้" is use), and the vowel signs of any script that are
    not accents stay part of the word."""
    if "\u0e00" <= char <= "\u0e7f":
        return char
    decomposed = unicodedata.normalize("NFKD", char)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "".join(
        c if c.isalnum() or unicodedata.category(c).startswith("M") else " "
        for c in letters.casefold().replace("đ", "d")
    )


def builtin_economies() -> dict[str, Economy]:
    raw = tomllib.loads(resources.files("mailflow").joinpath("data/economies.toml").read_text())
    return {
        code: Economy(
            code=code,
            name=entry["name"],
            aliases=tuple(entry["aliases"]),
            travel_eligible=entry["travel_eligible"],
            language=entry["language"],
        )
        for code, entry in raw.items()
    }


class Economies:
    """The economies in force: the built-in list with the config's changes."""

    def __init__(self, economies: Iterable[Economy]) -> None:
        self._by_code = {e.code: e for e in economies}
        self._by_name: dict[str, Economy] = {}
        for economy in self._by_code.values():
            for written in (economy.code, economy.name, *economy.aliases):
                self._by_name[normalise_name(written)] = economy
        # CLDR's names in every shipped language ("Corea del Sur", "智利", "Việt Nam")
        # come after: a name or alias of the list wins over them.
        for economy in self._by_code.values():
            for written in territory_names(economy.code):
                self._by_name.setdefault(normalise_name(written), economy)

    @classmethod
    def with_overrides(cls, overrides: Mapping[str, Mapping[str, Any]]) -> Economies:
        economies = builtin_economies()
        for code, changes in overrides.items():
            economies[code] = replace(economies[code], **dict(changes))
        return cls(economies.values())

    def __iter__(self) -> Any:
        return iter(sorted(self._by_code.values(), key=lambda e: e.name))

    def __len__(self) -> int:
        return len(self._by_code)

    def get(self, code: str) -> Economy:
        return self._by_code[code.upper()]

    def match(self, written: str) -> Economy | None:
        return self._by_name.get(normalise_name(written))

    def closest(self, written: str) -> Economy | None:
        """The economy meant by a name ``match`` did not recognise, if any
        is close ("Vietnum", "Philipines")."""
        return closest(normalise_name(written), self._by_name.items())

    def names(self) -> list[str]:
        return [e.name for e in self]
