"""The shipped languages and what Babel knows about them: the ``words``
catalog of each (what people type: field names, action words, value
names) and the CLDR names of territories. The only importer of Babel.

Catalogs live in ``mailflow/locale/<locale>/LC_MESSAGES/<domain>.po``
under Babel's locale names (``zh_Hans``); people, the SPEC and the rest of
mailflow use BCP 47 tags (``zh-Hans``). For now the ``.po`` files are read
as they are, once per process (``read_words``); reading compiled ``.mo``
files instead is a change of that one function. Nothing here matches or
folds what people write: ``mailflow.words`` does.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from babel import Locale, UnknownLocaleError
from babel.messages.pofile import read_po

# BCP 47 tags, English first (SPEC section 3a).
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
LOCALE = Path(__file__).parent / "locale"

# (context, English msgid) -> msgstr as the translator wrote it.
Words = dict[tuple[str, str], str]


def locale_name(tag: str) -> str:
    """Babel's name (and the catalog folder's) of a BCP 47 tag: ``zh_Hans``."""
    return tag.replace("-", "_")


def catalog_path(tag: str, domain: str = "words") -> Path:
    return LOCALE / locale_name(tag) / "LC_MESSAGES" / f"{domain}.po"


@cache
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


@cache
def territory_names(code: str) -> tuple[str, ...]:
    """What CLDR calls a territory (ISO 3166 code) in each shipped language,
    for matching what people write; none for a code CLDR does not know."""
    names: list[str] = []
    for tag in SHIPPED:
        try:
            name = Locale.parse(locale_name(tag)).territories.get(code.upper())
        except (UnknownLocaleError, ValueError):
            continue
        if name and name not in names:
            names.append(name)
    return tuple(names)
