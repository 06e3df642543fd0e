"""Where finished emails go: a maildir (the default, and what tests read)
or an SMTP relay. The only importer of aiosmtplib.

A transport returns what the other side said (the relay's reply, or the
file written) and raises ``PermanentFailure`` when retrying cannot help
(the relay answered 5xx, at RCPT or after DATA, or cannot carry an
SMTPUTF8 message that needs it) and ``OSError`` for anything that may pass
(network, 4xx, disk); the outbox decides what to do with either. Delivering the same
outbox row twice must be harmless: the maildir file name is derived from
the row, so a second delivery after a crash replaces the first.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Protocol

import aiosmtplib

from mailflow.errors import PermanentFailure
from mailflow.notify.addresses import needs_smtputf8, outgoing_address


class Transport(Protocol):
    # How long one delivery may take: a row is leased for that long, so a
    # sender killed mid-delivery holds the row back no longer than this.
    lease: timedelta

    def deliver(self, recipient: str, envelope_sender: str, raw: bytes, row_id: int) -> str: ...


class MaildirTransport:
    """One file per recipient in ``<maildir>/new``, with the ``Delivered-To``
    and ``Return-Path`` headers a local delivery agent would add."""

    lease = timedelta(seconds=10)

    def __init__(self, root: Path) -> None:
        self.root = root
        for folder in ("tmp", "new", "cur"):
            (root / folder).mkdir(parents=True, exist_ok=True)

    def deliver(self, recipient: str, envelope_sender: str, raw: bytes, row_id: int) -> str:
        digest = hashlib.sha256(recipient.encode()).hexdigest()[:12]
        name = f"{row_id:010d}.{digest}.{socket.gethostname()}"
        delivered_to = outgoing_address(recipient)  # as the SMTP envelope has it
        headers = f"Return-Path: <{envelope_sender}>\r\nDelivered-To: {delivered_to}\r\n".encode()
        temporary = self.root / "tmp" / name
        with open(temporary, "wb") as file:
            file.write(headers + raw)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.root / "new" / name)
        descriptor = os.open(self.root / "new", os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return f"written to {self.root / 'new' / name}"


class SmtpTransport:
    """Relay through an SMTP server, with optional STARTTLS and login. The
    password comes from the environment variable the config names."""

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

    def deliver(self, recipient: str, envelope_sender: str, raw: bytes, row_id: int) -> str:
        recipient = outgoing_address(recipient)
        try:
            return asyncio.run(self._send(recipient, envelope_sender, raw))
        except aiosmtplib.SMTPRecipientsRefused as exc:
            # Our one recipient refused at RCPT: its reply decides, as after DATA.
            raise _failure(exc.recipients[0]) from exc
        except aiosmtplib.SMTPResponseException as exc:
            raise _failure(exc) from exc
        except aiosmtplib.SMTPException as exc:
            raise OSError(str(exc)) from exc

    async def _send(self, recipient: str, envelope_sender: str, raw: bytes) -> str:
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            start_tls=self._starttls,
            username=self._username or None,
            password=self._password or None,
            timeout=self._timeout,
        )
        smtputf8 = needs_smtputf8(recipient) or needs_smtputf8(envelope_sender)
        smtputf8 = smtputf8 or not raw.partition(b"\r\n\r\n")[0].isascii()
        async with client:
            if smtputf8:
                await self._check_smtputf8(client, recipient)
            _refused, accepted = await client.sendmail(
                envelope_sender,
                [recipient],
                raw,
                mail_options=["SMTPUTF8"] if smtputf8 else [],
            )
        return f"250 {accepted}"  # the only reply to DATA that means accepted

    async def _check_smtputf8(self, client: aiosmtplib.SMTP, recipient: str) -> None:
        """Sent to a relay without SMTPUTF8, the address or the UTF-8 header
        would arrive mangled: the email is kept as failed instead, and the
        administrator sees why."""
        if client.is_ehlo_or_helo_needed:
            await client.ehlo()
        if not client.supports_extension("smtputf8"):
            raise PermanentFailure(
                f"the relay {self._host}:{self._port} does not offer SMTPUTF8,"
                f" which this email to {recipient} needs (RFC 6531)"
            )


def _failure(exc: aiosmtplib.SMTPResponseException) -> Exception:
    """A 5xx will be the same answer tomorrow: failed for good, with the
    server's own words. Anything else may pass, and is tried again."""
    reply = f"{exc.code} {exc.message}"
    return PermanentFailure(reply) if 500 <= exc.code < 600 else OSError(reply)
