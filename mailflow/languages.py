"""The languages mailflow speaks (SPEC section 3a): whose catalogs are
complete, what a person means by "Language: Español", and which language
each recipient reads.

Tags are BCP 47 as people and the README write them (``zh-Hans``). Names
are never written by hand here: CLDR (through ``mailflow.catalogs``, the
only importer of Babel) says what each language is called, in English, in
itself and in the other shipped languages.

This module never reads mail and never writes to the database.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mailflow.catalogs import (
    ENGLISH,
    SHIPPED,
    display_names,
    locale_of,
    parse_locale,
)
from mailflow.economies import normalise_name
from mailflow.store import queries, roster

# Catalogs a translator has declared complete: tests/test_catalogs.py fails
# on any missing or fuzzy message of these, or a placeholder that differs
# from the English. A translator adds their tag when they finish.
COMPLETE: frozenset[str] = frozenset(
    {"es", "zh-Hans", "zh-Hant", "id", "ja", "ko", "ms", "ru", "th", "vi"}
)


def url_tag(tag: str) -> str:
    """The tag as the guide's URLs write it (SPEC section 5): /guide/zh-hans/."""
    return tag.lower()


def shipped_tag(written: str) -> str | None:
    """The shipped tag written in any case (``zh-hans``, ``ZH-Hans``), else None."""
    folded = written.strip().replace("_", "-").lower()
    return next((tag for tag in SHIPPED if tag.lower() == folded), None)


def match(written: str) -> str | None:
    """The shipped language a ``Language:`` line means, or None: by tag
    (``es``, ``es-CL``, ``zh-TW``), by English name (``Spanish``), by its own
    name (``Español``, ``中文``, ``Tiếng Việt``) or by its name in another
    shipped language (``inglés``); case, accents and punctuation ignored."""
    text = written.strip()
    if not text:
        return None
    return _by_name().get(normalise_name(text)) or _by_tag(text)


def _by_tag(text: str) -> str | None:
    try:
        locale = parse_locale(text)
    except ValueError:
        return None
    if locale.language == "zh" and locale.script is None:
        traditional = locale.territory in ("TW", "HK", "MO")
        return "zh-Hant" if traditional else "zh-Hans"
    for tag in SHIPPED:
        shipped = locale_of(tag)
        if shipped.language == locale.language and locale.script in (None, shipped.script):
            return tag
    return None


@functools.cache
def _by_name() -> dict[str, str]:
    """Every name of every shipped language, folded, first one wins: the
    tag, the full name (中文 (简体)) and the language alone (中文, which is
    Simplified Chinese, the first shipped), in each shipped language."""
    names: dict[str, str] = {}
    for tag in SHIPPED:
        names.setdefault(normalise_name(tag), tag)
    for reader in (ENGLISH, *SHIPPED):
        for tag in SHIPPED:
            for name in display_names(tag, reader):
                if normalise_name(name):
                    names.setdefault(normalise_name(name), tag)
    return names


# -- who reads which language ---------------------------------------------------


@dataclass(frozen=True)
class Readers:
    """SPEC section 3a's order, from the configuration: a person's own
    ``Language:`` line, else their economy's language, else
    ``[site].language``; administrators, editors and overseers read
    ``[admin].language`` unless they chose one themselves. A focal point
    who never wrote to us has the language of the economy they serve."""

    site: str
    admin: str
    staff: frozenset[str]  # administrators, editors, overseers
    economies: Mapping[str, str]  # economy code -> its language

    @classmethod
    def build(
        cls,
        *,
        site: str,
        admin: str,
        staff: Iterable[str],
        economies: Iterable[tuple[str, str]],
    ) -> Readers:
        """``economies`` is (code, language) for each."""
        return cls(
            site=site,
            admin=admin,
            staff=frozenset(address.lower() for address in staff),
            economies=dict(economies),
        )

    def choose(self, address: str, chosen: str | None = None, economy: str | None = None) -> str:
        """The language of one recipient from what we know of them."""
        return self._placed(address, chosen, economy) or self.site

    def _placed(self, address: str, chosen: str | None, economy: str | None) -> str | None:
        """Their language if what we know of them places them, else None
        (they read ``[site].language``)."""
        if chosen in SHIPPED:
            return str(chosen)
        if address.lower() in self.staff:
            return self.admin
        if economy and economy.upper() in self.economies:
            return self.economies[economy.upper()]
        return None

    def of(self, session: Session, address: str) -> str:
        """The language of one recipient."""
        return self.of_all(session, [address])[address]

    def of_all(self, session: Session, addresses: Iterable[str]) -> dict[str, str]:
        """The language of each recipient (keyed as given), in two queries
        however many: their participant row if any; a focal point or deputy
        who never wrote reads the language of the economy they serve on the
        roster."""
        folded = {address: address.strip().lower() for address in addresses}
        people = queries.languages_and_economies(session, folded.values())
        # The roster only for those whom nothing else places (most
        # recipients are participants or staff): one query fewer an email.
        unplaced = [
            email
            for email in folded.values()
            if self._placed(email, *people.get(email, (None, None))) is None
        ]
        served = roster.economies_served(session, unplaced) if unplaced else {}
        languages = {}
        for address, email in folded.items():
            chosen, economy = people.get(email, (None, None))
            languages[address] = self.choose(email, chosen, economy or served.get(email))
        return languages


ENGLISH_ONLY = Readers.build(site=ENGLISH, admin=ENGLISH, staff=(), economies=())
