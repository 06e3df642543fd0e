"""mailflow's DATA reader (``mailflow.ingress.data``, issue 8) answers
exactly as aiosmtpd's own line-by-line reader: the same replies, the same
content, the same session afterwards, whatever the bytes and however they
are cut into packets.

Both protocols, aiosmtpd's ``SMTP`` and mailflow's ``IngressSMTP``, run on
this test's event loop and are fed through ``data_received``, as a socket
transport feeds them, one chunk at a time, the loop settling in between;
so each reader sees the chunk boundaries. Hypothesis draws the messages
(dots, bare CR and LF, ``<LF>.<LF>``, lines around the length limit, sizes
around the size limit, terminators inside the data, a client vanishing at
any byte) and two independent chunkings; what is compared is every reply,
what the handler received, and whether the server closed. The bench
corpus and tests/data then go through both over real sockets.

Examples per property: ``MAILFLOW_DATA_EXAMPLES`` (default 300, a few
seconds); the example database is off and a failure prints its blob.
"""

from __future__ import annotations

import asyncio
import smtplib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from conftest import free_port, property_settings
from hypothesis import event, given
from hypothesis import strategies as st

from bench.corpus import submission
from mailflow.ingress.smtp import ConnectionLimits, IngressLMTP, IngressSMTP

AGREE = property_settings("MAILFLOW_DATA_EXAMPLES", 300)
LINE_LIMIT = SMTP.line_length_limit  # 1001: 998 octets, CRLF and a transparency dot
DATA = Path(__file__).parent / "data"


def _unlimited() -> ConnectionLimits:
    return ConnectionLimits(10**6, 10**6)


class OurSMTP(IngressSMTP):
    """mailflow's server as it runs, less the connection caps (test_smtp.py)."""

    def __init__(self, handler: Any, **options: Any) -> None:
        super().__init__(handler, limits=_unlimited(), **options)


class OurLMTP(IngressLMTP):
    def __init__(self, handler: Any, **options: Any) -> None:
        super().__init__(handler, limits=_unlimited(), **options)


# -- two servers on one loop --------------------------------------------------


class Recorder:
    """A handler that keeps what each protocol hands to handle_DATA."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes | None, Any]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append((envelope.original_content, envelope.content))
        return "250 OK"


class Wire(asyncio.Transport):
    """The server's side of a connection: records what the server writes and
    closes as a socket transport does (connection_lost on the next turn,
    nothing sent after close)."""

    def __init__(self, protocol: SMTP) -> None:
        super().__init__()
        self.protocol = protocol
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 25025) if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.closed:  # a socket transport drops what is written after close()
            self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def pause_reading(self) -> None:
        """Flow control has nothing to hold back: chunks come one by one."""

    def resume_reading(self) -> None:
        """See pause_reading."""


@dataclass(frozen=True)
class Transcript:
    replies: bytes
    messages: list[tuple[bytes | None, Any]]
    closed_by_server: bool


async def settle() -> None:
    """Let the server take everything fed so far (a handful of loop turns)."""
    for _ in range(12):
        await asyncio.sleep(0)


async def converse(protocol: type[SMTP], chunks: list[bytes], **options: Any) -> Transcript:
    recorder = Recorder()
    server = protocol(recorder, hostname="mx.test", loop=asyncio.get_running_loop(), **options)
    wire = Wire(server)
    server.connection_made(wire)
    await settle()
    for chunk in chunks:
        if wire.closed:
            break
        server.data_received(chunk)
        await settle()
    closed_by_server = wire.closed
    wire.close()  # the client goes away, in the middle of DATA or not
    await settle()
    return Transcript(bytes(wire.written), recorder.messages, closed_by_server)


def both(
    stream: bytes,
    cuts: tuple[list[int], list[int]],
    pair: tuple[type[SMTP], type[SMTP]] = (SMTP, OurSMTP),
    **options: Any,
) -> tuple[Transcript, Transcript]:
    async def run() -> tuple[Transcript, Transcript]:
        return (
            await converse(pair[0], split(stream, cuts[0]), **options),
            await converse(pair[1], split(stream, cuts[1]), **options),
        )

    return asyncio.run(run())


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = [0, *sorted(set(cuts)), len(stream)]
    return [stream[a:b] for a, b in pairwise(points) if b > a]


def session(*bodies: bytes, greeting: bytes = b"EHLO client.test") -> bytes:
    """A client's whole side: each body is sent after DATA as given (so it
    carries its own terminator, or not), then NOOP, RSET and QUIT."""
    transactions = b"".join(
        b"MAIL FROM:<ana@example.org>\r\nRCPT TO:<submit@mailflow.test>\r\nDATA\r\n" + body
        for body in bodies
    )
    return greeting + b"\r\n" + transactions + b"NOOP\r\nRSET\r\nQUIT\r\n"


# -- messages -------------------------------------------------------------------

TRICKY = [
    b".",
    b"..",
    b"...",
    b"\r",
    b"\n",
    b"\r\n",
    b"\r\n.",
    b"\r\n..",
    b".\r\n",
    b"\n.\n",
    b"\r\n.\n",
    b"\n.\r\n",
    b"\r.\r\n",
    b".\r",
    b"\r\r\n",
    b"\n\r",
    b"\x00",
    b"\xff\xfe",
    b"Subject: x\r\n",
]

pieces = st.one_of(
    st.sampled_from(TRICKY),
    st.sampled_from(TRICKY),
    st.binary(max_size=24),
    # ordinary lines, to reach sizes around the size limit
    st.builds(lambda n: b"Some text.\r\n" * n, st.integers(1, 150)),
    # lines around the length limit, and far beyond it
    st.builds(
        lambda n, c: c * n,
        st.integers(LINE_LIMIT - 5, LINE_LIMIT + 3),
        st.sampled_from([b"x", b"."]),
    ),
    st.builds(lambda n: b"y" * n, st.integers(LINE_LIMIT + 4, 3 * LINE_LIMIT)),
    # a terminator inside the data: what follows it is read as commands
    st.just(b"\r\n.\r\nNOOP\r\n"),
)
bodies = st.lists(pieces, max_size=30).map(b"".join)
endings = st.sampled_from([b"\r\n.\r\n", b".\r\n", b"\r\n.\n", b"\n.\n", b""])


def size_limits(length: int) -> st.SearchStrategy[int | None]:
    """No limit (None or 0, as aiosmtpd reads them), any, or one within a
    few bytes of the message's own length."""
    return st.one_of(
        st.none(), st.just(0), st.integers(1, 6000), st.integers(max(1, length - 6), length + 6)
    )


