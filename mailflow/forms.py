"""The forgiving ``Key: value`` form of SPEC section 3, as pure functions.

Keys in any case and order, from a table of names people actually write;
a value continues on indented lines; the summary runs until the next known
key. Quoted text and signatures of a reply are dropped first, so answering
in the thread with only the corrections works.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

SUBMISSION_KEYS: Mapping[str, str] = {
    "title": "title",
    "kind": "kind",
    "type": "kind",
    "economy": "economy",
    "country": "economy",
    "priority area": "area",
    "area": "area",
    "priority": "area",
    "organization": "organization",
    "organisation": "organization",
    "org": "organization",
    "summary": "summary",
    "abstract": "summary",
    "second contact": "second_contact",
    "name": "name",
    "full name": "name",
}

RUNS_TO_NEXT_KEY = frozenset({"summary"})

_KEY_LINE = re.compile(r"^\s{0,3}([A-Za-z][A-Za-z ]{0,30}?)\s*:\s*(.*)$")
_REPLY_MARKERS = (
    re.compile(r"^On .{0,200}wrote:\s*$"),
    re.compile(r"^-{2,}\s*Original Message\s*-{2,}", re.IGNORECASE),
    re.compile(r"^_{10,}\s*$"),
    re.compile(r"^-- ?$"),
    re.compile(r"^From: .+ <?\S+@\S+>?\s*$"),
)


def strip_reply(text: str) -> str:
    """The new part of a reply: no quoted lines, nothing after the quote
    header, the original-message separator or the signature delimiter."""
    kept: list[str] = []
    for line in text.splitlines():
        if any(marker.match(line) for marker in _REPLY_MARKERS):
            break
        if not line.lstrip().startswith(">"):
            kept.append(line)
    return "\n".join(kept)


def parse_form(text: str, keys: Mapping[str, str] = SUBMISSION_KEYS) -> dict[str, str]:
    """Field name -> value for every known key found; the first one wins."""
    fields: dict[str, list[str]] = {}
    current: str | None = None
    for line in strip_reply(text).splitlines():
        match = _KEY_LINE.match(line)
        key = keys.get(" ".join(match[1].lower().split())) if match else None
        if match and key is not None:
            current = None if key in fields else key
            if current is not None:
                fields[current] = [match[2].strip()]
        elif current is not None and (current in RUNS_TO_NEXT_KEY or _indented(line)):
            fields[current].append(line.strip())
        elif not line.strip():
            current = current if current in RUNS_TO_NEXT_KEY else None
        else:
            current = None
    return {key: _join(lines) for key, lines in fields.items() if _join(lines)}


def _indented(line: str) -> bool:
    return bool(line.strip()) and line[:1] in (" ", "\t")


def _join(lines: list[str]) -> str:
    """Lines of one value, with blank lines kept as paragraph breaks."""
    paragraphs = " ".join(line if line else "\n\n" for line in lines)
    return "\n\n".join(" ".join(p.split()) for p in paragraphs.split("\n\n") if p.strip())
