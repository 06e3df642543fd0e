"""The closest accepted value to one that was not recognised, so that the
reply can ask "did you mean ...?" (SPEC section 3).

Pure and small: callers pass what was written and the accepted names, both
already folded the way they compare names (``economies.normalise_name``),
each name with the value it stands for. A suggestion is only a hint: it is
never taken as the answer, so it may be generous, but it must not be
arbitrary; when nothing is close, there is none.
"""

from __future__ import annotations

from collections.abc import Iterable
from difflib import SequenceMatcher, get_close_matches
from typing import TypeVar

T = TypeVar("T")

# Shorter words ("to", "and", "of") say nothing about which value was meant.
_SHORTEST_WORD = 3
# How alike a mistyped word and a word of a name must be ("Marketting").
_WORD_CUTOFF = 0.8
# How alike the whole text and a name must be when no word is shared and
# it is not one slip away from it: at 0.6 "Narnia" was taken for
# "America", "Spain" for "Japan".
_TEXT_CUTOFF = 0.75
# One slip in a name shorter than this is another name ("中国" and "泰国",
# China and Thailand): not a hint.
_SHORTEST_SLIPPED = 3


def closest(written: str, choices: Iterable[tuple[str, T]]) -> T | None:
    """The value whose name contains every word written (whole, as the
    start of a word, or mistyped a little), the most alike first; else the
    value of the name most alike as a whole; else None."""
    named = [(name, value) for name, value in choices if name]
    if not written or not named:
        return None
    words = [word for word in written.split() if len(word) >= _SHORTEST_WORD]
    sharing = [(name, value) for name, value in named if words and _has_all(name, words)]
    if sharing:
        return max(sharing, key=lambda choice: _alike(written, choice[0]))[1]
    near = [
        (name, value)
        for name, value in named
        if _alike(written, name) >= _TEXT_CUTOFF or _one_slip(written, name)
    ]
    return max(near, key=lambda choice: _alike(written, choice[0]))[1] if near else None


def _has_all(name: str, words: list[str]) -> bool:
    own = name.split()
    return all(
        any(word_of_name.startswith(word) for word_of_name in own)
        or get_close_matches(word, own, n=1, cutoff=_WORD_CUTOFF)
        for word in words
    )


def _one_slip(written: str, name: str) -> bool:
    """One character wrong, missing or extra, or two side by side swapped:
    a typist's slip, or an input method's ("新加玻" for "新加坡", three
    characters of which one is wrong, are only 0.67 alike)."""
    if min(len(written), len(name)) < _SHORTEST_SLIPPED or abs(len(written) - len(name)) > 1:
        return False
    if len(written) != len(name):
        shorter, longer = sorted((written, name), key=len)
        return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))
    apart = [i for i, (a, b) in enumerate(zip(written, name, strict=True)) if a != b]
    if len(apart) == 2 and apart[1] == apart[0] + 1:
        first, second = apart
        return (written[first], written[second]) == (name[second], name[first])
    return len(apart) == 1


def _alike(written: str, name: str) -> float:
    return SequenceMatcher(None, written, name).ratio()
