"""What people type, understood in every shipped language: field names,
action words and value names (SPEC section 3a).

Each English word is marked where it is used, with its group as context
(``pgettext("field", "Priority area")``; the groups are ``field``,
``action``, ``kind``, ``area`` and ``link``, the prefilled line of an action
link), and extracted to the ``words`` catalog (``mailflow/locale/words.pot``).
A translation lists the common words of a language separated by ``|``, the
first being the one shown to people: Spanish "approve" is
``aprobar|apruebo|aprobado``. Matching folds case, accents and tones as
economy names are folded, so "Sí", "si" and "SI" are the same word. This
module never decides what a word does: the form parser, the vocabularies
and the reply handlers do, with the English word it returns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import cache
from typing import TypeVar

from mailflow.catalogs import SHIPPED, read_words
from mailflow.economies import fold_char, normalise_name

T = TypeVar("T")

SEPARATOR = "|"
# Scripts written without spaces between words: a known word at the start
# of a reply is a word there, whatever follows it (Thai, Chinese, Japanese).
_SPACELESS = (
    ("\u0e00", "\u0e7f"),
    ("\u2e80", "\u9fff"),
    ("\uf900", "\ufaff"),
    ("\uff00", "\uffef"),
)
# Enough of a reply's start for the longest action word.
_START = 80
_AFTER_WORD = " \t\r\n.,:;!?-–—，。：；！？、"


def pgettext(context: str, english: str) -> str:
    """Mark an English word of a group for the ``words`` catalog (Babel's
    extraction knows ``pgettext``); returns it unchanged."""
    return english


def alternatives(group: str, english: str, language: str) -> list[str]:
    """The words of one language for an English word, the shown one first;
    the English word itself when the language has none."""
    written = read_words(language).get((group, english), "")
    found = [word.strip() for word in written.split(SEPARATOR) if word.strip()]
    return found or [english]


def label(group: str, english: str, language: str = "en") -> str:
    """The word shown to people of a language: a field's label, an action's
    button; English when the language has none."""
    return alternatives(group, english, language)[0]


@cache
def every_language(group: str, english: str) -> frozenset[str]:
    """Every written form of an English word, folded: English and each
    shipped language's alternatives."""
    return frozenset(
        folded
        for language in SHIPPED
        for written in (english, *alternatives(group, english, language))
        if (folded := normalise_name(written))
    )


def in_every_language(keys: Mapping[str, T], group: str = "field") -> dict[str, T]:
    """A table of names -> meanings with the names folded, and each name's
    words in every shipped language added (a name without a catalog entry
    stays English only). A name of the table wins over a translation."""
    table = {normalise_name(name): meaning for name, meaning in keys.items()}
    for name, meaning in keys.items():
        for folded in sorted(every_language(group, name)):
            table.setdefault(folded, meaning)
    return table


def leading(text: str, group: str, english: Iterable[str]) -> tuple[str, str]:
    """Which of the English words (of a group) the text starts with, in any
    shipped language, and the rest of the text; ("", text) when none. The
    longest match wins ("不同意" before "同意"); a word ends at a space or
    punctuation, except in the scripts written without spaces."""
    chars = _folded_start(text)
    folded = "".join(c for c, _ in chars)
    for phrase, meaning in _phrases(group, tuple(english)):
        if not folded.startswith(phrase):
            continue
        end = len(phrase)
        if end < len(folded) and folded[end] != " " and not _spaceless(phrase[-1]):
            continue
        rest = text[chars[end][1] :] if end < len(chars) else text[len(text) :]
        return meaning, rest.lstrip(_AFTER_WORD)
    return "", text


def _folded_start(text: str) -> list[tuple[str, int]]:
    """The start of the text folded, one space for each run of spaces and
    punctuation, with the position of each folded character in the text."""
    chars: list[tuple[str, int]] = []
    start = len(text) - len(text.lstrip())
    for position in range(start, min(len(text), start + _START)):
        for char in fold_char(text[position]):
            if char != " " or (chars and chars[-1][0] != " "):
                chars.append((char, position))
    return chars


@cache
def _phrases(group: str, english: tuple[str, ...]) -> list[tuple[str, str]]:
    """(folded word, English word), longest first; the first English word
    that has a written form keeps it."""
    meanings: dict[str, str] = {}
    for name in english:
        for folded in every_language(group, name):
            meanings.setdefault(folded, name)
    return sorted(meanings.items(), key=lambda item: -len(item[0]))


def _spaceless(char: str) -> bool:
    return any(low <= char <= high for low, high in _SPACELESS)
