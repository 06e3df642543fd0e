"""The transactional outbox.

``Outbox.enqueue`` renders and composes an email and adds it to the
caller's session: the email exists exactly when the change that caused it
commits. ``Outbox.drain`` hands due emails to the transport afterwards;
each row is leased before sending, so two drainers, on one host or on
several, never send the same row at once, and retried with backoff when
the transport fails for a while. A 5xx fails the row for good at once;
the drainer's ``on_failed`` hears of it in the same transaction, so
whoever must know is told at once.
``requeue`` puts a row back for sending now (`mailflow outbox retry`).

Two guards live here because every email passes here: nothing is ever
sent to one of our own addresses, and automatic answers to one address are
limited, which ends a conversation with a robot that hides what it is (the
triage already keeps every honest robot from being answered at all).

Each email is rendered in its own recipient's language (``Readers.of``),
so one event that tells a focal point and an administrator writes each in
theirs, and says which in ``Content-Language``.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from mailflow.clock import Clock
from mailflow.errors import PermanentFailure
from mailflow.hosts import gone, process_identity, this_kernel
from mailflow.languages import ENGLISH_ONLY, Readers
from mailflow.notify.compose import (
    address_header,
    charset_params,
    ended,
    flatten,
    header_text,
    leave_out,
    new_message,
    put_back,
    stored_payload,
    thread,
)
from mailflow.notify.dkim import Signer
from mailflow.notify.headers import RAW, raw_header
from mailflow.notify.render import Renderer
from mailflow.notify.transports import Transport
from mailflow.routing import Router
from mailflow.store.db import Database, server_now
from mailflow.store.models import Case, OutboxMessage
from mailflow.triage import Incoming

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
# Emails leased at once by a drainer: one transaction for ten instead of
# one for each; a host killed mid-batch delays at most ten by their lease.
BATCH = 10

# Told of a row failed for good, inside the transaction that records it.
OnFailed = Callable[[Session, OutboxMessage], None]

# Automatic answers to one address within an hour: to a reply to one of our
# emails, the same answer about the same case at most twice (a person who
# fixes a form twice still hears each time; a robot answering us gets a
# second answer and then silence); and at most ten answers of any kind (a
# robot that does not thread, or whose every message opens a new case).
ANSWER_WINDOW = timedelta(hours=1)
SAME_ANSWERS_PER_WINDOW = 2
ANSWERS_PER_WINDOW = 10


@dataclass(frozen=True)
class FileAttachment:
    filename: str
    content_type: str
    content: bytes
    # The file's name in the files store when it is kept there (a case's
    # document): the outbox then keeps the email without these bytes, and
    # puts them back as it sends it.
    stored_as: str = ""


@dataclass(frozen=True)
class Outgoing:
    """One email to write: which template, to whom, about what."""

    template: str
    to: str
    context: dict[str, Any] = field(default_factory=dict)
    case: Case | None = None
    answering: Incoming | None = None
    reply_to: str = ""
    attachments: tuple[FileAttachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()  # e.g. List-Unsubscribe
    return_path: str = ""  # a per-recipient bounce address (VERP); default bounces@
    # A person's own distinct message earned this answer (an acknowledgement,
    # a status list, a confirmation of a decision): the cap on answers of any
    # kind, meant for robots, never withholds it (SPEC section 7).
    earned: bool = False


class Outbox:
    def __init__(
        self,
        renderer: Renderer,
        router: Router,
        clock: Clock,
        sender: str,
        return_path: str,
        signer: Signer | None = None,
        readers: Readers = ENGLISH_ONLY,
    ) -> None:
        self._renderer = renderer
        self.readers = readers  # who reads which language (the digests ask it in bulk)
        self._router = router
        self._clock = clock
        self._sender = sender
        self._return_path = return_path
        self._signer = signer

    def enqueue(self, session: Session, outgoing: Outgoing) -> OutboxMessage | None:
        if self._router.is_ours(outgoing.to):
            log.warning("not sending %s to our own address %s", outgoing.template, outgoing.to)
            return None
        if outgoing.case is not None and outgoing.case.id is None:
            session.flush()  # a case not written yet (Engine.open_case): its id first
        now = self._clock.now()
        if outgoing.answering is not None and self._answered_enough(session, outgoing, now):
            log.warning(
                "not answering %s with %s again within the hour: a mail loop, most likely",
                outgoing.to,
                outgoing.template,
            )
            return None
        message = self.compose(outgoing, self.readers.of(session, outgoing.to))
        raw, stored_places = leave_out(flatten(message))
        row = OutboxMessage(
            created_at=now,
            recipient=outgoing.to,
            envelope_sender=outgoing.return_path or self._return_path,
            message_id=str(message["Message-ID"]),
            subject=str(message["Subject"]),
            template=outgoing.template,
            case_id=outgoing.case.id if outgoing.case else None,
            answers_id=outgoing.answering.record.id if outgoing.answering else None,
            raw=raw,
            stored_places=stored_places or None,
            next_attempt_at=now,
        )
        session.add(row)
        return row

    def _as_sent(self, leased: Leased, read: Callable[[str], bytes], line_end: bytes) -> bytes:
        """The email whole, signed when DKIM is on, its lines ending as the
        transport's do. A signature is made over CR LF, as SMTP carries the
        email: a signed one for a maildir is converted after."""
        places = leased.stored_places or ()
        if self._signer is None:
            return put_back(leased.raw, places, read, line_end)
        signed = self._signed(put_back(leased.raw, places, read))
        return ended(signed, line_end)

    def _signed(self, raw: bytes) -> bytes:
        """``raw`` with its DKIM signature in front when DKIM is on.

        Signed as it is handed to the transport, as an MTA's signing filter
        would, not when written: a digest fan-out writes 100,000 emails in
        minutes, and their signatures (about a millisecond of RSA each, and
        dkimpy's canonicalization) would be most of that time; the drain
        signs at the pace the relay takes them. Nothing rewrites the stored
        bytes, so a retry signs the same bytes again (with its own time,
        ``t=``). An email stored signed, before mailflow signed as it sends,
        keeps its one signature."""
        if self._signer is None or raw.startswith(b"DKIM-Signature:"):
            return raw
        return self._signer.sign(raw)

    def _answered_enough(self, session: Session, outgoing: Outgoing, now: datetime) -> bool:
        replies_to_us = self._replies_to_us(outgoing.answering)
        if outgoing.earned and not replies_to_us:
            # Neither cap can withhold it, so no query: the cap on answers
            # of any kind spares earned ones, and the cap on the same answer
            # counts only replies to our emails.
            return False
        answers = (
            select(OutboxMessage.template, OutboxMessage.case_id)
            .where(
                OutboxMessage.recipient == outgoing.to,
                OutboxMessage.created_at > now - ANSWER_WINDOW,
                OutboxMessage.answers_id.is_not(None),
            )
            .limit(ANSWERS_PER_WINDOW)
        )
        recent = session.execute(answers).all()
        if len(recent) >= ANSWERS_PER_WINDOW and not outgoing.earned:
            return True
        if not replies_to_us:
            return False
        this = (outgoing.template, outgoing.case.id if outgoing.case else None)
        return sum(1 for answer in recent if tuple(answer) == this) >= SAME_ANSWERS_PER_WINDOW

    def _replies_to_us(self, incoming: Incoming | None) -> bool:
        if incoming is None:
            return False
        ours = "@" + self._router.domain + ">"
        threaded = (incoming.parsed.in_reply_to, *incoming.parsed.references)
        return any(message_id.lower().endswith(ours) for message_id in threaded)

    def compose(self, outgoing: Outgoing, language: str) -> EmailMessage:
        case = outgoing.case
        rendered = self._renderer.mail(
            outgoing.template, language=language, case=case, **outgoing.context
        )
        subject = rendered.subject if case is None else case_subject(case, rendered.subject)
        message = new_message()
        message["From"] = self._sender
        message["To"] = address_header(outgoing.to)
        message["Subject"] = header_text(subject)
        message["Date"] = format_datetime(self._clock.now())
        message["Message-ID"] = make_msgid(domain=self._router.domain)
        message["Auto-Submitted"] = "auto-replied" if outgoing.answering else "auto-generated"
        # Asks Exchange and similar servers not to send out-of-office replies.
        message["X-Auto-Response-Suppress"] = "All"
        # Seen again on our way in (a forward, a robot quoting us back), it
        # marks the message as ours: the triage then never answers it.
        message["X-Loop"] = self._router.loop_marker
        # Which email this is, for the operator's mail provider (Gmail's
        # Postmaster Tools group by it) and for anyone sorting our mail.
        message["Feedback-ID"] = f"{outgoing.template}:mailflow"
        if outgoing.reply_to:
            message["Reply-To"] = address_header(outgoing.reply_to)
        for name, value in outgoing.headers:
            message[name] = raw_header(name, value) if name.lower() in RAW else value
        thread(message, case, outgoing.answering)
        message.set_content(rendered.text)
        message.add_alternative(rendered.html, subtype="html")
        for attachment in outgoing.attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            message.add_attachment(
                b"" if attachment.stored_as else attachment.content,
                maintype=maintype,
                subtype=subtype,
                filename=attachment.filename,
                params=charset_params(maintype, attachment.content),
            )
            if attachment.stored_as:  # a line that ``enqueue`` leaves out of the stored bytes
                *_, added = message.iter_parts()
                added.set_payload(stored_payload(attachment.stored_as))
        for part in message.walk():
            if part.is_multipart():
                # A boundary of 128 random bits cannot occur in the parts,
                # and spares the generator searching them for its own, with
                # a regular expression compiled for each (a fifth of the
                # time to write a review email, with its attachment).
                part.set_boundary(f"=_{secrets.token_hex(16)}")
        # After the parts: setting the content clears every Content-* header.
        message["Content-Language"] = language
        return message

    # -- sending ---------------------------------------------------------

    def drain(
        self,
        database: Database,
        transport: Transport,
        limit: int = 500,
        on_failed: OnFailed | None = None,
    ) -> int:
        """Send what is due now, up to ``limit`` emails, a batch at a time;
        returns how many were sent.

        A process killed mid-send delays its batch by the lease (twice
        what one delivery may take), unless its host starts again first
        (``free_the_dead``); each email is marked sent right after
        its delivery, so a kill never sends one twice but the one being
        delivered at that instant."""
        try:
            return self._drain(database, transport, limit, on_failed)
        finally:
            transport.close()

    def _drain(
        self, database: Database, transport: Transport, limit: int, on_failed: OnFailed | None
    ) -> int:
        sent = attempted = 0
        while attempted < limit:
            # The batch is leased for two deliveries' time from before it is
            # asked for; a delivery starts only while it can end within that,
            # so no lease runs out under a delivery under way (another
            # drainer would send it too).
            start_by = time.monotonic() + transport.lease.total_seconds()
            until, batch = self._lease_batch(
                database, transport.lease, min(BATCH, limit - attempted)
            )
            if not batch:
                break
            for number, leased in enumerate(batch):
                if time.monotonic() > start_by:  # a slow relay: the rest to anyone
                    self._release(database, batch[number:], until)
                    break
                try:
                    sent += self._deliver(database, transport, leased, on_failed)
                except BaseException:
                    # The rest must not wait out the lease behind this one.
                    self._release(database, batch[number + 1 :], until)
                    raise
                attempted += 1
        return sent

    def _release(self, database: Database, rows: list[Leased], until: datetime) -> None:
        """Hand back rows not yet sent, where the lease is still this
        drainer's (``until`` is the one it set)."""
        if not rows:
            return
        with database.transaction() as session:
            session.execute(
                update(OutboxMessage)
                .where(
                    OutboxMessage.id.in_([row.id for row in rows]),
                    OutboxMessage.sent_at.is_(None),
                    OutboxMessage.lease_until == until,
                )
                .values(lease_until=None, leased_by=None)
                .execution_options(synchronize_session=False)
            )

    def _deliver(
        self,
        database: Database,
        transport: Transport,
        leased: Leased,
        on_failed: OnFailed | None,
    ) -> int:
        """Send one leased email and record the outcome; 1 if it was sent.
        Delivered outside any transaction: on SQLite an open write
        transaction would hold every other writer for the whole send."""
        try:
            # A stored file that cannot be read now (the folder unmounted)
            # is tried again later, as a relay that cannot be reached is.
            raw = self._as_sent(leased, database.files.read, transport.line_end)
            reply = transport.deliver(leased.recipient, leased.envelope_sender, raw, leased.id)
        except (PermanentFailure, OSError) as failure:
            self._record_failure(database, leased, failure, on_failed)
            return 0
        # One statement, not the row read back: the common case.
        database.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id == leased.id)
            .values(sent_at=self._clock.now(), lease_until=None, leased_by=None)
        )
        log.info(
            "outbox %s to %s (%s) sent: %s",
            leased.id,
            leased.recipient,
            leased.template,
            reply,
            extra=_fields(leased, "sent", reply),
        )
        return 1

    def _record_failure(
        self,
        database: Database,
        leased: Leased,
        failure: Exception,
        on_failed: OnFailed | None,
    ) -> None:
        with database.transaction() as session:
            row = session.get(OutboxMessage, leased.id)
            assert row is not None
            row.attempts += 1
            if isinstance(failure, PermanentFailure):
                self._give_up(row, str(failure))
            else:
                self._retry_later(row, str(failure))
            if row.failed_at is not None and on_failed is not None:
                on_failed(session, row)

    def requeue(self, row: OutboxMessage) -> None:
        """Back in line for sending now, with a fresh count of attempts."""
        row.failed_at, row.lease_until, row.leased_by = None, None, None
        row.attempts, row.next_attempt_at = 0, self._clock.now()

    def free_the_dead(self, database: Database) -> int:
        """Free the emails leased by processes of this machine that are gone
        (a host killed mid-send, started again): sent now, not once their
        lease runs out. A living process's lease (another host on this
        machine, a `mailflow` command at work) stays, and so does one of
        another machine or container, whose processes it cannot see.
        Returns how many."""
        kernel = this_kernel()
        if not kernel:
            return 0
        unsent = (OutboxMessage.sent_at.is_(None), OutboxMessage.lease_until.is_not(None))
        with database.transaction() as session:
            holders = session.scalars(
                select(OutboxMessage.leased_by)
                .where(*unsent, OutboxMessage.leased_by.startswith(kernel, autoescape=True))
                .distinct()
            ).all()
            dead = [holder for holder in holders if holder is not None and gone(holder)]
            if not dead:
                return 0
            freed = session.scalars(
                update(OutboxMessage)
                .where(*unsent, OutboxMessage.leased_by.in_(dead))
                .values(lease_until=None, leased_by=None)
                .returning(OutboxMessage.id)
                .execution_options(synchronize_session=False)
            ).all()
        return len(freed)

    def _lease_batch(
        self, database: Database, lease: timedelta, size: int
    ) -> tuple[datetime, list[Leased]]:
        """Lease up to ``size`` due rows to this drainer, with their bytes,
        in one transaction (one, not three, for each email sent).

        A lease (a time in ``lease_until``), not a row lock held while
        sending: a lock would keep a transaction, and a connection, open
        for a whole SMTP conversation, and on SQLite hold every writer; a
        host killed mid-send leaves rows that any host takes again when
        the lease runs out (twice a delivery's: see ``_drain``). The lease is
        counted in the database's clock, which all hosts share. On
        PostgreSQL the candidates are read ``FOR UPDATE SKIP LOCKED``, so
        drainers on several hosts each take other rows instead of queueing
        on the same ones (SQLite, one writer, has no such clause and needs
        none)."""
        due_by = self._clock.now()
        with database.transaction() as session:
            now = server_now(session)
            free = or_(OutboxMessage.lease_until.is_(None), OutboxMessage.lease_until < now)
            candidates = session.scalars(
                select(OutboxMessage.id)
                .where(
                    OutboxMessage.sent_at.is_(None),
                    OutboxMessage.failed_at.is_(None),
                    OutboxMessage.next_attempt_at <= due_by,
                    free,
                )
                .order_by(OutboxMessage.id)
                .limit(size)
                .with_for_update(skip_locked=True)
            ).all()
            until = now + 2 * lease
            if not candidates:
                return until, []
            # Compare-and-set: of two drainers, one gets each row (what
            # keeps SQLite, and a row not locked above, to one sender).
            taken = session.scalars(
                update(OutboxMessage)
                .where(OutboxMessage.id.in_(candidates), OutboxMessage.sent_at.is_(None), free)
                .values(lease_until=until, leased_by=process_identity())
                .returning(OutboxMessage.id)
                .execution_options(synchronize_session=False)
            ).all()
            rows = session.execute(
                select(
                    OutboxMessage.id,
                    OutboxMessage.recipient,
                    OutboxMessage.envelope_sender,
                    OutboxMessage.template,
                    OutboxMessage.raw,
                    OutboxMessage.stored_places,
                )
                .where(OutboxMessage.id.in_(taken))
                .order_by(OutboxMessage.id)
            ).all()
        return until, [Leased(*row) for row in rows]

    def _retry_later(self, row: OutboxMessage, error: str) -> None:
        row.last_error = error[:2000]
        row.lease_until = row.leased_by = None
        if row.attempts >= MAX_ATTEMPTS:
            self._give_up(row, error)
            return
        delay = timedelta(seconds=min(30 * 2 ** (row.attempts - 1), 3600))
        row.next_attempt_at = self._clock.now() + delay
        log.warning(
            "outbox %s to %s (%s) deferred, retry in %s: %s",
            row.id,
            row.recipient,
            row.template,
            delay,
            error,
            extra=_fields(row, "deferred", error),
        )

    def _give_up(self, row: OutboxMessage, error: str) -> None:
        row.failed_at, row.last_error = self._clock.now(), error[:2000]
        row.lease_until = row.leased_by = None
        log.error(
            "outbox %s to %s (%s) failed for good: %s",
            row.id,
            row.recipient,
            row.template,
            error,
            extra=_fields(row, "failed", error),
        )


@dataclass(frozen=True)
class Leased:
    """An email leased for sending, as read in its lease's transaction."""

    id: int
    recipient: str
    envelope_sender: str
    template: str
    raw: bytes
    stored_places: list[list[int | str]] | None


def _fields(row: OutboxMessage | Leased, outcome: str, reply: str) -> dict[str, object]:
    """A delivery's log line, its fields apart for a log collector."""
    return {
        "outbox_id": row.id,
        "recipient": row.recipient,
        "template": row.template,
        "outcome": outcome,
        "reply": reply,
    }


def case_subject(case: Case, purpose: str) -> str:
    """The case's subject (``Case.keep_subject``); the email's purpose is
    its first line. Until the case has a title, the purpose stands in for
    it."""
    case.keep_subject()
    return case.subject or f"[{case.public_id}] {purpose}"
