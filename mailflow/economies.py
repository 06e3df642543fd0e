"""The 21 APEC economies and the forgiving matching of what people write.

The list ships as package data (``data/economies.toml``); ``[economies.XX]``
tables in the config change single keys of it. Matching accepts the name,
the ISO code or a common alias, ignoring case, accents, punctuation and a
leading "the", so "Viet Nam", "vietnam" and "VN" are the same economy.
"""

from __future__ import annotations

import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

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
    decomposed = unicodedata.normalize("NFKD", text)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    words = "".join(c if c.isalnum() else " " for c in letters.casefold()).split()
    if words and words[0] == "the":
        words = words[1:]
    return " ".join(words)


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
