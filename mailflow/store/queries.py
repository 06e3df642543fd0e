"""The questions the workflow and the scheduler ask the database, by name.

Read-only: every function takes the caller's session and returns rows or
values; nothing here commits or changes a row. (The archive's pages, the
report, the outbox and the digests keep their own queries next to the
tables they alone use.)
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import exists, func, inspect, select
from sqlalchemy.orm import Session

from mailflow.store.models import (
    Absence,
    Case,
    CaseEvent,
    Counter,
    Document,
    InboundMessage,
    OutboxMessage,
    Participant,
    Schedule,
    Subscriber,
    TimedStep,
    Token,
)
from mailflow.vocab import Kind
from mailflow.workflow.states import State

# -- cases and people ----------------------------------------------------------------


def stored_file_names(session: Session, names: Sequence[str]) -> set[str]:
    """Which of ``names`` (store/files.py) a message or a document refers to."""
    return set(
        session.scalars(
            select(InboundMessage.raw_sha256)
            .where(InboundMessage.raw_sha256.in_(names))
            .union(select(Document.sha256).where(Document.sha256.in_(names)))
        )
    )


def case_named(session: Session, public_id: str) -> Case | None:
    """By ID; a best practice renumbered as an experience (or back) is still
    found under its first ID, since the number part is unique."""
    wanted = public_id.strip().upper()
    case = session.scalar(select(Case).where(Case.public_id == wanted))
    if case is None and wanted[:3] in ("BP-", "EX-"):
        case = session.scalar(
            select(Case).where(Case.public_id.in_(["BP-" + wanted[3:], "EX-" + wanted[3:]]))
        )
    return case


def own_case(session: Session, public_id: str, sender: str) -> Case | None:
    """A case named by its own author; named by anyone else, none."""
    case = case_named(session, public_id)
    return case if case is not None and case.author.email == sender else None


def authors_messages(session: Session, case: Case) -> list[InboundMessage]:
    """The messages of the case's history that its author sent, newest first."""
    in_history = select(CaseEvent.message_id).where(CaseEvent.case_id == case.id)
    return list(
        session.scalars(
            select(InboundMessage)
            .where(InboundMessage.id.in_(in_history), InboundMessage.sender == case.author.email)
            .order_by(InboundMessage.id.desc())
        )
    )


def languages_and_economies(
    session: Session, emails: Iterable[str]
) -> dict[str, tuple[str | None, str | None]]:
    """(Language: line, economy) of each of ``emails`` (lower case) known
    as a participant. Those this session holds already are not asked for
    again: most emails answer the participant whose message it handles.
    (One added in this transaction is asked for: autoflush writes it.)"""
    wanted = set(emails)
    known: dict[str, tuple[str | None, str | None]] = {
        person.email: (person.language, person.economy)
        for person in _participants_held(session)
        if person.email in wanted
    }
    if wanted - known.keys():
        rows = session.execute(
            select(Participant.email, Participant.language, Participant.economy).where(
                Participant.email.in_(wanted - known.keys())
            )
        )
        known.update((email, (language, economy)) for email, language, economy in rows)
    return known


_READ_FOR_LANGUAGE = frozenset({"email", "language", "economy"})


def _participants_held(session: Session) -> Iterator[Participant]:
    """The participants the session holds, written, whose address, language
    and economy are in memory (reading an expired one would cost a query
    each). Not the new rows: a transaction writing many emails holds them
    all until it flushes, and this runs for every email."""
    deleted = session.deleted
    for person in session.identity_map.values():
        if (
            isinstance(person, Participant)
            and person not in deleted
            and not _READ_FOR_LANGUAGE & inspect(person).unloaded
        ):
            yield person


def participant(session: Session, address: str) -> Participant | None:
    return session.scalar(select(Participant).where(Participant.email == address))


def cases_of(session: Session, address: str) -> list[Case]:
    """Every case ``address`` is the author of, the newest first (what a
    status request answers with)."""
    return list(
        session.scalars(
            select(Case)
            .join(Participant, Case.author_id == Participant.id)
            .where(Participant.email == address)
            .order_by(Case.id.desc())
        )
    )


def waiting_for_confirmation(session: Session, participant_id: int) -> list[Case]:
    """The cases kept until their author confirms the address, oldest first.
    A case submitted for its author by someone else is not among them: it
    waits for their agreement to that one case (``submitter``)."""
    for_them = exists().where(
        CaseEvent.case_id == Case.id,
        CaseEvent.event == "submitted",
        CaseEvent.actor != Participant.email,
    )
    return list(
        session.scalars(
            select(Case)
            .join(Participant, Case.author_id == Participant.id)
            .where(
                Case.author_id == participant_id,
                Case.state == State.PENDING_CONFIRMATION,
                ~for_them,
            )
            .order_by(Case.id)
        )
    )


