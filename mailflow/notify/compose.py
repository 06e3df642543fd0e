"""The email package's messages, made and written faster, byte for byte
as it would write them.

A review email carries the submitted document again; the email package
encodes an attachment's base64 one line at a time, each a string of its
own, writes a body two calls per line, and builds a new header class for
every header set. For a 300 KB document that was half the CPU of composing
the email. Here the same classes do the same work in bulk: the base64 as
one string, each body in one write, each header class made once per name.
The bytes are the email package's own (tests/test_compose.py compares
them); nothing here may change what is written, only how fast. The only
importer of pybase64: its ``encodebytes`` writes the standard library's
bytes in one call, where the standard library makes one call per 57-byte
line, and a document is encoded again each time a review email carrying
it is sent (docs/benchmarks.md).

A review email's attachment is a document the files store keeps already
(``store/files.py``), so the outbox keeps the email without its base64
(``leave_out``) and puts it back as the email is sent (``put_back``): as a
database value it was written into the outbox, the WAL and the TOAST
table, then read back and hex-decoded, two fifths of PostgreSQL's work
for a submission (docs/benchmarks.md).

Also the header rules every email follows: the threading headers, plain
addresses and text that stays one header.
"""

from __future__ import annotations

import re
import secrets
from collections import OrderedDict
from collections.abc import Callable, Sequence
from contextlib import suppress
from email.contentmanager import ContentManager, raw_data_manager
from email.generator import BytesGenerator
from email.headerregistry import Address, BaseHeader, HeaderRegistry
from email.message import EmailMessage, Message
from email.policy import SMTP, SMTPUTF8, default
from io import BytesIO
from typing import Any

import pybase64

from mailflow.notify.addresses import needs_smtputf8, outgoing_address
from mailflow.store.models import Case
from mailflow.triage import Incoming

# Message-IDs in the References of one email: enough to thread, bounded
# against a sender that sends a thousand.
MAX_REFERENCES = 10


# Header values parsed and kept for the next emails: the same From, the
# text parts' Content-Type and such repeat in every email. The least
# recently used go first, so the values that never repeat (a Message-ID, a
# multipart boundary) make way for them, not the other way round.
_PARSED_KEPT = 1024


class _HeaderClasses(HeaderRegistry):
    """The registry makes a new class (``type(...)``) for every header it
    parses; a class depends only on the name, so each is made once. And
    each value is parsed once: most of an email's headers are the same in
    every email, and parsing them was a tenth of processing a submission.
    A header object is shared by the emails that carry it: the email
    package never changes one once made (setting a parameter makes a new
    one, and folding reads the parse tree without changing it)."""

    def __init__(self) -> None:
        super().__init__()
        self._made: dict[str, type[BaseHeader]] = {}
        self._parsed: OrderedDict[tuple[str, str], BaseHeader] = OrderedDict()

    def __call__(self, name: str, value: Any) -> BaseHeader:
        if not isinstance(value, str):  # Address objects and lists: as given
            return super().__call__(name, value)
        key = (name, value)  # the name as given: it is written as given
        found = self._parsed.get(key)
        if found is None:
            found = self._parsed[key] = super().__call__(name, value)
            if len(self._parsed) > _PARSED_KEPT:
                with suppress(KeyError):  # another thread dropped it first
                    self._parsed.popitem(last=False)
        else:
            with suppress(KeyError):
                self._parsed.move_to_end(key)
        return found

    def __getitem__(self, name: str) -> type[BaseHeader]:
        key = name.lower()
        if key not in self._made:
            self._made[key] = super().__getitem__(name)
        return self._made[key]

    def map_to_type(self, name: str, cls: type[BaseHeader]) -> None:
        super().map_to_type(name, cls)
        self._made.pop(name.lower(), None)
        self._parsed.clear()  # made by the class this name had


def _base64_lines(data: bytes) -> str:
    """``data`` as the email package's base64 body: lines of 76 characters
    (RFC 2045's most), each ending in a line feed."""
    return pybase64.encodebytes(data).decode("ascii")


