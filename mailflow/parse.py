"""Turn raw bytes into a frozen ParsedMessage. The only importer of mail-parser.

Hostile input is expected: sizes, MIME part counts and nesting depth are
bounded, every header is decoded defensively, and anything the parser
cannot make sense of becomes an UnparseableMessage naming why, never a
crash of the worker.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parseaddr
from html.parser import HTMLParser

import mailparser

MAX_PARTS = 200
MAX_DEPTH = 12


class UnparseableMessage(Exception):
    """The bytes are not a message we can read; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


def parse_message(raw: bytes) -> ParsedMessage:
    try:
        mail = mailparser.parse_from_bytes(raw)
        _check_structure(mail.message)
        headers = _headers(mail.message)
        sender_name, sender = parseaddr(headers.get("from", ""))
        attachments = tuple(_attachment(a) for a in mail.attachments)
        text = "\n".join(mail.text_plain) or _html_to_text("\n".join(mail.text_html))
    except UnparseableMessage:
        raise
    except (RecursionError, LookupError, ValueError, TypeError, AttributeError) as exc:
        raise UnparseableMessage(f"the MIME structure could not be read ({exc})") from exc
    if not sender or "@" not in sender:
        raise UnparseableMessage("it has no readable From address")
    return ParsedMessage(
        message_id=headers.get("message-id", "").strip(),
        in_reply_to=headers.get("in-reply-to", "").strip(),
        references=tuple(re.findall(r"<[^<>\s]+>", headers.get("references", ""))),
        subject=" ".join(headers.get("subject", "").split()),
        sender=sender.lower(),
        sender_name=sender_name.strip(),
        recipients=_recipients(headers),
        text=text.replace("\r\n", "\n"),
        attachments=attachments,
        headers=headers,
    )


def _check_structure(message: Message) -> None:
    """Walk the MIME tree without recursion, refusing bombs."""
    parts = 0
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > MAX_PARTS:
            raise UnparseableMessage(f"it has more than {MAX_PARTS} MIME parts")
        if depth > MAX_DEPTH:
            raise UnparseableMessage(f"its MIME parts are nested deeper than {MAX_DEPTH} levels")
        payload = part.get_payload()
        if part.is_multipart() and isinstance(payload, list):
            stack.extend((c, depth + 1) for c in payload if isinstance(c, Message))


def _headers(message: Message) -> dict[str, str]:
    """The first value of each header, decoded to text (RFC 2047)."""
    decoded: dict[str, str] = {}
    for name, value in message.items():
        key = name.lower()
        if key not in decoded:
            decoded[key] = _decode_header(value)
    received = message.get_all("Received") or []
    decoded["received-count"] = str(len(received))
    return decoded


def _decode_header(value: object) -> str:
    try:
        return str(make_header(decode_header(str(value))))
    except (LookupError, ValueError, UnicodeError):
        return str(value).encode("ascii", "replace").decode()


def _recipients(headers: dict[str, str]) -> tuple[str, ...]:
    """Where the message says it went, in the order SPEC section 2 trusts."""
    found: list[str] = []
    for name in ("delivered-to", "x-original-to", "to", "cc"):
        for _, address in getaddresses([headers.get(name, "")]):
            if "@" in address and address.lower() not in found:
                found.append(address.lower())
    return tuple(found)


def _attachment(item: dict[str, object]) -> Attachment:
    payload = item.get("payload") or ""
    if item.get("binary"):
        try:
            content = base64.b64decode(str(payload))
        except binascii.Error as exc:
            raise UnparseableMessage("an attachment is not valid base64") from exc
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
