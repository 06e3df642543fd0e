"""Header values as text, from whatever bytes the sender wrote.

Three kinds of header text meet here: raw UTF-8 (RFC 6532, what every
SMTPUTF8 client writes and many others do too), raw 8-bit bytes of a legacy
charset (old clients writing Latin-1 or cp1252 without saying so), and
RFC 2047 encoded words, also when they are mixed in one value. Python's
parser keeps raw bytes as surrogate escapes and its decoders turn them into
U+FFFD; a title shown as "H���p t��c" on the archive started there.

Every byte is read as something: UTF-8 first, then the charset the message
declares, then cp1252, then Latin-1 (which cannot fail). This module never
produces a replacement character for bytes it was given, and never raises.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
from collections.abc import Iterable
from functools import lru_cache

# RFC 2047 section 2: charset (with an RFC 2231 language after "*"), B or Q,
# printable ASCII with no "?" and no space.
_ENCODED_WORD = re.compile(r"=\?([\x21-\x3e\x40-\x7e]+?)\?([bBqQ])\?([\x21-\x3e\x40-\x7e]*)\?=")
_FOLD = re.compile(r"\r?\n(?=[ \t])")
_PRINTABLE_ASCII = bytes(range(32, 127))
# Text codecs that give backslashes a meaning of their own.
_ESCAPE_CODECS = frozenset({"unicode-escape", "raw-unicode-escape"})


def decoded_header(value: str, charset: str = "") -> str:
    """A header value as the email package's compat32 parser stores it
    (raw bytes as surrogate escapes), decoded: raw bytes and encoded words
    both, the folding undone."""
    return decode_words(unfolded(value, charset))


def unfolded(value: str, charset: str = "") -> str:
    """The value with its raw bytes decoded, RFC 2047 words left as they
    are (an address must be read before its display name is decoded)."""
    raw = value.encode("utf-8", "surrogateescape")
    text = value if raw.isascii() else decode_bytes(raw, "utf-8", charset)
    return _FOLD.sub("", text)


def decode_bytes(data: bytes, *charsets: str) -> str:
    """The bytes in the first of ``charsets`` that reads them all, else in
    cp1252 (what "Latin-1" mail mostly is), else in Latin-1. Raw bytes in a
    header are read only in a charset that reads ASCII as ASCII."""
    for charset in (*charsets, "cp1252"):
        if not _text_codec(charset) or not _ascii_compatible(charset):
            continue
        try:
            return data.decode(charset)
        except UnicodeError:
            continue
    return data.decode("latin-1")


def decode_words(text: str) -> str:
    """Every RFC 2047 encoded word decoded. Adjacent words of one charset are
    decoded together (a client may split one character over two words),
    the space between encoded words is dropped (RFC 2047 section 6.2), and
    a word that is not valid base64 stays as written."""
    if "=?" not in text:
        return text
    out: list[str] = []
    run: list[tuple[str, bytes]] = []  # (charset, bytes) of adjacent words
    position = 0
    for match in _ENCODED_WORD.finditer(text):
        between = text[position : match.start()]
        position = match.end()
        data = _word_bytes(match[2], match[3])
        if data is None:
            out.append(_decoded_run(run) + between + match[0])
            run = []
            continue
        if not run or (between and not between.isspace()):
            out.append(_decoded_run(run) + between)
            run = []
        run.append((match[1].partition("*")[0], data))
    out.append(_decoded_run(run) + text[position:])
    return "".join(out)


def _word_bytes(encoding: str, payload: str) -> bytes | None:
    if encoding in "qQ":
        return binascii.a2b_qp(payload.encode("ascii"), header=True)
    try:
        return base64.b64decode(payload + "=" * (-len(payload) % 4), validate=True)
    except binascii.Error:
        return None


def _decoded_run(run: Iterable[tuple[str, bytes]]) -> str:
    pieces: list[str] = []
    charset, data = "", b""
    for word_charset, word in run:
        if word_charset.lower() != charset.lower() and data:
            pieces.append(_decoded_word(data, charset))
            data = b""
        charset, data = word_charset, data + word
    if data:
        pieces.append(_decoded_word(data, charset))
    return "".join(pieces)


def _decoded_word(data: bytes, charset: str) -> str:
    """An encoded word names its charset, which may be one that does not
    read ASCII as ASCII (UTF-16); a wrong name falls back as raw bytes do."""
    if _text_codec(charset):
        try:
            return data.decode(charset)
        except UnicodeError:
            pass
    return decode_bytes(data, "utf-8")


@lru_cache(maxsize=128)
def _text_codec(charset: str) -> bool:
    """A known codec of text: not base64 or rot13 (codecs, but not of
    text), not one that reads backslash escapes."""
    try:
        "".encode(charset)  # LookupError for a codec that is not of text
        return codecs.lookup(charset).name not in _ESCAPE_CODECS
    except (LookupError, UnicodeError, ValueError):
        return False


@lru_cache(maxsize=128)
def _ascii_compatible(charset: str) -> bool:
    try:
        return _PRINTABLE_ASCII.decode(charset) == _PRINTABLE_ASCII.decode("ascii")
    except (LookupError, UnicodeError, ValueError):
        return False
