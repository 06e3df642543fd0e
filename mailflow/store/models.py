"""The tables, as typed SQLAlchemy 2 models.

Raw messages and documents are files named by their SHA-256 (store/files.py),
written before the transaction that names them commits: the database holds
every record of what happened, the files the bytes, and a case's history
can always name the message that changed it. Derived values (what a case still lacks,
what is due) are computed, never stored.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    DateTime,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    event,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    Session,
    mapped_column,
    object_session,
    relationship,
)

from mailflow.store.files import FileStore, files_of
from mailflow.workflow.states import State


class Timestamp(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every database
    (SQLite would otherwise hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class StoredBytes:
    """A row whose bytes are a file (store/files.py). It remembers the file
    store of the session that loaded or added it, so its bytes can still be
    read once that session has closed, as the other columns can."""

    def _read_file(self, name: str) -> bytes:
        session = object_session(self)
        if session is not None:
            return files_of(session).read(name)
        store = self.__dict__.get("_files")
        if not isinstance(store, FileStore):
            raise RuntimeError(f"{type(self).__name__} was never in a session: its file is unknown")
        return store.read(name)


@event.listens_for(Session, "loaded_as_persistent")
@event.listens_for(Session, "transient_to_pending")
def _remember_file_store(session: Session, row: object) -> None:
    if isinstance(row, StoredBytes):
        row.__dict__["_files"] = session.info.get("files")


class InboundMessage(StoredBytes, Base):
    """One accepted message, exactly as received. ``delivery_key`` is a
    SHA-256 of the raw bytes and the envelope recipients: a byte-identical
    resend to the same address is the same delivery; a different message
    that reuses a Message-ID is not."""

    __tablename__ = "inbound_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    delivery_key: Mapped[str] = mapped_column(String(64), unique=True)
    received_at: Mapped[datetime] = mapped_column(Timestamp)
    envelope_sender: Mapped[str] = mapped_column(String(320), default="")
    envelope_recipients: Mapped[str] = mapped_column(Text, default="")
    message_id: Mapped[str] = mapped_column(String(998), default="")
    sender: Mapped[str] = mapped_column(String(320), default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    outcome: Mapped[str] = mapped_column(String(40))
    detail: Mapped[str] = mapped_column(Text, default="")
    raw_sha256: Mapped[str] = mapped_column(String(64), index=True)  # the sweep asks by it

    @property
    def raw(self) -> bytes:
        """The message exactly as received, read from its file."""
        return self._read_file(self.raw_sha256)


class Participant(Base):
    __tablename__ = "participants"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    economy: Mapped[str] = mapped_column(String(2), default="")
    organization: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    confirmed_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    # The shipped tag of their last Language: line (SPEC section 3a); empty:
    # they never chose, so their economy's language or the site's applies.
    language: Mapped[str] = mapped_column(String(16), default="")


class Case(Base):
    __tablename__ = "cases"

    id: Mapped[int] = mapped_column(primary_key=True)
    public_id: Mapped[str] = mapped_column(String(20), unique=True)
    kind: Mapped[str | None] = mapped_column(String(20), default=None)
    # Stored as the state's value in a VARCHAR(30), as it always was.
    state: Mapped[State] = mapped_column(
        Enum(State, native_enum=False, length=30, values_callable=lambda e: [m.value for m in e]),
        index=True,
    )
    state_since: Mapped[datetime] = mapped_column(Timestamp)
    title: Mapped[str] = mapped_column(Text, default="")
    economy: Mapped[str | None] = mapped_column(String(2), default=None)
    area: Mapped[int | None] = mapped_column(Integer, default=None)
    organization: Mapped[str] = mapped_column(String(300), default="")
    summary: Mapped[str] = mapped_column(Text, default="")
    second_contact: Mapped[str] = mapped_column(String(400), default="")
    author_id: Mapped[int] = mapped_column(ForeignKey("participants.id"))
    thread_id: Mapped[str] = mapped_column(String(998), default="")
    # "[BP-2026-0001] title", fixed by the case's first email: mail clients
    # group by subject, so every email about the case keeps it.
    subject: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    # Comments and internship applications are about a published case.
    about_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), default=None, index=True)
    preferred_dates: Mapped[str] = mapped_column(Text, default="")  # internships
    funding: Mapped[str | None] = mapped_column(String(20), default=None)  # accepted internships
    # How an endorsed case was validated (workflow/validation.py): a code, and
    # for an endorsement after the focal point's silence, the days it lasted.
    validation: Mapped[str | None] = mapped_column(String(30), default=None)
    focal_silent_days: Mapped[int | None] = mapped_column(Integer, default=None)

    author: Mapped[Participant] = relationship()
    about: Mapped[Case | None] = relationship(remote_side=[id])
    documents: Mapped[list[Document]] = relationship(order_by="Document.id")
    events: Mapped[list[CaseEvent]] = relationship(order_by="CaseEvent.id")

    @property
    def document(self) -> Document | None:
        """The newest document: a revision may bring a new one."""
        return self.documents[-1] if self.documents else None

    def keep_subject(self) -> None:
        """Every email about a case has the subject ``[ID] title``, fixed
        once the case has a title, so that mail clients that group by
        subject show one conversation."""
        if not self.subject and self.title:
            self.subject = f"[{self.public_id}] {' '.join(self.title.split())}"


class Document(StoredBytes, Base):
    __tablename__ = "documents"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("inbound_messages.id"))
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)  # also the name of its file
    created_at: Mapped[datetime] = mapped_column(Timestamp)

    @property
    def content(self) -> bytes:
        return self._read_file(self.sha256)


class CaseEvent(Base):
    """The history: every state change and every refused attempt at one,
    with who, when, through which message and why."""

    __tablename__ = "case_events"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), index=True)
    at: Mapped[datetime] = mapped_column(Timestamp)
    actor: Mapped[str] = mapped_column(String(320))
    event: Mapped[str] = mapped_column(String(40))
    from_state: Mapped[str | None] = mapped_column(String(30), default=None)
    to_state: Mapped[str | None] = mapped_column(String(30), default=None)
    message_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"), default=None)
    note: Mapped[str] = mapped_column(Text, default="")


class Token(Base):
    """An action token. Only an HMAC of the secret is stored, so a leaked
    database cannot be replayed as action links."""

    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    action: Mapped[str] = mapped_column(String(30))
    person: Mapped[str] = mapped_column(String(320))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), default=None)
    participant_id: Mapped[int | None] = mapped_column(ForeignKey("participants.id"), default=None)
    stage: Mapped[str] = mapped_column(String(30), default="")
    issued_at: Mapped[datetime] = mapped_column(Timestamp)
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    used_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)


class OutboxMessage(Base):
    """An email to one recipient, written in the same transaction as the
    change that caused it, and sent afterwards by the drainer."""

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "sent_at", "next_attempt_at"),
        Index("ix_outbox_recipient_created", "recipient", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    recipient: Mapped[str] = mapped_column(String(320))
    envelope_sender: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(998))
    subject: Mapped[str] = mapped_column(Text)
    template: Mapped[str] = mapped_column(String(60))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"), default=None)
    # The message this email answers automatically (None for notifications):
    # the outbox counts these per address to break loops with robots.
    answers_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_messages.id"), default=None)
    # Read only by the drain, which asks for it: loading a row to mark it
    # sent must not fetch a review email's 400 KB again.
    raw: Mapped[bytes] = mapped_column(LargeBinary, deferred=True)
    # Where stored files go back into ``raw`` as it is sent: [[offset,
    # SHA-256], ...] (notify/compose.py), for a review email's document,
    # which the files store keeps as long as its document row: for ever.
    stored_places: Mapped[list[list[int | str]] | None] = mapped_column(
        JSON(none_as_null=True), default=None
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp)
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    # The process holding the lease (``hosts.process_identity``): a host
    # starting again frees at once what its machine's dead processes held
    # (``Outbox.free_the_dead``).
    leased_by: Mapped[str | None] = mapped_column(String(300), default=None)
    sent_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    failed_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    last_error: Mapped[str] = mapped_column(Text, default="")


class Counter(Base):
    """Yearly case numbers: BP-2026-0001, EX-2026-0002... share one sequence
    per year, so a case whose kind is only learnt later keeps its number."""

    __tablename__ = "counters"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class Publication(Base):
    """A case's place in the archive. The ordinals are given once, when the
    case is first published, and kept: pages are fixed runs of ordinals,
    so publishing one case rewrites the one page it lands on and never
    shifts every older page (SPEC section 5). Unpublishing sets
    ``withdrawn_at`` and leaves a gap."""

    __tablename__ = "publications"
    __table_args__ = (
        Index("ix_publications_area", "area", "area_seq"),
        Index("ix_publications_economy", "economy", "economy_seq"),
    )

    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, unique=True)
    area: Mapped[int] = mapped_column(Integer)
    area_seq: Mapped[int] = mapped_column(Integer)
    economy: Mapped[str] = mapped_column(String(2))
    economy_seq: Mapped[int] = mapped_column(Integer)
    published_at: Mapped[datetime] = mapped_column(Timestamp)
    withdrawn_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)

    case: Mapped[Case] = relationship()


class SiteChange(Base):
    """A case whose archive pages must be rewritten, written in the same
    transaction as the change: the site catches up after a crash."""

    __tablename__ = "site_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    done_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None, index=True)


class TimedStep(Base):
    """Work that time alone caused (a reminder, an escalation, an expiry),
    done once: the unique key makes a second `tick` for the same moment,
    or a racing one, fail to claim it. ``episode`` is when the waiting
    began (the case's ``state_since``, the latest confirmation request), so
    a case that comes back to a stage is reminded afresh."""

    __tablename__ = "timed_steps"
    __table_args__ = (UniqueConstraint("subject", "kind", "episode", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    subject: Mapped[str] = mapped_column(String(40))  # "case:12", "participant:7"
    kind: Mapped[str] = mapped_column(String(30))
    episode: Mapped[datetime] = mapped_column(Timestamp)
    number: Mapped[int] = mapped_column(Integer, default=0)
    done_at: Mapped[datetime] = mapped_column(Timestamp)


class Schedule(Base):
    """When each cron-scheduled job (daily summary, digests) is next due.
    Advanced by compare-and-set in the transaction that does the job."""

    __tablename__ = "schedules"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    expression: Mapped[str] = mapped_column(String(100))  # a changed schedule starts afresh
    next_due_at: Mapped[datetime] = mapped_column(Timestamp)
    last_run_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)


class Subscriber(Base):
    """Someone who gets digests: confirmed by a reply (double opt-in).
    ``secret`` is their unsubscribe and bounce address tag
    (``unsubscribe+SECRET@``, ``bounces+SECRET@``) and one-click URL; it
    never changes, so old digests keep working. ``digest_from`` is where
    their next digest starts: a digest moves it in the same transaction
    that writes the email, so no period is ever sent twice."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    secret: Mapped[str] = mapped_column(String(40), unique=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp)
    confirmed_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    left_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    suspended_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    bounces: Mapped[int] = mapped_column(Integer, default=0)
    last_bounce_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    digest_from: Mapped[datetime | None] = mapped_column(Timestamp, default=None, index=True)


class DigestRun(Base):
    """One digest period, ending at ``period_end``. A fan-out cut short
    (kill -9) is finished by the next tick, with the same period end."""

    __tablename__ = "digest_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    period_end: Mapped[datetime] = mapped_column(Timestamp, unique=True)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    finished_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
    sent: Mapped[int] = mapped_column(Integer, default=0)


class Absence(Base):
    """A reviewer who is away (an out-of-office reply, for now) until a
    time: meanwhile their economy's cases go to someone present."""

    __tablename__ = "absences"

    email: Mapped[str] = mapped_column(String(320), primary_key=True)
    until: Mapped[datetime] = mapped_column(Timestamp)
    reason: Mapped[str] = mapped_column(String(200))
    noted_at: Mapped[datetime] = mapped_column(Timestamp)


class FocalPoint(Base):
    """One person on an economy's roster (SPEC section 4): a focal point,
    or the deputy a focal point named. Only a confirmed one reviews; a
    removed one stays as a row, so the history can name them."""

    __tablename__ = "focal_points"
    __table_args__ = (UniqueConstraint("economy", "email", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    economy: Mapped[str] = mapped_column(String(2), index=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    role: Mapped[str] = mapped_column(String(20), default="focal_point")  # or "deputy"
    state: Mapped[str] = mapped_column(String(20))  # invited, confirmed, removed
    added_by: Mapped[str] = mapped_column(String(320))
    added_at: Mapped[datetime] = mapped_column(Timestamp)
    changed_at: Mapped[datetime] = mapped_column(Timestamp)


class RosterChange(Base):
    """Every change of the roster: who, when, how (config, mail, command)
    and what, e.g. ``added``, ``confirmed``, ``removed``, ``deputy``,
    ``away``."""

    __tablename__ = "roster_changes"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(Timestamp, index=True)
    economy: Mapped[str] = mapped_column(String(2))
    email: Mapped[str] = mapped_column(String(320))
    what: Mapped[str] = mapped_column(String(40))
    by: Mapped[str] = mapped_column(String(320))
    how: Mapped[str] = mapped_column(String(20))
    note: Mapped[str] = mapped_column(Text, default="")


class RosterSeed(Base):
    """The ``[economies.XX].focal_points`` last brought into the roster:
    a start with a different list adds and removes the difference, and only
    that, so a change made by mail outlives the next start."""

    __tablename__ = "roster_seeds"

    economy: Mapped[str] = mapped_column(String(2), primary_key=True)
    addresses: Mapped[str] = mapped_column(Text, default="")  # one per line, sorted


class Lease(Base):
    """A role one host holds at a time (the scheduler, the site writer): its
    holder and the moment, in the database's clock, its hold ends unless
    renewed. Taken over by compare-and-set once expired (``hosts.py``)."""

    __tablename__ = "leases"

    role: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200), default="")
    since: Mapped[datetime] = mapped_column(Timestamp)  # when this holder took it
    expires_at: Mapped[datetime] = mapped_column(Timestamp)


class Host(Base):
    """A `mailflow run` seen on this database, with its last heartbeat:
    what `mailflow status` lists. A host stopped cleanly says so; a killed
    one simply stops being seen."""

    __tablename__ = "hosts"

    name: Mapped[str] = mapped_column(String(200), primary_key=True)
    started_at: Mapped[datetime] = mapped_column(Timestamp)
    seen_at: Mapped[datetime] = mapped_column(Timestamp)
    stopped_at: Mapped[datetime | None] = mapped_column(Timestamp, default=None)
