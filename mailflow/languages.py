"""The languages mailflow speaks (SPEC section 3a): which are shipped,
whose catalogs are complete, what a person means by "Language: Español",
which language each recipient reads, and the catalogs themselves.

The only importer of Babel at run time. Tags are BCP 47 as people and the
SPEC write them (``zh-Hans``); Babel names the catalog folders with an
underscore (``mailflow/locale/zh_Hans/LC_MESSAGES/``). Names are never
written by hand here: Babel's CLDR data says what each language is called,
in English, in itself and in the other shipped languages.

A catalog is read from its compiled ``.mo`` (built by ``setup.py`` for the
wheel, by ``python3 dev.py catalogs`` in a checkout), or, when the ``.mo``
is missing or older than its ``.po``, compiled in memory from the ``.po``:
a translator who edits a ``.po`` sees the change in the next test run
without a build step. A message with no translation, or a fuzzy one, reads
in English.

This module never reads mail and never writes to the database.
"""

from __future__ import annotations

import functools
import gettext
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_skeleton, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations
from sqlalchemy.orm import Session

from mailflow.economies import normalise_name
from mailflow.store import queries

# The shipped languages, English first: it is the source of every message.
SHIPPED: tuple[str, ...] = (
    "en",
    "es",
    "zh-Hans",
    "zh-Hant",
    "id",
    "ja",
    "ko",
    "ms",
    "ru",
    "th",
    "vi",
)
ENGLISH = "en"

# Catalogs a translator has declared complete: tests/test_catalogs.py fails
# on any missing or fuzzy message of these, or a placeholder that differs
# from the English. A translator adds their tag when they finish.
COMPLETE: frozenset[str] = frozenset()

LOCALE_FOLDER = Path(__file__).resolve().parent / "locale"
DOMAINS = ("mailflow", "words")  # sentences we write; words people type (vocab.py)

# English dates keep mailflow's house style, day before month ("5 December
# 2026"), which no reader misreads; the others take their locale's own.
_ENGLISH_DAY = "d MMMM y"
_ENGLISH_DAY_NO_YEAR = "d MMMM"


def locale_name(tag: str) -> str:
    """Babel's name of a shipped tag, the catalog's folder: zh-Hans -> zh_Hans."""
    return tag.replace("-", "_")


def url_tag(tag: str) -> str:
    """The tag as the guide's URLs write it (SPEC section 5): /guide/zh-hans/."""
    return tag.lower()


def shipped_tag(written: str) -> str | None:
    """The shipped tag written in any case (``zh-hans``, ``ZH-Hans``), else None."""
    folded = written.strip().replace("_", "-").lower()
    return next((tag for tag in SHIPPED if tag.lower() == folded), None)


def own_name(tag: str) -> str:
    """What a language calls itself: español, 中文 (简体), Tiếng Việt."""
    return str(_locale(tag).display_name)


def english_name(tag: str) -> str:
    return str(_locale(tag).get_display_name(ENGLISH))


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
        locale = Locale.parse(text.replace("-", "_"))
    except (ValueError, UnknownLocaleError):
        return None
    if locale.language == "zh" and locale.script is None:
        traditional = locale.territory in ("TW", "HK", "MO")
        return "zh-Hant" if traditional else "zh-Hans"
    for tag in SHIPPED:
        shipped = _locale(tag)
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
            locale = _locale(tag)
            full = locale.get_display_name(_locale(reader)) or ""
            alone = Locale(locale.language).get_display_name(_locale(reader)) or ""
            for name in (full, alone):
                if normalise_name(name):
                    names.setdefault(normalise_name(name), tag)
    return names


@functools.cache
def _locale(tag: str) -> Locale:
    return Locale.parse(locale_name(tag))


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
    focal_points: Mapping[str, str]  # address -> the economy it serves

    @classmethod
    def build(
        cls,
        *,
        site: str,
        admin: str,
        staff: Iterable[str],
        economies: Iterable[tuple[str, str, Iterable[str]]],
    ) -> Readers:
        """``economies`` is (code, language, focal point addresses) for each."""
        listed = list(economies)
        return cls(
            site=site,
            admin=admin,
            staff=frozenset(address.lower() for address in staff),
            economies={code: language for code, language, _ in listed},
            focal_points={
                address.lower(): code for code, _, addresses in listed for address in addresses
            },
        )

    def choose(self, address: str, chosen: str | None = None, economy: str | None = None) -> str:
        """The language of one recipient from what we know of them."""
        if chosen in SHIPPED:
            return str(chosen)
        address = address.lower()
        if address in self.staff:
            return self.admin
        economy = economy or self.focal_points.get(address)
        if economy and economy.upper() in self.economies:
            return self.economies[economy.upper()]
        return self.site

    def of(self, session: Session, address: str) -> str:
        """The language of one recipient, from their participant row if any."""
        person = queries.participant(session, address.strip().lower())
        if person is None:
            return self.choose(address)
        return self.choose(address, person.language, person.economy)


ENGLISH_ONLY = Readers.build(site=ENGLISH, admin=ENGLISH, staff=(), economies=())


# -- catalogs and dates ------------------------------------------------------------


@functools.cache
def translations(tag: str, domain: str = "mailflow") -> gettext.NullTranslations:
    """The catalog of one language and domain; English, and any language
    without a catalog, reads the messages as written."""
    if tag == ENGLISH or tag not in SHIPPED:
        return gettext.NullTranslations()
    folder = LOCALE_FOLDER / locale_name(tag) / "LC_MESSAGES"
    po, mo = folder / f"{domain}.po", folder / f"{domain}.mo"
    if mo.exists() and (not po.exists() or mo.stat().st_mtime >= po.stat().st_mtime):
        with mo.open("rb") as file:
            return Translations(file, domain=domain)
    if not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as file:
        catalog = read_po(file, locale=locale_name(tag), domain=domain)
    compiled = BytesIO()
    write_mo(compiled, catalog)  # leaves out empty and fuzzy messages
    compiled.seek(0)
    return Translations(compiled, domain=domain)


def day(value: date | datetime, tag: str, *, year: bool = True) -> str:
    """A date as the reader's locale writes it (the ``day`` filter of mail);
    ``year=False`` for a recent day the reader places without it: "5 December"."""
    if tag == ENGLISH:
        return format_date(value, _ENGLISH_DAY if year else _ENGLISH_DAY_NO_YEAR, locale=ENGLISH)
    if year:
        return format_date(value, "long", locale=_locale(tag))
    # A skeleton, not a pattern: each locale orders day and month (and
    # declines the month, as Russian does) its own way.
    return str(format_skeleton("MMMMd", value, locale=_locale(tag)))


def month(value: date | datetime, tag: str) -> str:
    """A month of a year as a heading names it (the ``month`` filter):
    "December 2026", "diciembre de 2026", "2026年12月"."""
    if tag == ENGLISH:
        return format_date(value, "LLLL y", locale=ENGLISH)
    return str(format_skeleton("yMMMM", value, locale=_locale(tag)))


def moment(value: datetime, tag: str) -> str:
    """A date and a 24-hour time (UTC, as stored), the ``moment`` filter."""
    return f"{day(value, tag)}, {format_time(value, 'HH:mm', locale=_locale(tag))}"
