"""The recipients' mail servers, for the tests of outgoing mail: a real
SMTP server on a loopback port that refuses, defers or delivers each
recipient as the test says. What it delivers it writes into the test's
maildir, with the ``Delivered-To:`` a local delivery agent adds, so the
usual ``outbox`` fixture reads it whichever way it came."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from conftest import free_port

from mailflow.notify.transports import MaildirTransport


class Relay:
    """Refuses the addresses in ``gone`` at RCPT (550), those in ``too_big``
    after DATA (552), answers 451 once to those in ``busy``, and delivers
    the rest."""

    def __init__(self) -> None:
        self.start(Path())

    def start(self, maildir: Path) -> None:
        self.maildir = maildir
        self.gone: set[str] = set()
        self.too_big: set[str] = set()
        self.busy: set[str] = set()
        self.tried: Counter[str] = Counter()
        self.delivered = 0

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.tried[address] += 1
        if address in self.gone:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        [recipient] = envelope.rcpt_tos
        if recipient in self.too_big:
            return "552 5.3.4 Message size exceeds fixed maximum message size"
        if recipient in self.busy:
            self.busy.discard(recipient)
            return "451 4.3.0 Temporary lookup failure, try again later"
        assert isinstance(envelope.content, bytes) and envelope.mail_from
        self.delivered += 1
        # Kept as a local delivery agent keeps it: lines ending in LF.
        transport = MaildirTransport(self.maildir)
        text = envelope.content.replace(b"\r\n", transport.line_end)
        transport.deliver(recipient, envelope.mail_from, text, self.delivered)
        return "250 2.0.0 Ok: queued"


@contextmanager
def relay_running() -> Iterator[tuple[Relay, int]]:
    """A Relay on a free loopback port, until the block ends."""
    relay, port = Relay(), free_port()
    controller = Controller(relay, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield relay, port
    finally:
        controller.stop()
