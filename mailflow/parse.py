"""Turn raw bytes into a frozen ParsedMessage. The only importer of mail-parser.

Hostile input is expected: sizes, MIME part counts and nesting depth are
bounded, every header is decoded defensively, and anything the parser
cannot make sense of becomes an UnparseableMessage naming why, never a
crash of the worker.
"""

from __future__ import annotations

import base64
import binascii
import email
import re
import secrets
import unicodedata
from dataclasses import dataclass, replace
from email import feedparser
from email.errors import MessageError
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from html.parser import HTMLParser

import mailparser
from mailparser.utils import decode_header_part, mime_header_view

from mailflow.errors import UnparseableMessage
from mailflow.header_text import decode_words, decoded_header, unfolded

MAX_PARTS = 200
MAX_DEPTH = 12
# Addresses and ids we can safely put back into headers of our own mail:
# ASCII as RFC 5321 has it, or any letter, mark or digit beyond ASCII
# (SMTPUTF8, RFC 6531: "josé@ejemplo.cl", "用户@例子.中国").
_ANSWERABLE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~\x80-\U0010ffff-]{1,64}@[A-Za-z0-9.\x80-\U0010ffff-]{1,253}$"
)
_MESSAGE_ID = r"<[\x21-\x3b\x3d\x3f-\x7e]{1,250}>"

# The email package's parser finds the line break that ends each part with
# ``NLCRE_eol.search(payload)``, ``(\r\n|\r|\n)\Z``: tried at every position
# of the part, 3 ms of a 300 KB document's 12 ms to parse. A match ends at
# the end and is at most two characters long, so searching from two before
# the end finds the same match (tests/torture/test_fuzz.py compares them).
_LINE_BREAK_AT_END: re.Pattern[str] = feedparser.NLCRE_eol  # type: ignore[attr-defined]


class _LineBreakAtEnd:
    def search(self, text: str) -> re.Match[str] | None:
        return _LINE_BREAK_AT_END.search(text, max(0, len(text) - 2))


feedparser.NLCRE_eol = _LineBreakAtEnd()  # type: ignore[attr-defined]

# A document's base64 is most of a submission, and the parser reads it one
# line at a time: 2.9 ms of a 300 KB one, where the rest takes 0.3. A line of
# base64 letters alone (no colon, space or "-") is neither a header, nor a
# boundary, nor the empty line that ends a header: the parser does with a
# run of them what it does with any one of them. So a long run is read as
# one such line standing for it, and put back into the text it landed in
# (a part's payload, a preamble, an epilogue) once the structure is read:
# the same message (tests/torture/test_fuzz.py compares them), read in
# 1.2 ms.
_BASE64_LINES = re.compile(rb"^(?:[A-Za-z0-9+/=]+\r\n)+", re.MULTILINE)
_LONG_RUN = 8192  # bytes; a shorter run costs the parser less than standing in for it
_STAND_IN = f"mailflowrun{secrets.token_hex(16)}n"  # base64 letters, random to each process
_STOOD_FOR = re.compile(re.escape(_STAND_IN) + r"(\d+)x")


@dataclass(frozen=True)
class Attachment:
    filename: str
    declared_type: str
    content: bytes