CRLF = b"\r\n"


def _base64_bytes(data: bytes, line_end: bytes = CRLF) -> bytes:
    """``data`` as ``flatten`` writes an attachment's base64: lines of 76
    characters, each ending in CR LF (or ``line_end``)."""
    lines = pybase64.encodebytes(data)  # each ending in LF
    return lines if line_end != CRLF else lines.replace(b"\n", CRLF)


# The line that stands for a stored file's base64 between composing an
# email and storing it: random to each process, never written anywhere, so
# no text of an email (a case's title is a sender's text) can spell it.
_STORED = f"mailflow-stored-{secrets.token_hex(16)}-"
_STORED_LINE = re.compile(rb"(?<=\n)" + re.escape(_STORED.encode("ascii")) + rb"([0-9a-f]{64})\r\n")


def stored_payload(name: str) -> str:
    """The payload of an attachment whose bytes are the stored file ``name``
    (its SHA-256): a line that ``leave_out`` finds."""
    return f"{_STORED}{name}\n"


def leave_out(raw: bytes) -> tuple[bytes, list[tuple[int, str]]]:
    """A flattened email without its stored files' lines, and where each
    file's base64 goes back (the offset in the bytes returned, the name)."""
    kept: list[bytes] = []
    places: list[tuple[int, str]] = []
    at = length = 0
    for found in _STORED_LINE.finditer(raw):
        kept.append(raw[at : found.start()])
        length += found.start() - at
        places.append((length, found.group(1).decode("ascii")))
        at = found.end()
    kept.append(raw[at:])
    return b"".join(kept), places


def put_back(
    raw: bytes,
    places: Sequence[Sequence[object]],
    read: Callable[[str], bytes],
    line_end: bytes = CRLF,
) -> bytes:
    """The email's bytes whole: each stored file's base64 where ``leave_out``
    took its line, byte for byte what ``flatten`` writes for the file
    attached. ``read`` gives a stored file's bytes. With ``line_end`` LF,
    each line ends in LF instead, as a maildir keeps a message: written so,
    not converted afterwards, since converting the document's base64 costs
    more than writing it so (docs/benchmarks.md)."""
    pieces: list[bytes] = []
    at = 0
    for offset, name in places:
        assert isinstance(offset, int) and isinstance(name, str)
        # The stored line was a part's whole body: the blank line ending
        # the part's header is before it, its own line end after it. No CR
        # LF is cut in two where the base64 goes back.
        pieces += [ended(raw[at:offset], line_end), _base64_bytes(read(name), line_end)]
        at = offset
    pieces.append(ended(raw[at:], line_end))
    return b"".join(pieces)


def ended(text: bytes, line_end: bytes) -> bytes:
    """``text`` (CR LF, as stored) with its lines ending in ``line_end``."""
    return text if line_end == CRLF else text.replace(CRLF, line_end)


class _Contents(ContentManager):
    """The email package's ``raw_data_manager``, but bytes are encoded to
    base64 in one pass: its handler writes the headers (type, filename,
    parameters) for an empty body, then the body is set."""

    def get_content(self, msg: Message, *args: Any, **kw: Any) -> Any:
        return raw_data_manager.get_content(msg, *args, **kw)

    def set_content(self, msg: Message, obj: Any, *args: Any, **kw: Any) -> None:
        # (maintype, subtype, cte, ...) as set_bytes_content takes them
        cte = args[2] if len(args) > 2 else kw.get("cte", "base64")
        if isinstance(obj, bytes | bytearray | memoryview) and cte == "base64":
            raw_data_manager.set_content(msg, b"", *args, **kw)
            msg.set_payload(_base64_lines(bytes(obj)))
        else:
            raw_data_manager.set_content(msg, obj, *args, **kw)


POLICY = default.clone(header_factory=_HeaderClasses(), content_manager=_Contents())


