"""One digest, many subscribers: the subscribers who get the same digest
(the same news in the same language) share one rendering and one
composition, and each gets its bytes with only their own parts written in:
their address (``To``), a ``Message-ID``, and their secret, which is in the
``List-Unsubscribe`` header and in the unsubscribe address of the text and
HTML parts.

The shared email is the one the outbox composes (``Outbox.compose``: every
header, the parts and their transfer encodings are the outbox's own) for a
stand-in subscriber, flattened once with a random marker in place of each
personal part. Writing one subscriber's email joins the pieces between the
markers with that subscriber's values:

- in the header, values of the stand-in's shape: a secret of 32 hex digits
  (every secret mailflow makes) where the stand-in's 32 stood, in
  ``List-Unsubscribe``, which is written raw and folded only at
  whitespace, so the header reads exactly as if composed for them; a
  ``Message-ID`` token of the same shape; and an address the email package
  writes as it is (a plain ASCII ``local@domain``);
- each text part in the transfer encoding the outbox chose for it, its
  text being the stand-in's with the subscriber's secret in place of the
  stand-in's: hex digits are the same after HTML escaping and URL quoting,
  so that text is what rendering for the subscriber would give. A part in
  7bit, 8bit or quoted-printable is encoded once, and each secret is
  written over the bytes where the stand-in's landed (``_in_place`` says
  why that is exact); a part in base64 is encoded anew for each.

A subscriber outside these shapes (an address beyond plain ASCII, a secret
made some other way) is not written here: ``can_share`` says so, and the
fan-out composes their digest on its own. This module never renders and
never touches the database.
"""

from __future__ import annotations

import binascii
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage, MIMEPart

from mailflow.notify.compose import flatten

# Every secret mailflow makes: secrets.token_hex(16).
_SECRET = re.compile(r"[0-9a-f]{32}")
# A dot-atom local part of the usual characters at a host name: the email
# package writes such an address as given, never quoted, encoded or folded.
_PLAIN_ADDRESS = re.compile(r"[\w%+-]+(?:\.[\w%+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+", re.ASCII)
# The stand-in's address is a marker of its own: a domain that never resolves.
_STAND_IN_DOMAIN = "stand-in.invalid"
# What the email package puts on one line of base64 (78 // 4 * 3 bytes).
_BASE64_LINE_BYTES = 57


def can_share(address: str, secret: str) -> bool:
    """Whether this subscriber's digest can be written from a shared one."""
    return bool(_PLAIN_ADDRESS.fullmatch(address) and _SECRET.fullmatch(secret))


@dataclass(frozen=True)
class Personal:
    """What differs from one subscriber's copy to the next."""

    to: str
    secret: str
    message_token: str


@dataclass(frozen=True)
class Written:
    message_id: str
    raw: bytes  # not signed yet


Fill = Callable[[Personal], bytes]
# Composes the digest for a subscriber's (address, secret).
Compose = Callable[[str, str], EmailMessage]


class SharedDigest:
    """One digest's bytes, with the personal parts left to fill in."""

    def __init__(self, pieces: list[bytes | Fill], subject: str, domain: str) -> None:
        self._pieces = pieces
        self.subject = subject
        self._domain = domain

    @classmethod
    def compose(cls, compose: Compose, domain: str) -> SharedDigest:
        """Composed once for a stand-in; ``domain`` is the Message-ID's."""
        stand_in = f"{secrets.token_hex(16)}@{_STAND_IN_DOMAIN}"
        stand_in_secret = secrets.token_hex(16)
        message = compose(stand_in, stand_in_secret)
        message_token = secrets.token_hex(16)
        message.replace_header("Message-ID", f"<{message_token}@{domain}>")
        # 128 random bits cannot occur in any subscriber's parts.
        message.set_boundary(f"=_{secrets.token_hex(16)}")
        fills: dict[str, Fill] = {
            stand_in: _to,
            message_token: _message_token,
            stand_in_secret: _secret,
        }
        for part in message.iter_parts():
            marker = secrets.token_hex(16)
            fills[marker] = _part_fill(part, stand_in_secret)
            part.set_payload(marker)  # written as it is, in place of the encoded text
        pieces = _split(flatten(message), fills)
        return cls(pieces, str(message["Subject"]), domain)

    def write(self, to: str, secret: str) -> Written:
        """The bytes of one subscriber's digest (``can_share`` holds)."""
        personal = Personal(to, secret, secrets.token_hex(16))
        raw = b"".join(
            piece if isinstance(piece, bytes) else piece(personal) for piece in self._pieces
        )
        return Written(f"<{personal.message_token}@{self._domain}>", raw)


def _to(personal: Personal) -> bytes:
    return personal.to.encode("ascii")


def _message_token(personal: Personal) -> bytes:
    return personal.message_token.encode("ascii")


def _secret(personal: Personal) -> bytes:
    return personal.secret.encode("ascii")


