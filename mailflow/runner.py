"""Claim -> parse -> triage -> workflow -> commit -> ack, one message at a time.

Each spooled message is handled in one database transaction: the record of
the message, the case change and the emails it causes commit together, and
only then is the spool file deleted. A crash anywhere leaves the file in the
spool and the transaction undone, so the message is simply handled again;
the delivery key (SHA-256 of envelope recipients and raw bytes) makes a
second pass over a committed message a no-op. A message that keeps failing
is shunted, with its bytes, after ``[spool].max_tries`` tries.
"""

from __future__ import annotations

import hashlib
import logging
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from mailflow.errors import FilesUnavailable, UnparseableMessage
from mailflow.notify.outbox import Outgoing
from mailflow.parse import ParsedMessage, parse_message
from mailflow.routing import Destination, Route
from mailflow.spool import Envelope, Spool, SpoolEntry
from mailflow.store.db import Database, upsert
from mailflow.store.models import InboundMessage
from mailflow.triage import (
    Incoming,
    carries_our_loop_marker,
    destinations,
    is_out_of_office,
    must_stay_silent,
)
from mailflow.workflow import absence
from mailflow.workflow.context import Workflow
from mailflow.workflow.dispatch import HANDLERS
from mailflow.workflow.engine import cases_changed
from mailflow.workflow.participants import note_language

log = logging.getLogger(__name__)


class Result(StrEnum):
    DONE = "done"
    DUPLICATE = "duplicate"
    RETRY = "retry"  # a bug or a race: counts as a try
    STORE_DOWN = "store_down"  # the database or the files' disk: not the message's fault
    SHUNTED = "shunted"


def delivery_key(envelope: Envelope, raw: bytes) -> str:
    digest = hashlib.sha256()
    digest.update("\n".join(sorted(r.lower() for r in envelope.recipients)).encode())
    digest.update(b"\0")
    digest.update(raw)
    return digest.hexdigest()