def submitter(session: Session, case: Case) -> str | None:
    """Who submitted the case for its author (an administrator), or None
    when the author submitted it themselves."""
    actor = session.scalar(
        select(CaseEvent.actor)
        .where(CaseEvent.case_id == case.id, CaseEvent.event == "submitted")
        .order_by(CaseEvent.id)
        .limit(1)
    )
    return actor if actor is not None and actor != case.author.email else None


# The history event that names the row of `mailflow import` a case came from.
IMPORTED = "imported"


def imported_case(session: Session, row_identity: str) -> Case | None:
    """The case an earlier `mailflow import` opened for this row."""
    return session.scalar(
        select(Case)
        .join(CaseEvent, CaseEvent.case_id == Case.id)
        .where(CaseEvent.event == IMPORTED, CaseEvent.note == row_identity)
        .limit(1)
    )


def incomplete_applications(session: Session, address: str) -> list[Case]:
    """The internship applications of ``address`` still waiting for missing
    pieces, the newest first."""
    return list(
        session.scalars(
            select(Case)
            .join(Participant, Case.author_id == Participant.id)
            .where(
                Participant.email == address,
                Case.kind == Kind.INTERNSHIP,
                Case.state == State.INCOMPLETE,
            )
            .order_by(Case.id.desc())
        )
    )


def cases_in(session: Session, states: Sequence[State]) -> list[Case]:
    """Every case in one of ``states``, the longest waiting first."""
    return list(
        session.scalars(
            select(Case).where(Case.state.in_(states)).order_by(Case.state_since, Case.id)
        )
    )


def case_ids_in_since(session: Session, state: State, before: datetime) -> list[int]:
    """Cases in ``state`` since ``before`` or earlier, the longest waiting first."""
    return list(
        session.scalars(
            select(Case.id)
            .where(Case.state == state, Case.state_since <= before)
            .order_by(Case.state_since)
        )
    )


# The sequence an internship takes a funded place from: one conditional
# increment per funded acceptance, so its value is the places taken.
FUNDED_PLACES = "internships:funded"


def funded_places_taken(session: Session) -> int:
    return session.scalar(select(Counter.value).where(Counter.name == FUNDED_PLACES)) or 0


def last_stay(session: Session, case_id: int, state: State) -> list[CaseEvent]:
    """The history of the case's latest stay in ``state``: the row that
    entered it and every row after it, in order (none: never there)."""
    entered = session.scalar(
        select(func.max(CaseEvent.id)).where(
            CaseEvent.case_id == case_id, CaseEvent.to_state == state
        )
    )
    if entered is None:
        return []
    return list(
        session.scalars(
            select(CaseEvent)
            .where(CaseEvent.case_id == case_id, CaseEvent.id >= entered)
            .order_by(CaseEvent.id)
        )
    )


# -- timed steps and confirmations ----------------------------------------------------


def timed_steps_done(
    session: Session, subject: str, kind: str, episode: datetime
) -> list[datetime]:
    """When each step of ``kind`` was taken for ``subject`` in this episode."""
    return list(
        session.scalars(
            select(TimedStep.done_at).where(
                TimedStep.subject == subject,
                TimedStep.kind == kind,
                TimedStep.episode == episode,
            )
        )
    )


def timed_step_taken(
    session: Session, subject: str, kind: str, episode: datetime, number: int
) -> bool:
    return (
        session.scalar(
            select(TimedStep.id).where(
                TimedStep.subject == subject,
                TimedStep.kind == kind,
                TimedStep.episode == episode,
                TimedStep.number == number,
            )
        )
        is not None
    )


def unanswered(session: Session, action: str, issued_before: datetime) -> list[int]:
    """Requests of one kind (``confirm``: an address; ``consent``: an
    author's yes to a case submitted for them) issued before the cut-off,
    unused, and not yet handled as expired (``<action>_expired``)."""
    handled = exists().where(TimedStep.kind == f"{action}_expired", TimedStep.number == Token.id)
    return list(
        session.scalars(
            select(Token.id)
            .where(
                Token.action == action,
                Token.used_at.is_(None),
                Token.issued_at <= issued_before,
                ~handled,
            )
            .order_by(Token.id)
        )
    )


def newest_confirmation(session: Session, participant_id: int) -> int | None:
    return session.scalar(
        select(Token.id)
        .where(Token.action == "confirm", Token.participant_id == participant_id)
        .order_by(Token.issued_at.desc(), Token.id.desc())
    )


