"""A fuzz run of the path every spooled message takes before its handler:
``parse_message`` -> triage (``destinations``, ``must_stay_silent``,
``failed_dmarc``) -> forms (``parse_form``, ``comment_text``,
``read_submission``) and the document picker, the real functions called as
``Runner._handle`` and the handlers call them, in-process, no service.

The only exception allowed out of it is the documented refusal,
``UnparseableMessage`` (the runner keeps the message as "unparseable"); any
other is a worker crash, retried and shunted in production. Beyond that,
what comes out must be safe to store and to put back into our own mail.

Messages are built three ways: plausible but hostile structures (headers,
encoded words, charsets, nested multiparts, broken base64 and
quoted-printable, hostile attachment names, forms), random mutations of a
real submission, and arbitrary bytes. Hypothesis's search is random with
shrinking, not coverage-guided; the structured strategies are what reach
deep into the parsers.

CI runs a bounded number of examples per test (``MAILFLOW_FUZZ_EXAMPLES``,
default 200: a few seconds on two cores). Run it longer locally::

    MAILFLOW_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/torture/test_fuzz.py -q

The example database is off and a failure prints its ``@reproduce_failure``
blob, so a failing case can be pasted back as a decorator; add the shrunk
message as an ``@example`` once fixed. For a coverage-guided run, each test's
``.hypothesis.fuzz_one_input`` can be handed to atheris.
"""

from __future__ import annotations

import base64
import email
import quopri
import re
from datetime import UTC, datetime
from email import feedparser
from email.message import Message
from email.policy import SMTP as SMTP_POLICY
from email.utils import parseaddr

import pytest
from conftest import DATA, property_settings
from hypothesis import event, example, given
from hypothesis import strategies as st
from mails import DOMAIN, PDF, submission

from bench.corpus import submission as bench_submission
from mailflow.config import AddressSettings
from mailflow.documents import Document, pick_document
from mailflow.economies import Economies, builtin_economies
from mailflow.errors import UnparseableMessage
from mailflow.forms import RUNS_TO_NEXT_KEY, SUBMISSION_KEYS, comment_text, parse_form
from mailflow.parse import ParsedMessage, parse_message, read_structure
from mailflow.routing import Router
from mailflow.spool import Envelope
from mailflow.triage import SILENT_RULES, destinations, failed_dmarc, must_stay_silent
from mailflow.workflow.dispatch import HANDLERS
from mailflow.workflow.fields import read_submission, title_from_subject
from mailflow.workflow.flows.internship import APPLICATION_KEYS

pytestmark = pytest.mark.torture

FUZZ = property_settings("MAILFLOW_FUZZ_EXAMPLES", 200)

AUTHSERV_ID = "mx.mailflow.localhost"
ROUTER = Router(DOMAIN, AddressSettings(), HANDLERS, own_senders=[f"Mailflow <noreply@{DOMAIN}>"])
ECONOMIES = Economies(builtin_economies().values())
OUTCOMES = frozenset(outcome for outcome, _ in SILENT_RULES)
RECEIVED_AT = datetime(2026, 1, 5, 10, 0, tzinfo=UTC)


# -- the path, with its invariants -------------------------------------------


def take(raw: bytes, envelope: Envelope) -> None:
    """What the runner and the handlers do with one message before the
    database, each result checked."""
    try:
        parsed = parse_message(raw)
    except UnparseableMessage as refusal:
        assert refusal.reason, "a refusal says why"
        assert storable(refusal.reason), refusal.reason  # kept as the record's detail
        event("refused", re.sub(r"\d+", "N", re.split(r" \(|: ", refusal.reason)[0]))
        return
    check_parsed(parsed)
    check_triage(parsed, envelope)
    check_forms(parsed.text)
    title = title_from_subject(parsed.subject)
    assert storable(title) and not re.search(r"[\r\n]", title)
    document = check_documents(parsed)
    event("read", f"{len(parsed.attachments)} attachments, document: {document is not None}")