@dataclass(frozen=True)
class ParsedMessage:
    message_id: str
    in_reply_to: str
    references: tuple[str, ...]
    subject: str
    sender: str
    sender_name: str
    recipients: tuple[str, ...]
    text: str
    attachments: tuple[Attachment, ...]
    headers: dict[str, str]
    authentication_results: tuple[str, ...] = ()

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def parse_message(raw: bytes) -> ParsedMessage:
    _refuse_bombs(raw)
    try:
        mail = mailparser.MailParser(_tree(raw))
        _check_structure(mail.message)
        charset = _declared_charset(mail.message)
        headers = _headers(mail.message, charset)
        # The address is read before RFC 2047 decoding: an encoded display
        # name must never be able to pose as the address.
        sender_name, sender = _single_address(_raw_header(raw, "From", charset))
        sender_name = decode_words(sender_name).replace("\x00", "")
        # One person, one address: RFC 6532 section 3.1 asks for NFC.
        sender = unicodedata.normalize("NFC", sender)
        attachments = tuple(_attachment(a) for a in mail.attachments)
        if any("\ufffd" in a.filename for a in attachments):
            attachments = _renamed(attachments, mail.message, charset)
        text = "\n".join(mail.text_plain) or _html_to_text("\n".join(mail.text_html))
        if "\ufffd" in text:
            text = _text_again(mail.message) or text
    except UnparseableMessage:
        raise
    # MessageError too: mail-parser lets the email package's own errors out,
    # e.g. HeaderParseError for a one-character base64 word in a From name.
    except (
        RecursionError,
        LookupError,
        ValueError,
        TypeError,
        AttributeError,
        MessageError,
    ) as exc:
        raise UnparseableMessage(
            "mime", f"the MIME structure could not be read ({exc})", error=str(exc)
        ) from exc
    if not sender or "@" not in sender:
        raise _no_sender(raw)
    if not answerable(sender):
        raise UnparseableMessage(
            "unanswerable",
            f"its From address cannot be answered: {sender[:200]!r}",
            address=repr(sender[:200]),
        )
    return ParsedMessage(
        message_id=_message_id(headers.get("message-id", "")),
        in_reply_to=_message_id(headers.get("in-reply-to", "")),
        references=tuple(re.findall(_MESSAGE_ID, headers.get("references", "")))[-20:],
        subject=" ".join(headers.get("subject", "").split()),
        sender=sender.lower(),
        # An encoded word can hide a line break; a name is one line.
        sender_name=" ".join(sender_name.split()),
        recipients=_recipients(headers),
        text=text.replace("\x00", "").replace("\r\n", "\n"),
        attachments=attachments,
        headers=headers,
        authentication_results=tuple(
            decoded_header(value, charset).replace("\x00", "")
            for name, value in mail.message.raw_items()
            if name.lower() == "authentication-results"
        ),
    )


# Real mail has tens of header fields (a long Received chain included).
MAX_HEADER_FIELDS = 1000
MAX_HEADER_BYTES = 1_048_576
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_FIELD_START = re.compile(rb"^[^ \t\r\n]", re.MULTILINE)
# Matched in the lowercased message: a case-blind pattern scanning 300 KB
# is six times slower than one with a literal to search for.
_BOUNDARY = re.compile(rb'boundary\s*=\s*"?([^";\r\n]{1,200})')


def _header_block(raw: bytes) -> bytes:
    """The message up to the blank line that ends its header."""
    end = _HEADER_END.search(raw)
    return raw[: end.start()] if end else raw


def _refuse_bombs(raw: bytes) -> None:
    """Count from the raw bytes, before any parsing: mail-parser decodes
    every header and every part before its tree could be walked, so a
    message of 100,000 parts or 20,000 header fields would cost seconds of
    CPU first. The part count is generous (each part has a delimiter line,
    each multipart a closing one); ``_check_structure`` is the exact test."""
    header = _header_block(raw)
    if len(header) > MAX_HEADER_BYTES:
        raise UnparseableMessage(
            "header_size",
            f"its header is larger than {MAX_HEADER_BYTES // 1024} KB",
            kilobytes=MAX_HEADER_BYTES // 1024,
        )
    fields = len(_FIELD_START.findall(header))
    if fields > MAX_HEADER_FIELDS:
        raise UnparseableMessage(
            "header_fields",
            f"its header has {fields} fields (at most {MAX_HEADER_FIELDS})",
            fields=fields,
            limit=MAX_HEADER_FIELDS,
        )
    # The values from the message itself: a boundary is case-sensitive.
    boundaries = {raw[m.start(1) : m.end(1)] for m in _BOUNDARY.finditer(raw.lower())}
    if len(boundaries) > MAX_PARTS:
        raise _too_many_parts()
    # Every delimiter line starts a line with "--": when there are few such
    # lines, there are few parts, and the exact count below can be skipped.
    if not boundaries or raw.count(b"\n--") + 1 <= 2 * MAX_PARTS:
        return
    delimiter = re.compile(
        rb"^--(?:" + b"|".join(re.escape(b) for b in boundaries) + rb")", re.MULTILINE
    )
    if sum(1 for _ in delimiter.finditer(raw)) > 2 * MAX_PARTS:
        raise _too_many_parts()


def _tree(raw: bytes) -> Message:
    """The MIME tree. Messages enclosed in messages (message/rfc822) have no
    boundary that _refuse_bombs could count first: the parser itself runs
    out of depth, and that is the refusal for depth."""
    try:
        return read_structure(raw)
    except RecursionError as exc:
        raise _too_deep() from exc