def new_message() -> EmailMessage:
    return EmailMessage(policy=POLICY)


class _Generator(BytesGenerator):
    # _write_lines and _NL are the email package's own, unlisted in its
    # stubs. Were they renamed, this would no longer be called: slower, and
    # the bytes the same.
    def _write_lines(self, lines: str) -> None:
        # The email package writes a body two calls per line (a 300 KB
        # attachment is 4,000 lines); one write of the same bytes. A body
        # holding a CR is left to it: its line ends are mixed.
        if "\r" in lines:
            super()._write_lines(lines)  # type: ignore[misc]
        else:
            self.write(lines.replace("\n", self._NL))  # type: ignore[attr-defined]


def header_text(text: str) -> str:
    """Text (a case title, most often) that stays the text of one header: no
    control characters, and no ``=?`` a mail library could take for an
    encoded word on its way out; a CR LF encoded inside one would otherwise
    become a header of its own (CVE-2024-6923). The word joiner keeps the
    title looking the same."""
    printable = "".join(" " if ord(c) < 32 or ord(c) == 127 else c for c in text)
    return printable.replace("=?", "=\u2060?")


def address_header(text: str) -> str:
    """A plain address as a header value; refuses header injection. The
    parts are given apart: the email package refuses to parse a local part
    beyond ASCII, which SMTPUTF8 allows (RFC 6531)."""
    if any(c in text for c in "\r\n"):
        raise ValueError(f"line break in an address: {text!r}")
    username, _, domain = outgoing_address(text).rpartition("@")
    if not username:
        return text
    if not username.isascii():
        return str(Address(username=username, domain=domain))
    return str(Address(addr_spec=f"{username}@{domain}"))


def charset_params(maintype: str, content: bytes) -> dict[str, str]:
    """Text with no charset is read as ASCII, every other byte shown as
    U+FFFD (a report's CSV naming "Hợp tác xã"): text that is UTF-8 says so.
    Other bytes (a document as its author sent it) are left undeclared."""
    if maintype != "text":
        return {}
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return {}
    return {"charset": "utf-8"}


def flatten(message: EmailMessage) -> bytes:
    """The bytes of a composed email, as stored (before any signature):
    ``message.as_bytes(policy=SMTP)``, or SMTPUTF8, written faster."""
    out = BytesIO()
    policy = SMTPUTF8 if _is_smtputf8(message) else SMTP
    _Generator(out, mangle_from_=False, policy=policy).flatten(message)
    return out.getvalue()


def _is_smtputf8(message: EmailMessage) -> bool:
    """An email to or naming an address with no ASCII form is written as an
    SMTPUTF8 message, its header in raw UTF-8 (RFC 6532); any other keeps
    RFC 2047 words, which every mail client reads."""
    return any(
        needs_smtputf8(address.addr_spec)
        for name in ("From", "To", "Reply-To")
        for address in getattr(message[name], "addresses", ())
    )


def thread(message: EmailMessage, case: Case | None, answering: Incoming | None) -> None:
    """In-Reply-To and References, so that every email about a case, and
    every answer, sits in the reader's thread.

    An answer's In-Reply-To is the message it answers, and its References
    end with it (RFC 5322 section 3.6.4), even when that message is itself
    a reply or opened the case. The list keeps its first entry (the case's
    thread, else the root of the incoming thread) and the latest ones."""
    answered = answering.parsed.message_id if answering is not None else ""
    earlier: list[str] = []
    if case is not None and case.thread_id:
        earlier.append(case.thread_id)
    if answering is not None:
        earlier.extend(answering.parsed.references)
    references = [r for r in dict.fromkeys(earlier) if r and r != answered]
    if answered:
        references.append(answered)
    if len(references) > MAX_REFERENCES:
        references = references[:1] + references[1 - MAX_REFERENCES :]
    if references:
        message["In-Reply-To"] = references[-1]
        message["References"] = " ".join(references)
