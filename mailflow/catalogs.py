"""The shipped languages and what Babel knows of them: the catalogs of
both gettext domains (``mailflow``: the sentences of the templates;
``words``: what people type, field names, action words, value names), the
CLDR names of languages and territories, and dates as each language writes
them. The only importer of Babel.

Catalogs live in ``mailflow/locale/<locale>/LC_MESSAGES/<domain>.po``
under Babel's locale names (``zh_Hans``); people, the README and the rest of
mailflow use BCP 47 tags (``zh-Hans``). A catalog is read from its compiled
``.mo`` (built by ``setup.py`` for the wheel, by ``python3 dev.py catalogs``
in a checkout) or, when the ``.mo`` is missing or older than its ``.po``,
compiled in memory from the ``.po``: a translator's edit shows in the next
test run without a build step. A message with no translation, or a fuzzy
one, reads in English. Nothing here matches or folds what people write
(``mailflow.words``, ``mailflow.languages``).
"""

from __future__ import annotations

import functools
import gettext
from collections.abc import Iterator
from datetime import date, datetime
from io import BytesIO
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.dates import format_date, format_skeleton, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

# BCP 47 tags, English first: it is the source of every message (SPEC 3a).
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
LOCALE = Path(__file__).resolve().parent / "locale"

# (context, English msgid) -> msgstr as the translator wrote it.
Words = dict[tuple[str, str], str]

# English dates keep mailflow's house style, day before month ("5 December
# 2026"), which no reader misreads; the others take their locale's own.
_ENGLISH_DAY = "d MMMM y"
_ENGLISH_DAY_NO_YEAR = "d MMMM"


def locale_name(tag: str) -> str:
    """Babel's name (and the catalog folder's) of a BCP 47 tag: ``zh_Hans``."""
    return tag.replace("-", "_")


def catalog_path(tag: str, domain: str = "words") -> Path:
    return LOCALE / locale_name(tag) / "LC_MESSAGES" / f"{domain}.po"


@functools.cache
def locale_of(tag: str) -> Locale:
    """The CLDR locale of a shipped tag."""
    return Locale.parse(locale_name(tag))


def parse_locale(written: str) -> Locale:
    """Any locale identifier (``es-CL``, ``zh_TW``); ValueError if unknown."""
    try:
        return Locale.parse(written.replace("-", "_"))
    except UnknownLocaleError as exc:
        raise ValueError(str(exc)) from exc


def own_name(tag: str) -> str:
    """What a language calls itself: español, 中文 (简体), Tiếng Việt."""
    return str(locale_of(tag).display_name)


def english_name(tag: str) -> str:
    return str(locale_of(tag).get_display_name(ENGLISH))


def display_names(tag: str, reader: str) -> Iterator[str]:
    """What a reader's language calls a shipped language: the full name
    (中文 (简体)) and the language alone (中文)."""
    locale = locale_of(tag)
    yield locale.get_display_name(locale_of(reader)) or ""
    yield Locale(locale.language).get_display_name(locale_of(reader)) or ""


@functools.cache
def read_words(tag: str) -> Words:
    """The translated entries of one language's ``words`` catalog; empty
    and fuzzy ones are left out, so the English word stands in for them."""
    path = catalog_path(tag)
    if tag not in SHIPPED or not path.exists():
        return {}  # a tag is never a path of its own
    with path.open("rb") as stream:
        catalog = read_po(stream, locale=locale_name(tag), domain="words")
    return {
        (message.context or "", str(message.id)): str(message.string)
        for message in catalog
        if message.id and isinstance(message.string, str) and message.string
        if not message.fuzzy
    }


@functools.cache
def territory_names(code: str) -> tuple[str, ...]:
    """What CLDR calls a territory (ISO 3166 code) in each shipped language,
    for matching what people write; none for a code CLDR does not know."""
    names: list[str] = []
    for tag in SHIPPED:
        try:
            name = locale_of(tag).territories.get(code.upper())
        except (UnknownLocaleError, ValueError):
            continue
        if name and name not in names:
            names.append(name)
    return tuple(names)


# -- catalogs and dates ------------------------------------------------------------


@functools.cache
def translations(tag: str, domain: str = "mailflow") -> gettext.NullTranslations:
    """The catalog of one language and domain; English, and any language
    without a catalog, reads the messages as written."""
    if tag == ENGLISH or tag not in SHIPPED:
        return gettext.NullTranslations()
    folder = LOCALE / locale_name(tag) / "LC_MESSAGES"
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
        return format_date(value, "long", locale=locale_of(tag))
    # A skeleton, not a pattern: each locale orders day and month (and
    # declines the month, as Russian does) its own way.
    return str(format_skeleton("MMMMd", value, locale=locale_of(tag)))


def month(value: date | datetime, tag: str) -> str:
    """A month of a year as a heading names it (the ``month`` filter):
    "December 2026", "diciembre de 2026", "2026年12月"."""
    if tag == ENGLISH:
        return format_date(value, "LLLL y", locale=ENGLISH)
    return str(format_skeleton("yMMMM", value, locale=locale_of(tag)))


def moment(value: datetime, tag: str) -> str:
    """A date and a 24-hour time (UTC, as stored), the ``moment`` filter."""
    return f"{day(value, tag)}, {format_time(value, 'HH:mm', locale=locale_of(tag))}"