def read_structure(raw: bytes, shortest_run: int = _LONG_RUN) -> Message:
    """``email.message_from_bytes(raw)``, its long base64 runs read at once."""
    runs: list[str] = []

    def stand_in(found: re.Match[bytes]) -> bytes:
        if found.end() - found.start() < shortest_run:
            return found.group()
        runs.append(found.group()[:-2].decode("ascii"))
        return f"{_STAND_IN}{len(runs) - 1}x\r\n".encode("ascii")

    message = email.message_from_bytes(_BASE64_LINES.sub(stand_in, raw))
    if runs:
        _put_back_runs(message, runs)
    return message


def _put_back_runs(message: Message, runs: list[str]) -> None:
    """Each run where its line landed. The parser took the line break
    after the last line of a part (it belongs to the boundary): the line
    standing in lost its own then, so each is replaced without its break."""

    def put_back(text: str) -> str:
        return _STOOD_FOR.sub(lambda found: runs[int(found[1])], text)

    for part in message.walk():
        if part.preamble:
            part.preamble = put_back(part.preamble)
        if part.epilogue:
            part.epilogue = put_back(part.epilogue)
        # As the parser left it: get_payload() would decode undecodable bytes.
        payload = part._payload  # type: ignore[attr-defined]
        if isinstance(payload, str):
            part._payload = put_back(payload)  # type: ignore[attr-defined]


def _check_structure(message: Message) -> None:
    """Walk the MIME tree without recursion, refusing bombs."""
    parts = 0
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > MAX_PARTS:
            raise _too_many_parts()
        if depth > MAX_DEPTH:
            raise _too_deep()
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend((c, depth + 1) for c in payload if isinstance(c, Message))


def _declared_charset(message: Message) -> str:
    """The first charset the message declares for a part: the best guess
    for raw header bytes that are not UTF-8 (a legacy client writes its
    header and its text in one charset)."""
    for part in message.walk():
        charset = part.get_content_charset()
        if charset:
            return str(charset)
    return ""


def _headers(message: Message, charset: str) -> dict[str, str]:
    """The first value of each header, decoded to text: raw UTF-8 (RFC 6532)
    or legacy bytes, and RFC 2047 words. The raw values, since the parser's
    own decoding turns raw bytes into U+FFFD."""
    decoded: dict[str, str] = {}
    received = 0
    for name, value in message.raw_items():
        key = name.lower()
        received += key == "received"
        if key not in decoded:
            decoded[key] = decoded_header(value, charset).replace("\x00", "")
    decoded["received-count"] = str(received)
    return decoded


def answerable(address: str) -> bool:
    """An address we can write into a header and an SMTP envelope: no
    space, control, or format character (a right-to-left override would
    show a different address than the one answered)."""
    return bool(_ANSWERABLE.match(address)) and all(
        c.isascii() or unicodedata.category(c)[0] in "LMN" for c in address
    )


def _single_address(header: str) -> tuple[str, str]:
    """(display name, address) of a From header naming exactly one address;
    ("", "") for one that names none or several, or uses group syntax
    (ambiguous: never guessed)."""
    if _names_a_group(header):
        return ("", "")
    found = [(name, address) for name, address in getaddresses([header]) if address]
    return found[0] if len(found) == 1 else ("", "")


# What may hold ':' or ';' in a From header without making it a group.
_QUOTED_COMMENT_OR_ANGLE = re.compile(r'"(?:\\.|[^"\\])*"|\((?:\\.|[^()\\])*\)|<[^<>]*>')


def _names_a_group(header: str) -> bool:
    """A From never holds a group (RFC 5322): ``admin@example.org:;`` is an
    empty group that names nobody, though a lenient parser reads the group's
    name as an address."""
    bare = _QUOTED_COMMENT_OR_ANGLE.sub("", header)
    return ":" in bare or ";" in bare


def _raw_header(raw: bytes, name: str, charset: str) -> str:
    """A header as written, its raw bytes read as text but its RFC 2047
    words still encoded (mail-parser hands back decoded values)."""
    # The header block only: the parser would otherwise read every line of
    # the body too (a third of the parsing time of a 300 KB submission).
    header = BytesHeaderParser(policy=compat32).parsebytes(_header_block(raw))
    value = next((v for n, v in header.raw_items() if n.lower() == name.lower()), "")
    return unfolded(value, charset).replace("\r", "").replace("\n", " ")


_FROM_LINE = re.compile(rb"^From:", re.IGNORECASE | re.MULTILINE)


def _too_deep() -> UnparseableMessage:
    return UnparseableMessage(
        "depth", f"its MIME parts are nested deeper than {MAX_DEPTH} levels", limit=MAX_DEPTH
    )