class Runner:
    def __init__(self, spool: Spool, database: Database, workflow: Workflow) -> None:
        self.spool = spool
        self.database = database
        self.workflow = workflow

    def run_pending(self) -> list[Result]:
        """Handle everything waiting in the spool now (what `ingest` and
        each worker pass do)."""
        results = []
        for name in self.spool.pending():
            entry = self.spool.claim(name)
            if entry is not None:
                results.append(self.process(entry))
                if results[-1] is Result.STORE_DOWN:
                    break
        return results

    def process(self, entry: SpoolEntry) -> Result:
        try:
            envelope, raw = entry.read()
        except OSError as exc:  # a passing disk fault: tried again later
            log.error("spool %s: could not be read (%s); will retry", entry.stem, exc)
            self.spool.release(entry)
            return Result.RETRY
        except Exception as exc:  # a file damaged on disk: never processable
            log.error("spool %s: damaged (%s); moved to shunt/", entry.stem, exc)
            self.spool.shunt_entry(entry)
            return Result.SHUNTED
        if entry.tries > self.spool.max_tries:
            return self._shunt(entry, envelope)
        key = delivery_key(envelope, raw)
        try:
            # On disk before the transaction that names it commits
            # (store/files.py): after a crash between the two, the next try
            # finds the same file.
            raw_name = self.database.files.put(raw)
        except FilesUnavailable as exc:
            return self._wait_for_store(entry, exc.strerror)
        except OSError as exc:  # this message's file only: a try
            log.error("spool %s: its file could not be stored (%s); will retry", entry.stem, exc)
            self.spool.release(entry)
            return Result.RETRY
        try:
            # Parsed before the transaction begins: on SQLite that takes the
            # one write lock, which the other workers would wait on meanwhile.
            parsed = _parse(raw)
            with self.database.transaction() as session:
                record = self._handle(session, key, envelope, raw_name, parsed)
                processed = _processed(session, entry.stem, record)
                result = Result.DUPLICATE if record is None else Result.DONE
        except IntegrityError:
            return self._after_integrity_error(entry, key)
        except (OperationalError, InterfaceError) as exc:
            return self._wait_for_store(entry, f"database unavailable ({exc.orig})")
        except FilesUnavailable as exc:  # the document's put, or a file read
            return self._wait_for_store(entry, exc.strerror)
        except Exception:
            log.exception("spool %s: processing failed (try %d)", entry.stem, entry.tries)
            self.spool.release(entry)
            return Result.RETRY
        self.spool.ack(entry)
        log.info(
            "processed spool %s: %s, case %s",
            processed["spool"],
            processed["outcome"],
            processed["case"] or "none",
            extra=processed,
        )
        return result

    def _wait_for_store(self, entry: SpoolEntry, why: object) -> Result:
        """The database or the files' folder is down: not the message's
        fault, so no try is counted; it waits in the spool."""
        log.warning("spool %s: %s; will retry", entry.stem, why)
        self.spool.release(entry, count_try=False)
        return Result.STORE_DOWN

    def _handle(
        self,
        session: Session,
        key: str,
        envelope: Envelope,
        raw_name: str,
        parsed: ParsedMessage | UnparseableMessage,
    ) -> InboundMessage | None:
        """The record of the message handled; None for a duplicate."""
        values = {
            "delivery_key": key,
            "received_at": envelope.received_at,
            "envelope_sender": envelope.sender[:320],
            "envelope_recipients": ", ".join(envelope.recipients),
            "outcome": "processing",
            "raw_sha256": raw_name,
        }
        if isinstance(parsed, ParsedMessage):
            values |= _described(parsed)
        # One statement: a key already recorded inserts nothing and returns no row.
        record = session.scalar(
            upsert(session, InboundMessage)
            .values(values)
            .on_conflict_do_nothing(index_elements=[InboundMessage.delivery_key])
            .returning(InboundMessage)
        )
        if record is None:
            return None
        if isinstance(parsed, UnparseableMessage):
            record.outcome, record.detail = "unparseable", parsed.reason
            self._tell_admins(
                session,
                "admin_bad_message",
                {"record": record, "unreadable": parsed, "envelope": envelope},
            )
            return record
        record.outcome, record.detail = self._dispatch(session, parsed, envelope, record)
        return record

    def _dispatch(
        self, session: Session, parsed: ParsedMessage, envelope: Envelope, record: InboundMessage
    ) -> tuple[str, str]:
        router = self.workflow.router
        targets = destinations(parsed, envelope, router)
        silent = must_stay_silent(parsed, envelope, router)
        if silent is not None:
            # Machine mail is still acted on at our return path (bounces are
            # what it is for), at a one-step unsubscribe address (mail
            # clients send those on their own) and at postmaster@ and
            # abuse@ (forwarded to a person); none of them answers it.
            ours_again = carries_our_loop_marker(parsed, envelope, router)
            # Unanswered, but news: the reviewer it comes from is away.
            noted = [
                absence.out_of_office(
                    session, Incoming(parsed, envelope, record, target), self.workflow
                )
                for target in targets
                if target.route is Route.ACTIONS and target.tag
                if not ours_again and is_out_of_office(parsed, envelope, router)
            ]
            targets = [t for t in targets if _acts_on_machine_mail(t, ours_again)]
            if not targets:
                return "ignored", "; ".join([silent, *noted])[:2000]
        if not targets:
            recipients = ", ".join(envelope.recipients or parsed.recipients)
            return "unroutable", f"none of our addresses: {recipients}"[:2000]
        # Before any handler, so that the answer is already in that language.
        note_language(session, parsed, self.workflow.clock)
        # Each of our addresses it was sent to gets its due: help@ and
        # submit@ in one message means an answer and a submission.
        details = [
            HANDLERS[target.route](
                session, Incoming(parsed, envelope, record, target), self.workflow
            )
            for target in targets
        ]
        routes = ", ".join(dict.fromkeys(str(t.route) for t in targets))
        return f"handled: {routes}"[:40], "; ".join(details)

    def _shunt(self, entry: SpoolEntry, envelope: Envelope) -> Result:
        path = self.spool.shunt_entry(entry)
        log.error("spool %s: failed %d times; shunted to %s", entry.stem, entry.tries - 1, path)
        try:
            with self.database.transaction() as session:
                self._tell_admins(
                    session,
                    "admin_shunted",
                    {
                        "stem": entry.stem,
                        "path": str(path),
                        "envelope": envelope,
                        "tries": entry.tries - 1,
                    },
                )
        except DBAPIError:
            log.exception("could not tell the administrators about shunted %s", entry.stem)
        return Result.SHUNTED

    def _tell_admins(self, session: Session, template: str, context: dict[str, object]) -> None:
        for admin in self.workflow.admins:
            self.workflow.send(session, Outgoing(template, admin, context))

    def _after_integrity_error(self, entry: SpoolEntry, key: str) -> Result:
        """Two deliveries of the same bytes raced: the loser is a duplicate.
        Anything else is a bug, tried again (and shunted in the end)."""
        try:
            duplicate = self._already_recorded(key)
        except DBAPIError:
            duplicate = False
        if duplicate:
            self.spool.ack(entry)
            return Result.DUPLICATE
        log.exception("spool %s: integrity error", entry.stem)
        self.spool.release(entry)
        return Result.RETRY

    def _already_recorded(self, key: str) -> bool:
        with self.database.transaction() as session:
            found = session.scalar(
                select(InboundMessage.id).where(InboundMessage.delivery_key == key)
            )
        return found is not None


def _parse(raw: bytes) -> ParsedMessage | UnparseableMessage:
    try:
        return parse_message(raw)
    except UnparseableMessage as unparseable:
        return unparseable


def _processed(session: Session, stem: str, record: InboundMessage | None) -> dict[str, str]:
    """What the log line of a processed message says: which cases it
    changed and what became of it."""
    if record is None:
        return {"spool": stem, "outcome": str(Result.DUPLICATE), "case": ""}
    return {"spool": stem, "outcome": record.outcome, "case": ", ".join(cases_changed(session))}


def _described(parsed: ParsedMessage) -> dict[str, str]:
    return {
        "message_id": parsed.message_id[:998],
        "sender": parsed.sender[:320],
        "subject": parsed.subject[:2000],
    }


def _acts_on_machine_mail(destination: Destination, ours_again: bool) -> bool:
    if destination.route in (Route.POSTMASTER, Route.ABUSE):
        # What these mailboxes are for (RFC 5321: bounces, DSNs); forwarded,
        # never answered. Our own message come back whole is not forwarded
        # again, or two of us could pass it to and fro.
        return not ours_again
    return destination.route is Route.BOUNCES or (
        destination.route is Route.UNSUBSCRIBE and bool(destination.tag)
    )