# -- what the administrator hears about --------------------------------------------------


def emails_since(session: Session, address: str, template: str, since: datetime) -> int:
    """How many emails of ``template`` were written to ``address`` since then."""
    return int(
        session.scalar(
            select(func.count(OutboxMessage.id)).where(
                OutboxMessage.recipient == address,
                OutboxMessage.template == template,
                OutboxMessage.created_at > since,
            )
        )
        or 0
    )


def messages_kept_since(session: Session, outcome: str, since: datetime, limit: int) -> list[Any]:
    """(received_at, sender, subject) of the messages with ``outcome``."""
    return list(
        session.execute(
            select(InboundMessage.received_at, InboundMessage.sender, InboundMessage.subject)
            .where(InboundMessage.outcome == outcome, InboundMessage.received_at > since)
            .order_by(InboundMessage.received_at)
            .limit(limit)
        ).all()
    )


def messages_counted_since(session: Session, outcome: str, since: datetime) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                InboundMessage.outcome == outcome, InboundMessage.received_at > since
            )
        )
        or 0
    )


def suspended_since(session: Session, since: datetime, limit: int) -> list[str]:
    """Subscribers whose digests bounced until they were suspended."""
    return list(
        session.scalars(
            select(Subscriber.email)
            .where(Subscriber.suspended_at > since)
            .order_by(Subscriber.suspended_at)
            .limit(limit)
        )
    )


def away(session: Session, people: list[str], now: datetime) -> dict[str, datetime]:
    """Those of ``people`` who are away at ``now``, with when they are back."""
    if not people:
        return {}
    rows = session.execute(
        select(Absence.email, Absence.until).where(
            Absence.email.in_([p.lower() for p in people]), Absence.until > now
        )
    )
    return {email: until for email, until in rows}


def away_reasons(session: Session, people: list[str]) -> dict[str, str]:
    """Why each of ``people`` is marked away (as ``Absence.reason`` says)."""
    if not people:
        return {}
    rows = session.execute(
        select(Absence.email, Absence.reason).where(Absence.email.in_([p.lower() for p in people]))
    )
    return {email: reason for email, reason in rows}


# -- monitoring (read at each scrape, so every process reports the same) -------------

# The schedules row that holds the moment of the last tick (no cron of its own).
LAST_TICK = "last_tick"


def cases_by_state(session: Session) -> dict[str, int]:
    rows = session.execute(select(Case.state, func.count()).group_by(Case.state)).all()
    return {State(state).value: count for state, count in rows}


def outgoing_by_state(session: Session) -> dict[str, int]:
    """Outbox rows: sent, failed for good, deferred (waiting after a failed
    try) and waiting (not tried yet)."""
    waiting = OutboxMessage.sent_at.is_(None) & OutboxMessage.failed_at.is_(None)
    counts = session.execute(
        select(
            func.count(OutboxMessage.sent_at),
            func.count(OutboxMessage.failed_at),
            func.count().filter(waiting & (OutboxMessage.attempts > 0)),
            func.count().filter(waiting & (OutboxMessage.attempts == 0)),
        )
    ).one()
    return dict(zip(("sent", "failed", "deferred", "waiting"), counts, strict=True))


def oldest_waiting_outgoing(session: Session) -> datetime | None:
    return session.scalar(
        select(func.min(OutboxMessage.created_at)).where(
            OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None)
        )
    )


# -- outgoing mail (`mailflow outbox`, the daily summary) --------------------


def outbox_waiting(session: Session, limit: int) -> list[OutboxMessage]:
    """Outgoing mail not yet sent nor failed for good, next due first."""
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None))
            .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
            .limit(limit)
        )
    )


def last_tick(session: Session) -> datetime | None:
    return session.scalar(select(Schedule.last_run_at).where(Schedule.name == LAST_TICK))


def outbox_failed(session: Session, limit: int) -> list[OutboxMessage]:
    """Outgoing mail failed for good, latest first."""
    return list(
        session.scalars(
            select(OutboxMessage)
            .where(OutboxMessage.failed_at.is_not(None))
            .order_by(OutboxMessage.failed_at.desc(), OutboxMessage.id.desc())
            .limit(limit)
        )
    )


def failed_recipients_since(session: Session, since: datetime, limit: int) -> list[str]:
    """Addresses whose mail failed for good since then: a mailbox gone."""
    return list(
        session.scalars(
            select(OutboxMessage.recipient)
            .where(OutboxMessage.failed_at > since)
            .group_by(OutboxMessage.recipient)
            .order_by(func.min(OutboxMessage.failed_at))
            .limit(limit)
        )
    )