@st.composite
def chunkings(draw: st.DrawFn, length: int) -> list[int]:
    if length < 2:
        return []
    return draw(st.lists(st.integers(1, length - 1), max_size=40))


def assert_same(stock: Transcript, ours: Transcript) -> None:
    assert ours.replies == stock.replies
    assert ours.messages == stock.messages
    assert ours.closed_by_server == stock.closed_by_server


def agree(transcripts: tuple[Transcript, Transcript]) -> None:
    """assert_same, noting which answers the examples reached (shown by
    ``--hypothesis-show-statistics``)."""
    stock = transcripts[0]
    after_354 = stock.replies.split(b"354 End data with <CR><LF>.<CR><LF>\r\n", 1)[1:]
    event(f"first DATA answered {after_354[0][:3].decode() or 'never'}" if after_354 else "no DATA")
    event(f"{len(stock.messages)} messages accepted")
    assert_same(*transcripts)


# -- the properties ---------------------------------------------------------------


@AGREE
@given(body=bodies, ending=endings, data=st.data())
def test_any_message_in_any_chunks_gets_the_same_answer_and_content(
    body: bytes, ending: bytes, data: st.DataObject
) -> None:
    """Whatever the body, its ending and the size limit, mailflow's reader
    replies, keeps and continues the session exactly as aiosmtpd's, each
    server receiving the stream cut at different places."""
    size_limit = data.draw(size_limits(len(body)))
    stream = session(body + ending, b"second message\r\n.\r\n")
    cuts = (data.draw(chunkings(len(stream))), data.draw(chunkings(len(stream))))
    agree(both(stream, cuts, data_size_limit=size_limit))


@AGREE
@given(body=bodies, data=st.data())
def test_lmtp_reads_data_the_same_way(body: bytes, data: st.DataObject) -> None:
    """The LMTP ingress shares the reader and answers as aiosmtpd's LMTP."""
    size_limit = data.draw(size_limits(len(body)))
    stream = session(body + b"\r\n.\r\n", greeting=b"LHLO client.test")
    cuts = (data.draw(chunkings(len(stream))), data.draw(chunkings(len(stream))))
    agree(both(stream, cuts, (LMTP, OurLMTP), data_size_limit=size_limit))


@AGREE
@given(body=bodies, data=st.data())
def test_a_client_vanishing_anywhere_is_handled_the_same(body: bytes, data: st.DataObject) -> None:
    """When the connection ends at any byte, in the middle of the data or
    not, both servers have said the same and accepted the same."""
    stream = session(body + b"\r\n.\r\n", b"second\r\n.\r\n")
    stream = stream[: data.draw(st.integers(0, len(stream)))]
    cuts = (data.draw(chunkings(len(stream))), data.draw(chunkings(len(stream))))
    agree(both(stream, cuts, data_size_limit=data.draw(size_limits(len(body)))))