def storable(text: str) -> bool:
    """PostgreSQL text holds no NUL and only valid UTF-8 (no lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\x00" not in text


def is_addr_spec(address: str) -> bool:
    local, at, domain = address.partition("@")
    return (
        bool(at and local and domain)
        and "@" not in domain
        and not re.search(r'[\s\x00-\x1f\x7f<>(),;:"\[\]\\]', address)
        and parseaddr(address)[1] == address
    )


def check_parsed(parsed: ParsedMessage) -> None:
    # The sender is answered and stored: one bare address, never a guess.
    assert is_addr_spec(parsed.sender), parsed.sender
    assert parsed.sender == parsed.sender.lower()
    for value in (parsed.message_id, parsed.in_reply_to, *parsed.references):
        assert value == "" or re.fullmatch(r"<[\x21-\x7e]+>", value), value
    assert len(parsed.references) <= 20
    for line in (parsed.subject, parsed.sender_name):
        assert not re.search(r"[\r\n]", line) and line == line.strip(), line
    for text in (parsed.subject, parsed.sender_name, parsed.text):
        assert storable(text), text
    assert all("\x00" not in value for value in parsed.headers.values())
    assert all(key == key.lower() for key in parsed.headers)
    assert parsed.headers["received-count"].isdigit()
    assert len(set(parsed.recipients)) == len(parsed.recipients)
    assert all("@" in r and r == r.lower() for r in parsed.recipients)
    for attachment in parsed.attachments:
        assert isinstance(attachment.filename, str) and isinstance(attachment.content, bytes)


def check_triage(parsed: ParsedMessage, envelope: Envelope) -> None:
    assert must_stay_silent(parsed, envelope, ROUTER) in OUTCOMES | {None}
    found = destinations(parsed, envelope, ROUTER)
    assert len(set(found)) == len(found)
    assert envelope.recipients or len(found) <= 1
    for destination in found:
        assert destination.route in HANDLERS
        assert destination.address.endswith(f"@{DOMAIN}")
    assert failed_dmarc(parsed, AUTHSERV_ID) in (True, False)
    assert failed_dmarc(parsed, "") is False


def check_forms(text: str) -> None:
    for keys in (SUBMISSION_KEYS, APPLICATION_KEYS):
        form = parse_form(text, keys)
        assert set(form) <= set(keys.values())
        for field, value in form.items():
            assert value and value == value.strip() and storable(value)
            if field not in RUNS_TO_NEXT_KEY:  # single-line values
                assert not re.search(r"[\r\n]", value), (field, value)
    read_submission(parse_form(text), ECONOMIES)
    comment = comment_text(text)
    assert storable(comment)
    assert comment == comment.rstrip() and not comment.startswith("\n")
    assert "\n\n\n\n" not in comment
    assert not any(line.lstrip().startswith(">") for line in comment.split("\n"))


def check_documents(parsed: ParsedMessage) -> Document | None:
    """Names are sanitised by the picker, not by parse: check what it keeps."""
    document, refused = pick_document(parsed.attachments)
    names = list(refused)
    if document is not None:
        names.append(document.filename)
        assert document.filename.endswith(f".{document.extension}")
    for name in names:
        assert name and storable(name) and len(name) <= 255, name
        assert "/" not in name and "\\" not in name, name
        assert not name.startswith(".") and name not in (".", ".."), name
        assert not re.search(r"[\x00-\x1f\x7f-\x9f]", name), name
    return document


# -- plausible but hostile messages ----------------------------------------

OURS = [
    *(f"{local}@{DOMAIN}" for local in ("submit", "register", "help", "internship", "bounces")),
    f"subscribe@{DOMAIN}",
    f"unsubscribe@{DOMAIN}",
    f"unsubscribe+x1y2@{DOMAIN}",
    f"actions+TOKEN123@{DOMAIN}",
    f"comment+BP-2026-0001@{DOMAIN}",
    f"SUBMIT@{DOMAIN.upper()}",
    f"submit+@{DOMAIN}",
    f"noreply@{DOMAIN}",
]
FOREIGN = [
    "ana@example.org",
    "luis.rojas+tag@example.org",
    "MAILER-DAEMON@example.org",
    "postmaster@example.net",
    "a..b@example.org",
    '"quoted local"@example.org',
    "ana@[127.0.0.1]",
    "ana@example.org@evil.example",
    "@",
    "<>",
    "",
]
SPECIAL = list('\x00\r\n\t\x0b\x0c\x1c\x1e\x7f\x85\u2028\u202e\ufeff:;<>"()=?@,.\\/_- ')
PIECES = [
    "=?",
    "?=",
    "=?utf-8?q?",
    "=?utf-8?b?",
    "\r\n ",
    "\r\n\r\n",
    "<ana@example.org>",
    "evil@attacker.example",
    "undisclosed-recipients:;",
    "Ünïcödé",
    "名前",
    "مرحبا",
]
CHARSETS = [
    "utf-8",
    "UTF-8",
    "iso-8859-1",
    "windows-1252",
    "gb2312",
    "big5",
    "koi8-r",
    "utf-16",
    "utf-7",
    "us-ascii",
    "x-martian",
    "unknown-8bit",
    "",
    "utf-8*en",
    '"utf-8"',
]
FORM_KEYS = sorted({*SUBMISSION_KEYS, *APPLICATION_KEYS, "title", "Subject", "From"})
FORM_VALUES = [
    "Best practice            (or: Experience)",
    "bp",
    "Experience",
    "Chile",
    "Viet Nam",
    "Hong Kong, China",
    "1",
    "7",
    "Access to Financial Services",
    "Luis Rojas <luis@example.org>   (optional)",
    "BP-2026-0001",
]
REPLY_LINES = [
    "",
    "-- ",
    "--",
    "> quoted text",
    "  >> deeper",
    "On Mon, 5 Jan 2026 at 10:00, Ana Perez <ana@example.org> wrote:",
    "On Mon, 5 Jan 2026 at 10:00, Ana Perez <",
    "ana@example.org> wrote:",
    "El lun, 5 ene 2026 a las 10:00, Ana escribió:",
    "-----Original Message-----",
    "_" * 32,
    "From: Ana Perez <ana@example.org>",
    "Sent: Monday, January 5, 2026 10:00 AM",
    "To: submit@mailflow.localhost",
    "Subject: Re: [BP-2026-0001] Seed capital",
    "Sent from my iPhone",
    "发自我的iPhone",
]
FILENAMES = [
    "../../etc/passwd",
    "..\\..\\windows\\system32\\cmd.exe",
    "/etc/shadow",
    "C:\\boot.ini",
    "..",
    ".",
    "...",
    ".htaccess",
    "a/../../b.pdf",
    "report.pdf\x00.exe",
    "CON",
    "NUL.txt",
    "file\r\nX-Injected: 1.pdf",
    "invoice\u202efdp.exe",
    "名前.pdf",
    " ",
    "",
    "a" * 300 + ".pdf",
    "=?utf-8?b?Li4vLi4vZXRjL3Bhc3N3ZA==?=",
    "=?utf-8?q?..=2F..=2Fx.pdf?=",
    "%2e%2e%2fx.pdf",
    "seed capital.pdf",
]

hostile_text = st.lists(
    st.one_of(
        st.text(max_size=30),
        st.text(alphabet=SPECIAL, max_size=8),
        st.sampled_from(PIECES),
    ),
    max_size=6,
).map("".join)


def to_bytes(text: str, how: str) -> bytes:
    return text.encode(how, "replace")


text_bytes = st.builds(to_bytes, hostile_text, st.sampled_from(["utf-8", "latin-1", "ascii"]))


@st.composite
def encoded_words(draw: st.DrawFn) -> bytes:
    charset = draw(st.sampled_from(CHARSETS)).encode()
    payload = draw(st.one_of(text_bytes, st.binary(max_size=24)))
    if draw(st.booleans()):
        encoding, data = b"B", base64.b64encode(payload)
        if draw(st.booleans()):  # broken: cut, padded wrongly, stray characters
            data = data[: draw(st.integers(0, len(data)))] + draw(
                st.sampled_from([b"", b"=", b"==", b"!!", b"?"])
            )
    else:
        encoding = b"Q"
        data = b"".join(
            b"=%02X" % byte if byte > 126 or byte < 33 else bytes([byte]) for byte in payload
        )
        data += draw(st.sampled_from([b"", b"=", b"=Z", b"=ZZ", b"?"]))
    return b"=?" + charset + b"?" + encoding + b"?" + data + b"?="


header_value = st.lists(
    st.one_of(text_bytes, encoded_words(), st.binary(max_size=16)),
    min_size=1,
    max_size=4,
).flatmap(
    # Folded, run together, or (rarely) broken by a bare line end.
    lambda parts: st.sampled_from([b" ", b"\r\n ", b"", b"\r\n\t", b" ", b"\r\n"]).map(
        lambda j: j.join(parts)
    )
)

address = st.one_of(st.sampled_from(OURS + FOREIGN), hostile_text)
from_value = st.one_of(
    st.builds(lambda a: a.encode(), st.sampled_from(FOREIGN + OURS)),
    st.builds(
        lambda name, a: name + b" <" + a.encode("utf-8", "replace") + b">",
        st.one_of(text_bytes, encoded_words(), st.just(b'"Ana, Perez"')),
        address,
    ),
    st.sampled_from(
        [
            b"Friends: ana@example.org, luis@example.org;",
            b"admin@example.org:;",
            b"ana@example.org, luis@example.org",
            b"=?utf-8?q?evil=40attacker=2Eexample?= <ana@example.org>",
            b"=?utf-8?q?ana=40example=2Eorg?=",
            b"<ana@example.org> <luis@example.org>",
            b"ana@example.org (Ana; Perez: yes)",
            b'"ana@example.org" <evil@attacker.example>',
            b"Ana <<ana@example.org>>",
            b"ana@example.org\x00@evil.example",
        ]
    ),
    header_value,
)
# Mostly answerable, so that most messages get past parse to the deeper code.
readable_from = st.builds(
    lambda name, a: (name + b" <" + a + b">") if name else a,
    st.one_of(st.just(b""), text_bytes, encoded_words()),
    st.sampled_from(
        [
            b"ana@example.org",
            b"Luis.Rojas+tag@Example.ORG",
            b"MAILER-DAEMON@example.org",
            f"bounces@{DOMAIN}".encode(),
            f"noreply@{DOMAIN}".encode(),
        ]
    ),
)
recipients_value = st.lists(address, max_size=3).map(
    lambda a: ", ".join(a).encode("utf-8", "replace")
)
HEADER_VALUES: dict[bytes, st.SearchStrategy[bytes]] = {
    b"From": from_value,
    b"To": recipients_value,
    b"Cc": recipients_value,
    b"Delivered-To": recipients_value,
    b"X-Original-To": recipients_value,
    b"Subject": header_value,
    b"Auto-Submitted": st.sampled_from([b"no", b"auto-replied", b"auto-generated", b"NO ", b""]),
    b"Precedence": st.sampled_from([b"bulk", b"junk", b"list", b"auto_reply", b"first-class"]),
    b"X-Loop": st.sampled_from([f"mailflow@{DOMAIN}".encode(), b"other@example.org"]),
    b"Return-Path": st.sampled_from([b"<>", b"<ana@example.org>", b"<"]),
    b"List-Id": st.sampled_from([b"<news.example.org>", b""]),
    b"X-Autoreply": st.sampled_from([b"yes", b""]),
    b"Authentication-Results": st.one_of(
        st.sampled_from(
            [
                f"{AUTHSERV_ID}; dmarc=fail header.from=example.org".encode(),
                f"{AUTHSERV_ID.upper()} ; DMARC = fail".encode(),
                b"evil.example; dmarc=fail",
                f"{AUTHSERV_ID}; dmarc=pass".encode(),
                b";",
            ]
        ),
        header_value,
    ),
    b"Message-ID": st.one_of(
        st.sampled_from([b"<a@example.org>", b"<a\r\n@b>", b"<<>>", b"<a@b> <c@d>"]), header_value
    ),
    b"In-Reply-To": header_value,
    b"References": st.lists(st.sampled_from([b"<a@b>", b"<c@d>", b"junk"]), max_size=30).map(
        b" ".join
    ),
    b"Received": header_value,
    b"MIME-Version": st.sampled_from([b"1.0", b"2.0", b""]),
    b"Content-Type": st.builds(
        lambda t, c: t + b"; charset=" + c.encode(),
        st.sampled_from([b"text/plain", b"text/html", b"multipart/report", b"garbage"]),
        st.sampled_from(CHARSETS),
    ),
}
# Now and then a name that is no header name at all (which ends the header).
header_name = st.sampled_from([*sorted(HEADER_VALUES), b""]).flatmap(
    lambda name: (
        st.just(name) if name else st.text(alphabet="abcXYZ-: \t\x00", max_size=8).map(str.encode)
    )
)
header_field = header_name.flatmap(
    lambda name: HEADER_VALUES.get(name, header_value).map(lambda value: name + b": " + value)
)


@st.composite
def form_line(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 3))
    if kind == 0:
        key = draw(st.sampled_from(FORM_KEYS))
        key = draw(st.sampled_from([str.lower, str.upper, str.title, str.strip]))(key)
        indent = draw(st.sampled_from(["", " ", "   ", "    ", "\t"]))
        separator = draw(st.sampled_from([": ", ":", " : ", "：", ":\t", " "]))
        value = draw(st.one_of(st.sampled_from(FORM_VALUES), hostile_text))
        return indent + key + separator + value
    if kind == 1:
        return draw(st.sampled_from(["  ", "\t", " "])) + draw(hostile_text)
    if kind == 2:
        return draw(st.sampled_from(REPLY_LINES))
    return draw(hostile_text)


form_text = st.lists(form_line(), max_size=14).flatmap(
    lambda lines: st.sampled_from(["\n", "\r\n", "\r"]).map(lambda end: end.join(lines))
)


@st.composite
def body_content(draw: st.DrawFn) -> bytes:
    """What one part says, encoded as its headers claim, or not."""
    content = draw(
        st.one_of(
            st.builds(
                to_bytes, form_text, st.sampled_from(["utf-8", "latin-1", "utf-16", "gb2312"])
            ),
            form_text.map(
                lambda t: ("<html><body><p>" + t.replace("\n", "<br>") + "</p>").encode()
            ),
            st.just(PDF),
            st.binary(max_size=200),
        )
    )
    how = draw(st.sampled_from(["as is", "base64", "broken base64", "qp", "broken qp"]))
    if how == "base64":
        return base64.encodebytes(content)
    if how == "broken base64":
        data = base64.encodebytes(content)
        cut = draw(st.integers(0, len(data)))
        return data[:cut] + draw(st.sampled_from([b"!!!", b"=", b"====", b"\x00", b"\xff", b"A"]))
    if how == "qp":
        return quopri.encodestring(content)
    if how == "broken qp":
        return quopri.encodestring(content) + draw(
            st.sampled_from([b"=", b"=Z", b"=ZZ", b"=\r\n", b"=0"])
        )
    return content


@st.composite
def disposition(draw: st.DrawFn) -> list[bytes]:
    name = draw(st.one_of(st.sampled_from(FILENAMES), hostile_text)).encode()
    form = draw(st.integers(0, 4))
    if form == 0:
        param = b'filename="' + name + b'"'
    elif form == 1:
        param = b"filename=" + name
    elif form == 2:
        quoted = "".join(f"%{byte:02X}" for byte in name).encode()
        param = b"filename*=utf-8''" + quoted
    elif form == 3:
        half = len(name) // 2
        param = b'filename*0="' + name[:half] + b'"; filename*1="' + name[half:] + b'"'
    else:
        return [b'Content-Type: application/octet-stream; name="' + name + b'"']
    kind = draw(st.sampled_from([b"attachment", b"inline", b"ATTACHMENT", b""]))
    return [b"Content-Disposition: " + kind + b"; " + param]


@st.composite
def leaf(draw: st.DrawFn) -> bytes:
    headers: list[bytes] = []
    content_type = draw(
        st.sampled_from(
            [
                None,
                b"text/plain",
                b"text/html",
                b"application/pdf",
                b"application/octet-stream",
                b"message/delivery-status",
                b"text/calendar",
                b"image/png",
                b"",
                b"garbage",
                b"text/",
            ]
        )
    )
    if content_type is not None:
        charset = draw(st.sampled_from(CHARSETS)).encode()
        headers.append(b"Content-Type: " + content_type + b"; charset=" + charset)
    encoding = draw(
        st.sampled_from(
            [
                None,
                b"7bit",
                b"8bit",
                b"binary",
                b"base64",
                b"quoted-printable",
                b"x-uuencode",
                b"bogus",
            ]
        )
    )
    if encoding is not None:
        headers.append(b"Content-Transfer-Encoding: " + encoding)
    if draw(st.sampled_from([True, True, False])):
        headers.extend(draw(disposition()))
    headers = draw(st.permutations(headers))
    return b"".join(h + b"\r\n" for h in headers) + b"\r\n" + draw(body_content())


boundary = st.one_of(
    st.text(alphabet="abcxyz0123456789'()+_,-./:=? ", min_size=1, max_size=70).map(str.encode),
    st.sampled_from([b"x", b"=_", b"", b" ", b"a b", b'"', b"--", b"\xff", b"b" * 200]),
)


@st.composite
def multipart(draw: st.DrawFn, children: st.SearchStrategy[bytes]) -> bytes:
    mark = draw(boundary)
    parts = draw(st.lists(children, min_size=draw(st.sampled_from([1, 1, 0])), max_size=4))
    subtype = draw(
        st.sampled_from([b"mixed", b"alternative", b"related", b"report", b"digest", b"x"])
    )
    quoted = b'"' + mark + b'"' if draw(st.booleans()) else mark
    body = draw(st.sampled_from([b"", b"preamble\r\n", b"--" + mark + b"-\r\n"]))
    body += b"".join(b"\r\n--" + mark + b"\r\n" + part for part in parts)
    body += draw(
        st.sampled_from([b"\r\n--" + mark + b"--\r\n", b"", b"\r\n--" + mark + b"--epilogue"])
    )
    return b"Content-Type: multipart/" + subtype + b"; boundary=" + quoted + b"\r\n\r\n" + body


def enclosed(part: bytes) -> bytes:
    inner = b"From: luis@example.org\r\nSubject: inner\r\n" + part
    return b"Content-Type: message/rfc822\r\n\r\n" + inner


def nested(part: bytes, levels: int) -> bytes:
    for level in range(levels):
        mark = b"n%d" % level
        part = (
            b'Content-Type: multipart/mixed; boundary="' + mark + b'"\r\n\r\n--' + mark + b"\r\n"
        ) + (part + b"\r\n--" + mark + b"--\r\n")
    return part


def many(part: bytes, count: int) -> bytes:
    return (
        b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n'
        + (b"--m\r\n" + part + b"\r\n") * count
        + b"--m--\r\n"
    )


mime_tree = st.recursive(
    leaf(),
    lambda children: st.one_of(
        multipart(children),
        children.map(enclosed),
        st.builds(nested, children, st.sampled_from([2, 3, 11, 12, 13, 40])),
        st.builds(many, leaf(), st.sampled_from([3, 50, 199, 201, 401])),
    ),
    max_leaves=8,
)


@st.composite
def messages(draw: st.DrawFn) -> bytes:
    fields = draw(st.lists(header_field, max_size=10))
    if draw(st.sampled_from([True] * 9 + [False])):  # simplest first: with a From
        sender = draw(st.one_of(readable_from, from_value))
        at = draw(st.one_of(st.just(0), st.integers(0, len(fields))))
        fields.insert(at, b"From: " + sender)
    if draw(st.booleans()):
        fields.append(b"To: " + draw(recipients_value))
    # An mbox "From " line, or an empty line that leaves no header at all.
    mbox = b"From ana@example.org Mon Jan  5 10:00:00 2026\n"
    prefix = draw(st.sampled_from([b"", b"", b"", mbox, b"\r\n"]))
    body = draw(st.one_of(multipart(mime_tree), mime_tree))  # mostly several parts
    raw = prefix + b"".join(f + b"\r\n" for f in fields) + body
    newline = draw(st.sampled_from([None, None, b"\n", b"\r"]))
    if newline is not None:  # None keeps CRLF; bare LF mail is common, bare CR rare
        raw = raw.replace(b"\r\n", newline)
    return raw + draw(st.sampled_from([b"", b"\x00", b"\r\n.\r\n", b"\xff" * 3]))


envelopes = st.builds(
    Envelope,
    sender=st.one_of(
        st.sampled_from(["", "<>", "MAILER-DAEMON", "ana@example.org", f"bounces@{DOMAIN}"]),
        hostile_text,
    ),
    recipients=st.lists(address, max_size=3).map(tuple),
    received_at=st.just(RECEIVED_AT),
    source=st.sampled_from(["smtp", "lmtp", "ingest", "imap"]),
)


# -- the tests ---------------------------------------------------------------


@FUZZ
@example(  # found by this run: HeaderParseError escaped parse_message
    raw=b"From: ana@example.org\r\nSubject: =?utf-8?B?A?=\r\n\r\nhi\r\n",
    envelope=Envelope("", (), RECEIVED_AT, "smtp"),
)
@example(  # found by this run: mail-parser let HeaderParseError out
    raw=b"From: =?utf-8?B?A?= <ana@example.org>\r\n"
    b"Content-Type: multipart/mixed; boundary=0\r\n\r\n\r\n--0--\r\n",
    envelope=Envelope("", (), RECEIVED_AT, "smtp"),
)
@given(raw=messages(), envelope=envelopes)
def test_hostile_structured_messages_are_read_or_refused_never_a_crash(
    raw: bytes, envelope: Envelope
) -> None:
    """A message of hostile headers, encoded words, charsets, nested parts,
    broken transfer encodings, forms and attachment names is either read,
    triaged and its form and document taken safely, or refused as
    unparseable."""
    take(raw, envelope)


def seed() -> bytes:
    """A real submission, byte for byte the same on every run."""
    mail = submission()
    del mail["Message-ID"]
    mail["Message-ID"] = "<seed-1@example.org>"
    mail.set_boundary("seed-boundary")
    return mail.as_bytes(policy=SMTP_POLICY)


SEED = seed()
SNIPPETS = [
    b"\r\n",
    b"\r\n\r\n",
    b"\x00",
    b"--",
    b"--seed-boundary\r\n",
    b"--seed-boundary--",
    b"=?utf-8?b?",
    b"?=",
    b'Content-Type: multipart/mixed; boundary="seed-boundary"\r\n',
    b"Content-Transfer-Encoding: base64\r\n",
    b"Content-Transfer-Encoding: quoted-printable\r\n",
    b'filename="../../etc/passwd"',
    b"\xff\xfe",
    b"=\r\n",
    b"=ZZ",
    b"Auto-Submitted: auto-replied\r\n",
    b"From: ana@example.org, luis@example.org\r\n",
    b"\r\n ",
    b":",
    b";",
    b"<",
    b">",
    b"@",
]
mutations = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate", "newlines"]),
        st.integers(0, len(SEED)),
        st.integers(0, 200),
        st.one_of(st.binary(min_size=1, max_size=16), st.sampled_from(SNIPPETS)),
    ),
    min_size=1,
    max_size=8,
)


def mutate(raw: bytes, operations: list[tuple[str, int, int, bytes]]) -> bytes:
    for operation, at, size, data in operations:
        at = at % (len(raw) + 1)
        if operation == "flip" and raw:
            at = at % len(raw)
            raw = raw[:at] + bytes([raw[at] ^ (data[0] or 1)]) + raw[at + 1 :]
        elif operation == "insert":
            raw = raw[:at] + data + raw[at:]
        elif operation == "delete":
            raw = raw[:at] + raw[at + size :]
        elif operation == "duplicate":
            raw = raw[: at + size] + raw[at : at + size] + raw[at + size :]
        elif operation == "truncate":
            raw = raw[:at]
        elif operation == "newlines":
            raw = raw.replace(b"\r\n", data[:2] if data[:1] in (b"\n", b"\r") else b"\n")
    return raw


@FUZZ
@example(operations=[("insert", 0, 0, b"\r\n")])
@example(operations=[("newlines", 0, 0, b"\n")])
@given(operations=mutations)
def test_a_mutated_submission_is_read_or_refused_never_a_crash(
    operations: list[tuple[str, int, int, bytes]],
) -> None:
    """A real submission with bytes flipped, inserted, deleted, repeated or
    cut off is either read safely or refused as unparseable."""
    envelope = Envelope("ana@example.org", (f"submit@{DOMAIN}",), RECEIVED_AT, "smtp")
    take(mutate(SEED, operations), envelope)


def test_the_unmutated_seed_is_a_complete_submission() -> None:
    """The seed the mutations start from is read as the submission it is,
    so the mutation test starts from the deep end of the path."""
    parsed = parse_message(SEED)
    assert parsed.sender == "ana@example.org" and parsed.attachments
    assert parse_form(parsed.text)["economy"] == "Chile"


@FUZZ
@given(
    head=st.sampled_from([b"", b"From: ana@example.org\r\nTo: submit@mailflow.localhost\r\n"]),
    raw=st.binary(max_size=4000),
    envelope=envelopes,
)
def test_arbitrary_bytes_are_read_or_refused_never_a_crash(
    head: bytes, raw: bytes, envelope: Envelope
) -> None:
    """Any bytes at all, after a readable header or none, are read safely
    or refused as unparseable."""
    take(head + raw, envelope)


@FUZZ
@given(text=st.one_of(form_text, st.text(), hostile_text))
def test_any_text_gives_a_clean_form_and_comment(text: str) -> None:
    """Whatever a body says, the form reader gives single-line values (the
    summary aside) of known fields, and the comment keeps no quoted lines."""
    check_forms(text.replace("\r\n", "\n").replace("\x00", ""))  # as parse hands it on


@FUZZ
@given(text=st.text(alphabet=st.sampled_from("\r\na= -\u00e9"), max_size=40))
def test_the_end_of_line_search_finds_what_the_email_package_would(text: str) -> None:
    """``mailflow.parse`` has the email package's parser look for the line
    break that ends a part from two characters before the end, not from
    the start: the same match, found without scanning the whole part."""
    mine = feedparser.NLCRE_eol.search(text)  # type: ignore[attr-defined]
    theirs = re.compile(r"(\r\n|\r|\n)\Z").search(text)
    assert (mine and (mine.span(), mine.group(0))) == (theirs and (theirs.span(), theirs.group(0)))


def anatomy(message: Message) -> list[tuple[object, ...]]:
    """All the parser read, part by part, as it left it."""
    return [
        (
            part.get_unixfrom(),
            list(part.raw_items()),
            part.preamble,
            part.epilogue,
            [type(defect).__name__ for defect in part.defects],
            part._payload if isinstance(part._payload, str) else None,  # type: ignore[attr-defined]
        )
        for part in message.walk()
    ]


# Base64 written by ``base64.encodebytes`` ends its lines in LF alone: the
# runs read at once are lines ending in CR LF, as mail has them.
crlf_messages = messages().map(lambda raw: raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))


@FUZZ
@example(
    raw=b"Content-Type: multipart/mixed; boundary=b\r\nAAAA\r\n\r\nQUJD\r\nREVG\r\n--b\r\n"
    b"Content-Type: message/rfc822\r\n\r\nQUJD\r\n\r\nQUJD\r\nQUJD\r\n--b--\r\nQUJD\r\nQUJD\r\n"
)
@given(raw=st.one_of(messages(), crlf_messages))
def test_base64_runs_read_at_once_make_the_message_the_email_package_makes(raw: bytes) -> None:
    """``parse.read_structure`` reads each long run of base64 lines as one
    line standing for it, and puts the run back where that line landed:
    every header, payload, preamble, epilogue and defect is the email
    package's own. Every run is stood in for here, however short."""
    ours = anatomy(read_structure(raw, shortest_run=1))
    assert ours == anatomy(email.message_from_bytes(raw))


@pytest.mark.parametrize(
    "raw",
    [bench_submission(1, 300_000), *(p.read_bytes() for p in sorted(DATA.glob("*.eml")))],
)
def test_real_messages_read_at_once_are_the_email_packages(raw: bytes) -> None:
    assert anatomy(read_structure(raw)) == anatomy(email.message_from_bytes(raw))
    assert anatomy(read_structure(raw, shortest_run=1)) == anatomy(email.message_from_bytes(raw))
