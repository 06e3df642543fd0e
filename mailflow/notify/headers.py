"""Header values that must reach the wire exactly as written.

The email package folds a programmatically set header by its own rules,
and a word longer than a line becomes an RFC 2047 encoded word. Some
headers allow no encoded words at all: ``List-Unsubscribe`` (RFC 2369,
angle-bracketed URIs separated by commas) and ``List-Unsubscribe-Post``
(RFC 8058); a mail client that meets ``=?utf-8?q?=3Cmailto...`` there sees
no unsubscribe address. Their values are written here as plain ASCII,
folded only at whitespace, and never encoded. This module must never
decode or rewrite such a value: a value it cannot write as is is refused.
"""

from __future__ import annotations

from email.headerregistry import BaseHeader, HeaderRegistry, UnstructuredHeader
from email.policy import Policy
from typing import Any

# Headers whose values are URIs or tokens, never text (SPEC section 6).
RAW = frozenset({"list-unsubscribe", "list-unsubscribe-post"})
# RFC 5322 section 2.1.1: no line may be longer than this, folded or not.
_HARD_LIMIT = 998


class RawHeader(UnstructuredHeader, BaseHeader):
    """An ASCII value kept as given, folded at whitespace only."""

    @classmethod
    def parse(cls, value: str, kwds: dict[str, Any]) -> None:
        if not value.isascii() or any(c in value for c in "\r\n\0") or "=?" in value:
            raise ValueError(f"not a plain ASCII header value: {value!r}")
        kwds["parse_tree"] = cls.value_parser(value)
        kwds["decoded"] = " ".join(value.split())

    def fold(self, *, policy: Policy) -> str:
        width = policy.max_line_length or _HARD_LIMIT
        lines = [f"{self.name}:"]
        for n, word in enumerate(str(self).split()):
            # The first word stays by the name: a header line with no value
            # reads, to many parsers, as a value starting with a space.
            if n and len(lines[-1]) + 1 + len(word) > width:
                lines.append("")
            lines[-1] += " " + word
        if any(len(line) > _HARD_LIMIT for line in lines):
            raise ValueError(f"{self.name}: a word longer than {_HARD_LIMIT} characters")
        return policy.linesep.join(lines) + policy.linesep


_REGISTRY = HeaderRegistry()
for _name in RAW:
    _REGISTRY.map_to_type(_name, RawHeader)


def raw_header(name: str, value: str) -> BaseHeader:
    """The header object to assign (``message[name] = raw_header(...)``)."""
    if name.lower() not in RAW:
        raise ValueError(f"{name} is not one of the raw headers: {sorted(RAW)}")
    header: BaseHeader = _REGISTRY(name, value)
    return header
