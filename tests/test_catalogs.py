"""The catalogs (issue 20): the template of messages is what the templates
mark, every language's catalog holds every message, no translation breaks a
placeholder, and a language declared complete (``languages.COMPLETE``)
misses nothing and has nothing fuzzy. ``python3 dev.py catalogs`` brings
the first two back in line; the README's "Languages" says how."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

from mailflow import catalogs, languages

ROOT = Path(__file__).resolve().parents[1]
LOCALE = ROOT / "mailflow" / "locale"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")
TRANSLATED = [tag for tag in languages.SHIPPED if tag != languages.ENGLISH]


def catalog(path: Path, locale: str | None = None) -> Catalog:
    with path.open("rb") as file:
        return read_po(file, locale=locale, domain=path.stem)


def language_catalog(tag: str) -> Catalog:
    name = catalogs.locale_name(tag)
    return catalog(LOCALE / name / "LC_MESSAGES" / "mailflow.po", name)


def ids(messages: Catalog) -> set[str]:
    return {message_id(m) for m in messages if m.id}


def message_id(message: Message) -> str:
    return message.id if isinstance(message.id, str) else message.id[0]


def test_the_message_template_holds_exactly_what_the_templates_mark() -> None:
    """mailflow.pot is what babel.cfg extracts now: a sentence marked (or
    unmarked) without running `dev.py catalogs` fails here."""
    with (ROOT / "babel.cfg").open() as mapping:
        method_map, options_map = parse_mapping_cfg(mapping)
    extracted = {
        message if isinstance(message, str) else message[0]
        for _, _, message, _, _ in extract_from_dir(str(ROOT), method_map, options_map)
    }
    assert extracted == ids(catalog(LOCALE / "mailflow.pot"))


@pytest.mark.parametrize("tag", TRANSLATED)
def test_every_language_has_a_catalog_with_every_message(tag: str) -> None:
    """Each shipped language's catalog lists every message of the template
    (translated or not: an empty one reads in English until it is)."""
    missing = ids(catalog(LOCALE / "mailflow.pot")) - ids(language_catalog(tag))
    assert not missing, f"{tag}: run python3 dev.py catalogs; missing {sorted(missing)[:5]}"


@pytest.mark.parametrize("tag", TRANSLATED)
def test_no_translation_changes_a_placeholder(tag: str) -> None:
    """A translation names exactly the English's placeholders, and formats:
    a lone % or a misspelt name would break the email at render time."""
    wrong = []
    for message in language_catalog(tag):
        if not message.id or not message.string:
            continue
        english = message.id if isinstance(message.id, tuple) else (message.id,)
        wanted = set().union(*(PLACEHOLDER.findall(text) for text in english))
        forms = message.string if isinstance(message.string, tuple) else (message.string,)
        for form in forms:
            if form and set(PLACEHOLDER.findall(form)) != wanted:
                wrong.append(f"{message_id(message)!r}: {form!r}")
                continue
            try:
                form % dict.fromkeys(wanted, "x")
            except (ValueError, TypeError, KeyError) as error:
                wrong.append(f"{message_id(message)!r}: {form!r} ({error})")
    assert not wrong, f"{tag}:\n" + "\n".join(wrong)


def test_the_complete_languages_are_shipped_ones() -> None:
    assert set(languages.COMPLETE) <= set(TRANSLATED)


@pytest.mark.parametrize("tag", sorted(languages.COMPLETE))
def test_a_complete_language_misses_nothing_and_has_nothing_fuzzy(tag: str) -> None:
    """A language declared complete translates every message, none fuzzy
    (a fuzzy one is left out when compiled, so it would read in English)."""
    untranslated = [
        message_id(m)
        for m in language_catalog(tag)
        if m.id and (m.fuzzy or not m.string or (isinstance(m.string, tuple) and not all(m.string)))
    ]
    assert not untranslated, f"{tag}: {len(untranslated)} left, e.g. {untranslated[:5]}"
