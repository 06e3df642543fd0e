"""The only writer of ``case.state``. Every change to a written case is a
compare-and-set on the state the caller saw, so of two racing actions
exactly one wins (a case not written yet is seen by no one else), and
every change or refusal writes a history row saying who, when, through
which message and why. The engine never commits: the caller's transaction
does, together with the emails the change causes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import inspect, update
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from mailflow.clock import Clock
from mailflow.errors import ActionRefused
from mailflow.store.db import upsert
from mailflow.store.models import Case, CaseEvent, Counter, InboundMessage, Participant
from mailflow.vocab import Kind
from mailflow.workflow.flow import Flows
from mailflow.workflow.states import Event, State

# The cases whose history a session wrote for a message, kept in the
# session as the rows are added: the runner's log line names them without
# asking the database.
_CHANGED = "mailflow.cases_changed"


def cases_changed(session: Session) -> list[str]:
    """The IDs of the cases this session wrote history for, for a message."""
    changed: set[Case] = session.info.get(_CHANGED, set())
    return sorted({case.public_id for case in changed})


class Engine:
    def __init__(self, clock: Clock, flows: Flows) -> None:
        self.clock = clock
        self.flows = flows

    def open_case(
        self,
        session: Session,
        *,
        kind: Kind | None,
        author: Participant,
        state: State,
        message: InboundMessage | None,
        thread_id: str,
        submitted_by: str | None = None,
        values: Mapping[str, object] | None = None,
        written: bool = True,
    ) -> Case:
        """A new case. Its ID is for life (every email's subject carries it):
        a submission whose kind is not known yet takes the best practices'
        prefix, and keeps it if it turns out to be an experience. The history
        names who submitted it: the author, or an administrator for them.
        ``values`` are the case's other fields (its title, its form's
        values): given here, the case is written once with them.

        ``written=False`` is for a caller that moves the case on at once
        (``steps.begin``): it is returned not written yet, without an
        ``id``, and its first ``transition`` writes it with the state it
        reaches, in one INSERT instead of an INSERT and then an UPDATE. A
        case that waits instead is written by the next flush: a token or an
        email bound to it writes it first (``Tokens.issue``,
        ``Outbox.enqueue``), and a query by its ``id`` must flush before."""
        now = self.clock.now()
        prefix = (kind or Kind.BEST_PRACTICE).prefix
        # Best practices and experiences share a yearly sequence; the others
        # count apart.
        shared = kind is None or kind.is_submission
        sequence = str(now.year) if shared else f"{prefix}-{now.year}"
        case = Case(
            public_id=f"{prefix}-{now.year}-{case_number(session, sequence):04d}",
            kind=kind.value if kind else None,
            state=state,
            state_since=now,
            author=author,
            author_id=author.id,
            thread_id=thread_id,
            created_at=now,
            # None yet: known, so never read back (versions.keep and
            # record add to them).
            documents=[],
            events=[],
            **(values or {}),
        )
        case.keep_subject()
        session.add(case)
        if written:
            session.flush()
        actor = submitted_by or author.email
        self.record(session, case, "submitted", actor, message, to_state=state, at=now)
        return case

    def transition(
        self,
        session: Session,
        case: Case,
        event: Event,
        *,
        actor: str,
        message: InboundMessage | None = None,
        note: str = "",
    ) -> State:
        current = case.state
        target = self.flows.of(case).next_state(current, event)
        if target is None:
            raise ActionRefused(f"{case.public_id} is {current}; '{event}' is not possible now")
        now = self.clock.now()
        # A case opened in this transaction and not written yet is seen by
        # no other transaction: there is nothing to compare and set.
        unwritten = inspect(case).pending
        if unwritten:
            case.state, case.state_since = target, now
        else:
            self._compare_and_set(session, case, event, current, target, now)
        self.record(
            session,
            case,
            event,
            actor,
            message,
            from_state=current,
            to_state=target,
            note=note,
            at=now,  # the moment the case reached its state, to the microsecond
        )
        if unwritten:
            # Written now with the state it reached, its history in one
            # INSERT: two statements fewer than an INSERT and then an
            # UPDATE, for most submissions. Written, it has the ``id`` that
            # the tokens and emails its move causes are bound to.
            session.flush()
        return target

    def _compare_and_set(
        self,
        session: Session,
        case: Case,
        event: Event,
        current: State,
        target: State,
        now: datetime,
    ) -> None:
        changed = session.execute(
            update(Case)
            .where(Case.id == case.id, Case.state == current)
            .values(state=target, state_since=now)
            .execution_options(synchronize_session=False)
        )
        if not getattr(changed, "rowcount", 0):
            raise ActionRefused(f"{case.public_id} changed while '{event}' was being applied")
        # As read back, not as changed: the statement above wrote them, and a
        # flush would write them again.
        set_committed_value(case, "state", target)
        set_committed_value(case, "state_since", now)

    def record(
        self,
        session: Session,
        case: Case,
        event: str,
        actor: str,
        message: InboundMessage | None,
        *,
        from_state: State | None = None,
        to_state: State | None = None,
        note: str = "",
        at: datetime | None = None,
    ) -> None:
        if message is not None:
            session.info.setdefault(_CHANGED, set()).add(case)
        row = CaseEvent(
            at=at or self.clock.now(),
            actor=actor,
            event=str(event),
            from_state=from_state,
            to_state=to_state,
            message_id=message.id if message else None,
            note=note,
        )
        # Through the case's history when it is in memory (a new case's
        # always is, and has no id yet): it stays the whole history. Else
        # by id, without reading the history back.
        if "events" in inspect(case).unloaded:
            row.case_id = case.id
            session.add(row)
        else:
            case.events.append(row)


def next_number(session: Session, name: str) -> int:
    """Atomically take the next number of a yearly sequence: one upsert,
    which on PostgreSQL holds the row's lock to the commit."""
    first = upsert(session, Counter).values(name=name, value=1)
    return session.execute(
        first.on_conflict_do_update(
            index_elements=[Counter.name], set_={"value": Counter.value + 1}
        ).returning(Counter.value)
    ).scalar_one()


def case_number(session: Session, name: str) -> int:
    """The next case number of a yearly sequence. On PostgreSQL it is taken
    in a transaction of its own, committed at once: taken in the caller's,
    the counter's row stays locked until that commits, so every worker
    opening a case waited for the one before to finish its whole
    transaction (rendering both emails, storing the document), and two
    worker processes kept the two cores 79% busy, not 92%
    (docs/benchmarks.md). As with a database sequence, a number whose case
    then does not commit (a kill, an outage) is not given again: the
    numbers may skip one, and never repeat. SQLite lets one transaction
    write at a time, so there the caller's transaction takes it and the
    numbers never skip."""
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        return next_number(session, name)
    with Session(bind.engine) as apart, apart.begin():
        return next_number(apart, name)


def take_number_below(session: Session, name: str, limit: int) -> int | None:
    """Take the next number of a sequence only while it stays at most
    ``limit``, else None. One conditional UPDATE: on PostgreSQL a racing
    transaction waits on the row and re-checks the condition after the
    first commits, on SQLite writers run one at a time, so the limit holds
    under any concurrency."""
    session.execute(upsert(session, Counter).values(name=name, value=0).on_conflict_do_nothing())
    return session.execute(
        update(Counter)
        .where(Counter.name == name, Counter.value < limit)
        .values(value=Counter.value + 1)
        .returning(Counter.value)
    ).scalar_one_or_none()
