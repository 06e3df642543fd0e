"""The SMTP (or LMTP) ingress: a thin, honest aiosmtpd handler.

It checks recipients at RCPT time (550 for anything that is not one of our
addresses), refuses oversize mail with 552 (aiosmtpd announces SIZE in
EHLO), and answers 250 only after the message is in the spool, fsynced.
The DATA phase is aiosmtpd's, read in large chunks by
``mailflow.ingress.data`` instead of line by line: same replies, same bytes.
The spool write runs in a thread, so the event loop never waits on a disk;
no database, parsing or rendering happens here. Any failure, including a
bug, answers 451 so that the sending server keeps the message and retries.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, syntax
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from mailflow.config import SmtpSettings
from mailflow.errors import SpoolError
from mailflow.ingress.data import Outcome, read_data
from mailflow.routing import Router
from mailflow.spool import Envelope, Spool

log = logging.getLogger(__name__)

OK = "250 2.0.0 Message accepted for delivery"
RECIPIENT_OK = "250 2.1.5 Recipient ok"
NO_SUCH_USER = "550 5.1.1 No such mailbox here; write to help@{domain} for the addresses"
NOT_OUR_DOMAIN = "550 5.7.1 Relaying denied: we only accept mail for {domain}"
SENDER_OK = "250 2.1.0 Sender ok"
BAD_SENDER = "553 5.1.7 The sender address is not valid UTF-8"
BAD_RECIPIENT = "553 5.1.3 The recipient address is not valid UTF-8"
DISK_FULL = "452 4.3.1 Insufficient storage; please try again later"
TRY_AGAIN = "451 4.3.0 Temporary failure; please try again later"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections; please try again later"
# aiosmtpd answers 421 and closes when a session sends a command more often
# than this. Commands that carry no mail could otherwise hold a connection
# for ever, since each one restarts the idle timeout (Postfix's
# smtpd_junk_command_limit is 100 too); mail itself is not limited, as a
# relay may deliver any number of messages over one connection.
COMMAND_CALL_LIMITS = {
    **dict.fromkeys(("NOOP", "RSET", "VRFY", "EXPN", "HELP", "HELO", "EHLO", "LHLO"), 100),
    "*": 10**9,
}
# aiosmtpd's own DATA replies, word for word, so the faster reader is invisible.
NEED_RCPT = "503 Error: need RCPT command"
DATA_SYNTAX = "501 Syntax: DATA"
START_DATA = "354 End data with <CR><LF>.<CR><LF>"
LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
TOO_MUCH_DATA = "552 Error: Too much mail data"


class IngressHandler:
    def __init__(
        self, spool: Spool, router: Router, on_spooled: Callable[[], None], lmtp: bool = False
    ) -> None:
        self._spool = spool
        self._router = router
        self._on_spooled = on_spooled
        self._lmtp = lmtp

    async def handle_MAIL(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: SmtpEnvelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if not _is_utf8(address):
            return BAD_SENDER
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return SENDER_OK

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not _is_utf8(address):
            return BAD_RECIPIENT
        domain = self._router.domain
        if not address.lower().endswith("@" + domain):
            return NOT_OUR_DOMAIN.format(domain=domain)
        if not self._router.accepts(address):
            return NO_SUCH_USER.format(domain=domain)
        envelope.rcpt_tos.append(address)
        return RECIPIENT_OK

    async def handle_DATA(self, server: SMTP, session: SmtpSession, envelope: SmtpEnvelope) -> str:
        raw = envelope.original_content or b""
        spooled = Envelope(
            sender=envelope.mail_from or "",
            recipients=tuple(envelope.rcpt_tos),
            received_at=datetime.now(UTC),
            source="lmtp" if self._lmtp else "smtp",
        )
        loop = asyncio.get_running_loop()
        try:
            stem = await loop.run_in_executor(None, self._spool.put, spooled, raw)
        except SpoolError as exc:
            log.error("could not spool a message from %s: %s", spooled.sender, exc)
            return self._per_recipient(envelope, DISK_FULL if "full" in str(exc) else TRY_AGAIN)
        _log_accepted(stem, raw, session)
        self._on_spooled()
        return self._per_recipient(envelope, OK)

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session failed", exc_info=error)
        return TRY_AGAIN

    def _per_recipient(self, envelope: SmtpEnvelope, status: str) -> str:
        """LMTP answers DATA once per accepted recipient (RFC 2033)."""
        if not self._lmtp:
            return status
        return "\r\n".join([status] * max(1, len(envelope.rcpt_tos)))


def _is_utf8(address: str) -> bool:
    """With SMTPUTF8 on, aiosmtpd keeps bytes that are not UTF-8 as
    surrogate escapes: such an address could be neither stored nor
    answered, so it is refused while the sender can still hear why."""
    try:
        address.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class ConnectionLimits:
    """Open sessions, in all and per client address, so that idle or slow
    clients cannot take every file the process may open. Used only from
    the event loop's thread, so it needs no lock."""

    def __init__(self, total: int, per_client: int) -> None:
        self.total, self.per_client = total, per_client
        self._open: Counter[str] = Counter()

    def admit(self, client: str) -> bool:
        if self._open.total() >= self.total or self._open[client] >= self.per_client:
            return False
        self._open[client] += 1
        return True

    def release(self, client: str) -> None:
        self._open[client] -= 1
        if not self._open[client]:
            del self._open[client]


