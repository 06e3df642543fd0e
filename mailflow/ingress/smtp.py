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
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, syntax
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from aiosmtpd.smtp import Session as SmtpSession

from mailflow.errors import SpoolError
from mailflow.ingress.data import Outcome, read_data
from mailflow.routing import Router
from mailflow.spool import Envelope, Spool

log = logging.getLogger(__name__)

OK = "250 2.0.0 Message accepted for delivery"
RECIPIENT_OK = "250 2.1.5 Recipient ok"
NO_SUCH_USER = "550 5.1.1 No such mailbox here; write to help@{domain} for the addresses"
NOT_OUR_DOMAIN = "550 5.7.1 Relaying denied: we only accept mail for {domain}"
DISK_FULL = "452 4.3.1 Insufficient storage; please try again later"
TRY_AGAIN = "451 4.3.0 Temporary failure; please try again later"
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

    async def handle_RCPT(
        self,
        server: SMTP,
        session: SmtpSession,
        envelope: SmtpEnvelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
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
            await loop.run_in_executor(None, self._spool.put, spooled, raw)
        except SpoolError as exc:
            log.error("could not spool a message from %s: %s", spooled.sender, exc)
            return self._per_recipient(envelope, DISK_FULL if "full" in str(exc) else TRY_AGAIN)
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


class IngressSMTP(SMTP):
    """aiosmtpd's SMTP with the message read in chunks (ingress.data)."""

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


class IngressController(Controller):
    """aiosmtpd's threaded controller, speaking LMTP when configured."""

    def __init__(
        self, handler: IngressHandler, host: str, port: int, *, lmtp: bool, max_message_bytes: int
    ) -> None:
        super().__init__(
            handler,
            hostname=host,
            port=port,
            data_size_limit=max_message_bytes,
            server_hostname="mailflow",
            ident="mailflow",
        )
        self._lmtp = lmtp

    def factory(self) -> Any:
        protocol = IngressLMTP if self._lmtp else IngressSMTP
        return protocol(self.handler, **self.SMTP_kwargs)