def _part_fill(part: MIMEPart, stand_in_secret: str) -> Fill:
    """A text part, encoded for each subscriber as the outbox encoded it."""
    if part.get_content_maintype() != "text" or part.get_content_charset() != "utf-8":
        raise ValueError(f"a digest part must be UTF-8 text, not {part.get_content_type()}")
    encoding = str(part.get("Content-Transfer-Encoding", "7bit")).lower()
    text: str = part.get_content()
    if encoding == "base64":
        # Every byte moves every character after it: encoded anew each time.
        return lambda personal: _base64(text.replace(stand_in_secret, personal.secret))
    encode = _IN_PLACE.get(encoding)
    if encode is None:
        raise ValueError(f"a digest part in {encoding!r}: no encoder for it here")
    return _in_place(encode(text), encode(_other_digits(text, stand_in_secret)), stand_in_secret)


def _other_digits(text: str, stand_in_secret: str) -> str:
    """``text`` with every hex digit of the stand-in's secret changed."""
    other = "".join(f"{(int(digit, 16) + 8) % 16:x}" for digit in stand_in_secret)
    return text.replace(stand_in_secret, other)


def _in_place(encoded: bytes, with_other_digits: bytes, stand_in_secret: str) -> Fill:
    """The part encoded once, with each subscriber's secret written over
    the stand-in's. 7bit, 8bit and quoted-printable write a hex digit as
    itself, one byte wide, and break lines by width alone, so any secret
    lands on the same bytes, even where a soft line break cuts the
    stand-in's in two. Those bytes are where the part encoded with every
    digit changed differs; they must spell the stand-in's secret, each time
    it is in the text, and nothing else may differ."""
    places = [n for n, (a, b) in enumerate(zip(encoded, with_other_digits, strict=True)) if a != b]
    spelt = bytes(encoded[n] for n in places)
    times = len(places) // len(stand_in_secret)
    if not times or spelt != stand_in_secret.encode("ascii") * times:
        raise ValueError("the stand-in's secret is not where a subscriber's would be")
    # Runs of consecutive places: (first place, how many, where in the secrets).
    runs: list[tuple[int, int, int]] = []
    for order, place in enumerate(places):
        if runs and runs[-1][0] + runs[-1][1] == place:
            first, length, at = runs[-1]
            runs[-1] = (first, length + 1, at)
        else:
            runs.append((place, 1, order))
    pieces: list[bytes | slice] = []
    end = 0
    for first, length, at in runs:
        pieces += [encoded[end:first], slice(at, at + length)]
        end = first + length
    pieces.append(encoded[end:])

    def fill(personal: Personal) -> bytes:
        written = personal.secret.encode("ascii") * times
        return b"".join(written[p] if isinstance(p, slice) else p for p in pieces)

    return fill


def _split(raw: bytes, fills: dict[str, Fill]) -> list[bytes | Fill]:
    """``raw`` cut at every marker, each marker replaced by its fill; each
    must be there (the secret at least once, the others exactly once),
    else the shared email would not be the one composed."""
    by_marker = {marker.encode("ascii"): fill for marker, fill in fills.items()}
    pattern = re.compile(b"(" + b"|".join(map(re.escape, by_marker)) + b")")
    pieces: list[bytes | Fill] = []
    found: list[bytes] = []
    for n, piece in enumerate(pattern.split(raw)):
        if n % 2:
            found.append(piece)
            pieces.append(by_marker[piece])
        elif piece:
            pieces.append(piece)
    for marker, fill in by_marker.items():
        times = found.count(marker)
        if times < 1 or (fill is not _secret and times > 1):
            raise ValueError(f"a marker of the shared digest was written {times} times")
    return pieces


def _lines(text: str, linesep: bytes) -> bytes:
    """As the email package cuts a text part into lines (bytes.splitlines:
    CR, LF or CRLF, nothing else)."""
    return linesep.join(text.encode("utf-8").splitlines()) + linesep


def _as_is(text: str) -> bytes:
    return _lines(text, b"\r\n")


def _quoted_printable(text: str) -> bytes:
    return binascii.b2a_qp(_lines(text, b"\r\n"), istext=True)


def _base64(text: str) -> bytes:
    # Line ends encoded as the email package encodes them (LF), so that
    # every copy decodes to the same text as one composed on its own.
    data = _lines(text, b"\n")
    lines = (
        binascii.b2a_base64(data[at : at + _BASE64_LINE_BYTES], newline=False)
        for at in range(0, len(data), _BASE64_LINE_BYTES)
    )
    return b"\r\n".join(lines) + b"\r\n"


# The encodings that write each hex digit as itself.
_IN_PLACE: dict[str, Callable[[str], bytes]] = {
    "7bit": _as_is,
    "8bit": _as_is,
    "quoted-printable": _quoted_printable,
}