class IngressSMTP(SMTP):
    """aiosmtpd's SMTP with connection limits and the message read in
    chunks (ingress.data)."""

    def __init__(self, handler: IngressHandler, *, limits: ConnectionLimits, **kwargs: Any):
        super().__init__(handler, **kwargs)
        self._limits = limits
        self._client: str | None = None  # set once admitted

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is not None:  # STARTTLS: the same session, again
            super().connection_made(transport)
            return
        peer = transport.get_extra_info("peername")
        client = str(peer[0]) if peer else ""
        if not self._limits.admit(client):
            log.warning("refused a connection from %s: too many open sessions", client)
            assert isinstance(transport, asyncio.WriteTransport)
            transport.write(f"{TOO_MANY_CONNECTIONS}\r\n".encode())
            transport.close()
            return
        self._client = client
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._client is None:  # refused: aiosmtpd never saw it
            return
        self._limits.release(self._client)
        self._client = None
        super().connection_lost(error)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        if self._decode_data or "DATA" not in self._handle_hooks:
            # Text content or the deprecated process_message() API: neither
            # is mailflow's, so aiosmtpd's own reader handles them.
            await super().smtp_DATA(arg)
            return
        # aiosmtpd 1.4.6 smtp_DATA has no hook between its checks, its
        # reading and its ending, so its first and last lines are repeated here.
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push(NEED_RCPT)
            return
        if arg:
            await self.push(DATA_SYNTAX)
            return
        await self.push(START_DATA)
        try:
            outcome, content = await read_data(
                self._reader, self.data_size_limit, self.line_length_limit
            )
        except asyncio.CancelledError:
            log.info("connection lost during DATA")
            self._writer.close()
            raise
        if outcome is not Outcome.COMPLETE:
            await self.push(LINE_TOO_LONG if outcome is Outcome.LINE_TOO_LONG else TOO_MUCH_DATA)
            self._set_post_data_state()
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push(status)


class IngressLMTP(IngressSMTP, LMTP):
    """LMTP (LHLO, one reply per recipient) with the same DATA reader."""


def _try_binding(host: str, port: int) -> None:
    """Bind each address of ``host`` as asyncio's server will (with
    SO_REUSEADDR), then let go; raise as asyncio does if one is taken."""
    for family, kind, protocol, _, address in socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    ):
        with socket.socket(family, kind, protocol) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                raise OSError(
                    exc.errno,
                    f"error while attempting to bind on address {address!r}: "
                    f"{(exc.strerror or str(exc)).lower()}",
                ) from None


class IngressController(Controller):
    """aiosmtpd's threaded controller, speaking LMTP when configured."""

    def __init__(
        self,
        handler: IngressHandler,
        settings: SmtpSettings,
        *,
        max_message_bytes: int,
    ) -> None:
        super().__init__(
            handler,
            hostname=settings.host,
            port=settings.port,
            data_size_limit=max_message_bytes,
            server_hostname="mailflow",
            ident="mailflow",
            command_call_limit=COMMAND_CALL_LIMITS,
            # Addresses such as josé@ejemplo.cl (RFC 6531); the message
            # itself is spooled as the bytes it is, UTF-8 headers and all.
            enable_SMTPUTF8=True,
        )
        self._lmtp = settings.lmtp
        self._limits = ConnectionLimits(
            settings.max_connections, settings.max_connections_per_client
        )

    def start(self) -> None:
        """aiosmtpd tells of an address it cannot bind (the port taken) only
        once its whole ready timeout has passed, 5 s: binding it here
        first says so at once, with the same error."""
        _try_binding(self.hostname, self.port)
        super().start()

    def factory(self) -> Any:
        protocol = IngressLMTP if self._lmtp else IngressSMTP
        return protocol(self.handler, limits=self._limits, **self.SMTP_kwargs)


_MESSAGE_ID = re.compile(rb"^message-id:[ \t]*(.*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)


def _log_accepted(stem: str, raw: bytes, session: SmtpSession) -> None:
    """The line an operator greps when a sender asks "did you get it?"."""
    found = _MESSAGE_ID.search(raw.partition(b"\r\n\r\n")[0])
    message_id = found.group(1).decode("utf-8", "replace") if found else ""
    client = str(session.peer[0]) if isinstance(session.peer, tuple) else str(session.peer or "")
    log.info(
        "accepted %s (%d bytes) from %s as spool %s",
        message_id or "a message without Message-ID",
        len(raw),
        client,
        stem,
        extra={"message_id": message_id, "size": len(raw), "client": client, "spool": stem},
    )
