"""Where finished emails go: a maildir (the default, and what tests read)
or an SMTP relay. The only importer of aiosmtplib.

A transport returns what the other side said (the relay's reply, or the
file written) and raises ``PermanentFailure`` when retrying cannot help
(the relay answered 5xx, at RCPT or after DATA, or cannot carry an
SMTPUTF8 message that needs it) and ``OSError`` for anything that may pass
(network, 4xx, disk); the outbox decides what to do with either. Delivering the same
outbox row twice must be harmless: the maildir file name is derived from
the row, so a second delivery after a crash replaces the first.

The relay is given one pass of the outbox over one connection (up to
``MESSAGES_PER_CONNECTION``), as mail servers send a queue: a digest to
thousands costs one connection, greeting, STARTTLS and login per hundred
emails, not per email. ``close`` ends it when the pass is over, and any
failure drops it, so the next email starts on a fresh one.
"""

from __future__ import annotations

import asyncio
import hashlib
import socket
import threading
from contextlib import suppress
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import aiosmtplib

from mailflow.durable import write_file
from mailflow.errors import PermanentFailure
from mailflow.notify.addresses import needs_smtputf8, outgoing_address


class Transport(Protocol):
    # How long one delivery may take: a row is leased for that long, so a
    # sender killed mid-delivery holds the row back no longer than this.
    lease: timedelta
    # How each line of the email it is given ends: CR LF, as SMTP sends
    # it, or LF, as a maildir keeps it.
    line_end: bytes

    def deliver(self, recipient: str, envelope_sender: str, raw: bytes, row_id: int) -> str: ...

    def close(self) -> None:
        """The pass of the outbox is over: let go of what it kept open."""


class MaildirTransport:
    """One file per recipient in ``<maildir>/new``, with the ``Delivered-To``
    and ``Return-Path`` headers a local delivery agent would add, and its
    line ends: LF, as Postfix's and Dovecot's delivery write a maildir (a
    mail reader such as mutt shows each CR as ``^M``)."""

    lease = timedelta(seconds=10)
    line_end = b"\n"

    def __init__(self, root: Path) -> None:
        self.root = root
        for folder in ("tmp", "new", "cur"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    def deliver(self, recipient: str, envelope_sender: str, raw: bytes, row_id: int) -> str:
        digest = hashlib.sha256(recipient.encode()).hexdigest()[:12]
        name = f"{row_id:010d}.{digest}.{socket.gethostname()}"
        delivered_to = outgoing_address(recipient)  # as the SMTP envelope has it
        headers = f"Return-Path: <{envelope_sender}>\nDelivered-To: {delivered_to}\n".encode()
        write_file(self.root / "tmp" / name, self.root / "new" / name, (headers, raw))
        return f"written to {self.root / 'new' / name}"

    def close(self) -> None:
        """Nothing stays open from one file to the next."""


# Many relays end a session after about 100 messages (Gmail and Exchange
# Online among them); a fresh connection before that is never refused.
MESSAGES_PER_CONNECTION = 100


class _Connection:
    """One thread's open session with the relay and the event loop it lives in."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self.client: aiosmtplib.SMTP | None = None
        self.sent = 0


class SmtpTransport:
    """Relay through an SMTP server, with optional STARTTLS and login. The
    password comes from the environment variable the config names. Each
    thread that drains the outbox has a connection of its own."""

    line_end = b"\r\n"

    def __init__(
        self,
        host: str,
        port: int,
        *,
        starttls: bool,
        username: str,
        password: str,
        timeout: float = 60,
    ) -> None:
        self._host, self._port = host, port
        self._starttls, self._username, self._password = starttls, username, password
        self._timeout = timeout
        self.lease = timedelta(seconds=timeout + 30)
        self._local = threading.local()

    def deliver(self, recipient: str, envelope_sender: str, raw: bytes, row_id: int) -> str:
        recipient = outgoing_address(recipient)
        connection = self._connection()
        try:
            return connection.runner.run(self._send(connection, recipient, envelope_sender, raw))
        except BaseException as exc:
            self.close()  # whatever went wrong, the next email starts afresh
            if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
                # Our one recipient refused at RCPT: its reply decides, as after DATA.
                raise _failure(exc.recipients[0]) from exc
            if isinstance(exc, aiosmtplib.SMTPResponseException):
                raise _failure(exc) from exc
            if isinstance(exc, aiosmtplib.SMTPException):
                raise OSError(str(exc)) from exc
            raise

    def close(self) -> None:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            return
        self._local.connection = None
        if connection.client is not None:
            connection.runner.run(_end(connection.client))
        connection.runner.close()

    def _connection(self) -> _Connection:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = _Connection()
        return connection

    async def _send(
        self, connection: _Connection, recipient: str, envelope_sender: str, raw: bytes
    ) -> str:
        client = await self._open(connection)
        smtputf8 = needs_smtputf8(recipient) or needs_smtputf8(envelope_sender)
        smtputf8 = smtputf8 or not raw.partition(b"\r\n\r\n")[0].isascii()
        options = []
        if smtputf8:
            self._check_smtputf8(client, recipient)
            options.append("SMTPUTF8")
        if not raw.isascii() and client.supports_extension("8bitmime"):
            options.append("BODY=8BITMIME")  # RFC 6152: the body's 8-bit parts are declared
        _refused, accepted = await client.sendmail(
            envelope_sender, [recipient], raw, mail_options=options
        )
        connection.sent += 1
        return f"250 {accepted}"  # the only reply to DATA that means accepted

    async def _open(self, connection: _Connection) -> aiosmtplib.SMTP:
        """The thread's session, opened anew when there is none, the relay
        closed it, or it carried its share of messages."""
        client = connection.client
        if client is not None:
            if connection.sent < MESSAGES_PER_CONNECTION and await _still_open(client):
                return client
            await _end(client)
        client = connection.client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            start_tls=self._starttls,
            username=self._username or None,
            password=self._password or None,
            timeout=self._timeout,
        )
        connection.sent = 0
        await client.connect()
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        return client

    def _check_smtputf8(self, client: aiosmtplib.SMTP, recipient: str) -> None:
        """Sent to a relay without SMTPUTF8, the address or the UTF-8 header
        would arrive mangled: the email is kept as failed instead, and the
        administrator sees why."""
        if not client.supports_extension("smtputf8"):
            raise PermanentFailure(
                f"the relay {self._host}:{self._port} does not offer SMTPUTF8,"
                f" which this email to {recipient} needs (RFC 6531)"
            )


async def _still_open(client: aiosmtplib.SMTP) -> bool:
    """A relay may end a session between two emails (idle too long, or its
    own limit of messages), which nothing noticed while no email was being
    sent: one NOOP tells, before the next email is put on it."""
    if not client.is_connected:
        return False
    try:
        await client.noop()
    except (aiosmtplib.SMTPException, OSError):
        return False
    return True


async def _end(client: aiosmtplib.SMTP) -> None:
    """QUIT if the relay still listens; the socket is closed either way."""
    with suppress(aiosmtplib.SMTPException, OSError):
        if client.is_connected:
            await client.quit()
    client.close()


def _failure(exc: aiosmtplib.SMTPResponseException) -> Exception:
    """A 5xx will be the same answer tomorrow: failed for good, with the
    server's own words. Anything else may pass, and is tried again."""
    reply = f"{exc.code} {exc.message}"
    return PermanentFailure(reply) if 500 <= exc.code < 600 else OSError(reply)