def _too_many_parts() -> UnparseableMessage:
    return UnparseableMessage("parts", f"it has more than {MAX_PARTS} MIME parts", limit=MAX_PARTS)


def _no_sender(raw: bytes) -> UnparseableMessage:
    """The reason the administrator reads. A From line that the parser
    never reached is a header that ended early: a carriage return alone
    (no line feed after it) ends a header line for the email package, and
    the CR LF after it then reads as the blank line that ends the header.
    Scripts that add a header copied from a CR LF file do that."""
    block = _header_block(raw)
    never_reached = "From" not in BytesHeaderParser(policy=compat32).parsebytes(block)
    if never_reached and _FROM_LINE.search(block):
        return UnparseableMessage(
            "header_ends_early",
            "its header ends early, before its From line: a line in it ends in a"
            " carriage return alone (CR without LF), which reads as the header's end",
        )
    return UnparseableMessage("no_sender", "it has no readable From address")


def _message_id(value: str) -> str:
    """The first well-formed <id> of a header, or "" (never raw text that
    could carry line breaks into our own headers)."""
    found = re.search(_MESSAGE_ID, value)
    return found[0] if found else ""


def _recipients(headers: dict[str, str]) -> tuple[str, ...]:
    """Where the message says it went, in the order SPEC section 2 trusts."""
    found: list[str] = []
    for name in ("delivered-to", "x-original-to", "to", "cc"):
        for _, address in getaddresses([headers.get(name, "")]):
            if "@" in address and address.lower() not in found:
                found.append(address.lower())
    return tuple(found)


def _renamed(
    attachments: tuple[Attachment, ...], message: Message, charset: str
) -> tuple[Attachment, ...]:
    """mail-parser reads raw bytes in a file name as UTF-8 only, showing any
    other byte as U+FFFD; the names are read again as header values are."""
    names: dict[str, str] = {}
    for part in message.walk():
        shown = decode_header_part(mime_header_view(part)[0].get_filename())
        if "\ufffd" in shown:
            view = Message()
            for name, value in part.raw_items():
                if name.lower() in ("content-type", "content-disposition"):
                    view[name] = unfolded(value, charset)
            names[shown] = decode_words(str(view.get_filename() or "")).strip()
    return tuple(replace(a, filename=names.get(a.filename) or a.filename) for a in attachments)


# What a mail client most often means when its bytes are not the charset it
# declared: Windows' Western codepage (a superset of Latin-1's printable
# characters), then Latin-1 itself, which decodes any byte.
_LEGACY_CHARSETS = ("cp1252", "latin-1")


def _text_again(message: Message) -> str:
    """mail-parser decodes a text part with its declared charset and shows
    each byte that does not fit as U+FFFD; a part labelled UTF-8 that holds
    Latin-1 bytes (common from older clients) then loses every accent. The
    inline text parts are decoded again: declared charset, then UTF-8, then
    the legacy charsets, each strictly, the first that fits."""
    texts = []
    for part in message.walk():
        if part.get_content_type() != "text/plain" or part.get_content_disposition():
            continue
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            texts.append(_decoded(payload, part.get_content_charset() or "utf-8"))
    return "\n".join(texts)


def _decoded(payload: bytes, declared: str) -> str:
    for charset in (declared, "utf-8", *_LEGACY_CHARSETS):
        try:
            return payload.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
    return payload.decode("utf-8", "replace")  # unreachable: latin-1 decodes any byte


def _attachment(item: dict[str, object]) -> Attachment:
    payload = item.get("payload") or ""
    if item.get("binary"):
        try:
            content = base64.b64decode(str(payload))
        except binascii.Error as exc:
            raise UnparseableMessage("base64", "an attachment is not valid base64") from exc
    else:
        content = str(payload).encode("utf-8", "replace")
    return Attachment(
        filename=str(item.get("filename") or ""),
        declared_type=str(item.get("mail_content_type") or "application/octet-stream"),
        content=content,
    )


class _TextExtractor(HTMLParser):
    _BLOCKS = frozenset({"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "blockquote"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("script", "style", "head"):
            self._skip += 1
        elif tag in self._BLOCKS:
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style", "head"):
            self._skip = max(0, self._skip - 1)

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)


def _html_to_text(html: str) -> str:
    """Good enough to read a form out of an HTML-only message."""
    if not html:
        return ""
    extractor = _TextExtractor()
    extractor.feed(html)
    lines = (line.strip() for line in "".join(extractor.chunks).splitlines())
    return "\n".join(line for line in lines if line)