def near(length: int) -> list[bytes]:
    """Bodies whose one long line is ``length`` bytes with its CRLF."""
    line = b"z" * (length - 2) + b"\r\n"
    return [line, b"a\r\n" + line, b"." + line[1:], line + b"\r\n"]


EDGES = [
    b"",
    b"\r\n",
    b".",
    b"..\r\n",
    b".\n",
    b"\n.\n",
    b"\r\n.\n",
    b"a\n.\nb",
    b"a\r\n.\nb",
    b"a\n.\r\nb",
    b".x\r\n.\r\r\n..\r\n",
    b"\r\n\r\n\r\n",
    b"\r\r\r\r\n",
    *(body for n in range(LINE_LIMIT - 1, LINE_LIMIT + 4) for body in near(n)),
]


@pytest.mark.parametrize("size_limit", [None, 1, 999, 1000, 1001, 1002, 1003, 1004, 2005])
@pytest.mark.parametrize("body", EDGES, ids=range(len(EDGES)))
def test_edges_agree_whole_and_byte_by_byte(body: bytes, size_limit: int | None) -> None:
    """The known edges (an empty message, a lone dot, bare LF around dots,
    lines one or two bytes either side of the limit, sizes either side of
    the size limit) agree whether the stream comes whole or a byte at a time."""
    stream = session(body + b"\r\n.\r\n", body + b".\r\n")
    whole = both(stream, ([], []), data_size_limit=size_limit)
    assert_same(*whole)
    message = len(session(body + b"\r\n.\r\n"))
    byte_by_byte = list(range(message - 40, message + 5))  # around the first terminator
    assert_same(*both(stream, (byte_by_byte, byte_by_byte), data_size_limit=size_limit))


def test_the_reply_is_not_sent_before_the_end_of_the_data() -> None:
    """Oversize or over-long, the 552 or 500 comes only once the terminator
    has arrived, as in aiosmtpd (RFC 5321 section 4.2.5)."""
    head = session(b"")[: -len(b"NOOP\r\nRSET\r\nQUIT\r\n")]

    async def replies_before_the_end(protocol: type[SMTP], body: bytes) -> bytes:
        transcript = await converse(protocol, [head, body], data_size_limit=100)
        return transcript.replies

    for body in (b"x" * 5000, b"y\r\n" * 100):
        stock = asyncio.run(replies_before_the_end(SMTP, body))
        assert asyncio.run(replies_before_the_end(OurSMTP, body)) == stock
        assert stock.endswith(b"354 End data with <CR><LF>.<CR><LF>\r\n")


# -- the corpus over real sockets ------------------------------------------------


class Serving(Controller):
    def __init__(self, protocol: type[SMTP], handler: Recorder) -> None:
        super().__init__(
            handler, hostname="127.0.0.1", port=free_port(), data_size_limit=30_000_000
        )
        self.protocol = protocol

    def factory(self) -> SMTP:
        return self.protocol(self.handler, **self.SMTP_kwargs)


Received = tuple[int, bytes | None]  # the DATA reply code, what the handler got


@pytest.fixture
def servers() -> Iterator[Callable[[bytes], tuple[Received, Received]]]:
    recorders = {SMTP: Recorder(), OurSMTP: Recorder()}
    controllers = [Serving(protocol, recorder) for protocol, recorder in recorders.items()]
    for controller in controllers:
        controller.start()

    def send(raw: bytes) -> tuple[Received, Received]:
        received: list[Received] = []
        for controller, recorder in zip(controllers, recorders.values(), strict=True):
            with smtplib.SMTP(controller.hostname, controller.port, timeout=30) as smtp:
                smtp.ehlo()
                smtp.mail("ana@example.org")
                smtp.rcpt("submit@mailflow.test")
                code, _ = smtp.data(raw)
            content = recorder.messages.pop()[0] if recorder.messages else None
            received.append((code, content))
        return received[0], received[1]

    yield send
    for controller in controllers:
        controller.stop()


@pytest.mark.parametrize("size", [0, 2_000, 300_000, 2_000_000])
def test_the_bench_corpus_arrives_byte_for_byte(
    servers: Callable[[bytes], tuple[Received, Received]], size: int
) -> None:
    """A realistic submission (bench/corpus.py) sent with smtplib reaches
    the handler with the same bytes from both servers."""
    raw = submission(size, size)
    stock, ours = servers(raw)
    assert ours == stock
    assert stock[0] == 250 and stock[1] == raw


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.eml")))
def test_the_hostile_eml_corpus_gets_the_same_answer(
    servers: Callable[[bytes], tuple[Received, Received]], name: str
) -> None:
    """The hostile .eml files in tests/data get the same reply from both
    servers and, when accepted, reach the handler with the same bytes."""
    stock, ours = servers((DATA / name).read_bytes())
    assert ours == stock
