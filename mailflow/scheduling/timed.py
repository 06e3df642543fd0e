"""Work that time alone causes (SPEC sections 4 and 8): reminders to silent
focal points, escalation to the administrator, a word to authors whose case
waits long, expiry of unconfirmed submissions, and the cron-scheduled jobs
(the daily summary, digests, the monthly report).

Nothing here keeps time of its own: what is due is computed from
timestamps in the database and the clock's ``now``, so `mailflow tick
--now T` and the timer inside `mailflow run` run the same code and agree.
Each piece of work is claimed in its own transaction, together with the
emails it sends: a ``TimedStep`` row under a unique key, or a
compare-and-set on ``Schedule``. A second tick for the same moment, or a
racing one in another process, finds it claimed and does nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailflow import report
from mailflow.cron import first_fire, next_fire
from mailflow.digest.digests import Digests
from mailflow.notify.outbox import FileAttachment, Outgoing
from mailflow.scheduling import summary, waiting
from mailflow.store import queries
from mailflow.store.db import Database
from mailflow.store.models import Case, Participant, Schedule, TimedStep, Token
from mailflow.workflow import reviewing, steps
from mailflow.workflow.context import Workflow
from mailflow.workflow.states import Event, State

log = logging.getLogger(__name__)

# Files no transaction ever named (store/files.py) go at night, when little else runs.
ORPHAN_SWEEP = "40 3 * * *"

# An author whose case waits this many reminder periods hears where it stands.
AUTHOR_UPDATE_AFTER_REMINDER_PERIODS = 2


@dataclass
class TickReport:
    reminders: int = 0
    escalations: int = 0
    author_updates: int = 0
    expired: int = 0
    digests: int = 0
    jobs: list[str] = field(default_factory=list)

    @property
    def anything(self) -> bool:
        return bool(
            self.reminders
            or self.escalations
            or self.author_updates
            or self.expired
            or self.digests
            or self.jobs
        )

    def __str__(self) -> str:
        return (
            f"reminders sent: {self.reminders}, escalations: {self.escalations}, "
            f"authors told where their case stands: {self.author_updates}, "
            f"unconfirmed senders told their request expired: {self.expired}, "
            f"digests written: {self.digests}, "
            f"scheduled jobs run: {', '.join(self.jobs) or 'none'}"
        )


def _claimed(_session: Session, _since: datetime | None) -> bool:
    """A job whose work runs after its claim (``Timed.after_claim``)."""
    return True


class Timed:
    def __init__(self, database: Database, workflow: Workflow) -> None:
        self.database = database
        self.workflow = workflow
        self.settings = workflow.settings.workflow
        self.digests = Digests(database, workflow)
        # Cron-scheduled jobs: name -> (schedule, job).
        self.jobs: dict[str, tuple[str, Callable[[Session, datetime | None], bool]]] = {
            "daily_summary": (self.settings.daily_summary, self._daily_summary),
            "digest": (workflow.settings.digest.schedule, self._digest_period),
            "monthly_report": (workflow.settings.report.schedule, self._monthly_report),
            "orphan_files": (ORPHAN_SWEEP, _claimed),
        }
        # Work too long for the claim's transaction (on SQLite it would hold
        # the one write lock): done once the claim has committed. A crash in
        # between skips one night.
        self.after_claim: dict[str, Callable[[], None]] = {
            "orphan_files": self._sweep_orphan_files,
        }

    def tick(self) -> TickReport:
        """Do everything that is due at the clock's ``now``."""
        now = self.workflow.clock.now()
        report = TickReport()
        flows = self.workflow.flows
        for state in flows.focal_states():
            for case_id in self._cases_in(state, now):
                report.reminders += self._once(case_id, self._remind)
                report.escalations += self._once(case_id, self._escalate)
        for state in flows.review_states():
            for case_id in self._cases_in(state, now):
                report.author_updates += self._once(case_id, self._tell_author)
        for token_id in self._unanswered("confirm", now):
            report.expired += self._expire_confirmation(token_id)
        for token_id in self._unanswered("consent", now):
            report.expired += self._expire_consent(token_id)
        for name in self.jobs:
            try:
                ran = self._run_job(name, now)
            except Exception:  # rolled back: the next tick tries it again
                log.exception("scheduled job %s failed", name)
                continue
            if ran:
                report.jobs.append(name)
                self._after_claim(name)
        report.digests = self.digests.fan_out().sent  # also finishes one cut short
        self._record_tick(now)
        if report.anything:
            log.info("tick at %s: %s", now.isoformat(), report)
        return report

    # -- focal points ----------------------------------------------------------

    def _cases_in(self, state: State, now: datetime) -> list[int]:
        days = self.settings
        soonest = min(days.reminder_days, days.escalate_days)
        if state not in self.workflow.flows.focal_states():
            soonest = days.reminder_days * AUTHOR_UPDATE_AFTER_REMINDER_PERIODS
        with self.database.transaction() as session:
            return queries.case_ids_in_since(session, state, now - timedelta(soonest))

    def _once(self, case_id: int, step: Callable[[Session, Case, datetime], int]) -> int:
        """Run one step for one case in its own transaction; a step claimed
        meanwhile by another tick counts as nothing."""
        try:
            with self.database.transaction() as session:
                case = session.get(Case, case_id)
                return step(session, case, self.workflow.clock.now()) if case else 0
        except IntegrityError:
            return 0

    def _claim(self, session: Session, subject: str, kind: str, episode: datetime, n: int) -> bool:
        if queries.timed_step_taken(session, subject, kind, episode, n):
            return False
        session.add(
            TimedStep(
                subject=subject,
                kind=kind,
                episode=episode,
                number=n,
                done_at=self.workflow.clock.now(),
            )
        )
        session.flush()  # a racing tick now waits on, then fails at, the unique key
        return True

    def _remind(self, session: Session, case: Case, now: datetime) -> int:
        """Reminder n is due n reminder periods after the case reached the
        focal point, and never sooner than one period after the last one."""
        stage = self.workflow.flows.of(case).stage(case.state)
        if stage is None or not stage.focal:
            return 0
        reviewers = reviewing.reviewers_of(stage, case, self.workflow)
        sent = queries.timed_steps_done(
            session, waiting.subject_of(case), "reminder", case.state_since
        )
        number = len(sent) + 1
        period = timedelta(days=self.settings.reminder_days)
        due = max([case.state_since + number * period, *(s + period for s in sent)])
        if not reviewers or number > self.settings.max_reminders or now < due:
            return 0
        if not self._claim(session, waiting.subject_of(case), "reminder", case.state_since, number):
            return 0
        waited = (now - case.state_since).days
        reviewing.request_review(
            session,
            case,
            self.workflow,
            reviewers,
            stage.template,
            {
                "no_focal_point": not reviewing.has_focal_point(case, self.workflow),
                "reminder": number,
                "waited_days": waited,
            },
        )
        self.workflow.engine.record(
            session,
            case,
            "reminded",
            "mailflow",
            None,
            note=f"reminder {number} of {self.settings.max_reminders} after {waited} days",
        )
        return 1

    def _escalate(self, session: Session, case: Case, now: datetime) -> int:
        """After ``escalate_days`` the administrators can decide in the focal
        point's place; an endorsement so given is recorded as such. With
        ``[workflow].admin_endorses = false`` they are only told."""
        due = case.state_since + timedelta(days=self.settings.escalate_days)
        stage = self.workflow.flows.of(case).stage(case.state)
        if stage is None or not stage.focal or now < due:
            return 0
        reviewers = reviewing.reviewers_of(stage, case, self.workflow)
        if reviewers == self.workflow.admins:
            return 0  # (the administrators, deciding for an economy, get reminders instead)
        if not self._claim(session, waiting.subject_of(case), "escalation", case.state_since, 0):
            return 0
        economy = reviewing.economy_name(case, self.workflow)
        waited = (now - case.state_since).days
        stand_in = self.settings.admin_endorses
        if stand_in:
            reviewing.request_review(
                session,
                case,
                self.workflow,
                self.workflow.admins,
                stage.template,
                {"no_focal_point": not reviewers, "escalated": True, "waited_days": waited},
                on_behalf=True,
            )
        else:
            self._tell_admins_silent(session, case, economy, reviewers, waited)
        self.workflow.engine.record(
            session,
            case,
            "escalated",
            "mailflow",
            None,
            note=f"no decision after {waited} days; the administrators "
            + (f"can decide for {economy}" if stand_in else "were told (admin_endorses = false)"),
        )
        return 1

    def _tell_admins_silent(
        self, session: Session, case: Case, economy: str, focal_points: list[str], waited: int
    ) -> None:
        """The escalation without a link to decide: who is silent, since
        when, and whom to write to."""
        context = {
            **reviewing.case_values(case, self.workflow),
            "no_focal_point": not focal_points,
            "focal_points": focal_points,
            "waited_days": waited,
            "reminders": waiting.steps_taken(session, case, "reminder"),
            "deciding": economy,
            "deciding_code": reviewing.deciding_economy(case) or "",
        }
        for admin in self.workflow.admins:
            self.workflow.send(session, Outgoing("focal_point_silent", admin, context, case=case))

    # -- authors -----------------------------------------------------------------

    def _tell_author(self, session: Session, case: Case, now: datetime) -> int:
        if case.state not in self.workflow.flows.review_states():
            return 0
        periods = AUTHOR_UPDATE_AFTER_REMINDER_PERIODS
        if now < case.state_since + timedelta(days=self.settings.reminder_days * periods):
            return 0
        if not self._claim(session, waiting.subject_of(case), "author_update", case.state_since, 0):
            return 0
        where = waiting.describe(session, case, self.workflow)
        self.workflow.send(
            session,
            Outgoing(
                "case_status",
                case.author.email,
                {
                    **reviewing.case_values(case, self.workflow),
                    "on": where.on,
                    "on_economy": where.economy,
                    "since": case.state_since,
                    "reminders": where.reminders,
                },
                case=case,
                reply_to=self.workflow.author_reply_to(session, case),
            ),
        )
        self.workflow.engine.record(
            session, case, "author_informed", "mailflow", None, note=f"waiting on {where.on}"
        )
        return 1

    # -- confirmations -----------------------------------------------------------

    def _unanswered(self, action: str, now: datetime) -> list[int]:
        """Requests to confirm an address (``confirm``) or to agree to a case
        (``consent``) older than ``confirm_days``, not yet expired."""
        cutoff = now - timedelta(days=self.settings.confirm_days)
        with self.database.transaction() as session:
            return queries.unanswered(session, action, cutoff)

    def _expire_confirmation(self, token_id: int) -> int:
        """The sender never confirmed: their waiting submissions expire and
        they are told once. An older request superseded by a newer one
        expires silently; the newest speaks for it."""
        try:
            with self.database.transaction() as session:
                token = session.get(Token, token_id)
                # Locked and read afresh: a confirmation committing meanwhile
                # is seen, and its sender is not told it came too late.
                participant = (
                    session.get(
                        Participant,
                        token.participant_id,
                        with_for_update=True,
                        populate_existing=True,
                    )
                    if token
                    else None
                )
                if token is None or participant is None:
                    return 0
                if not self._lapse(session, token):
                    return 0
                newest = queries.newest_confirmation(session, participant.id)
                if participant.confirmed_at is not None or newest != token.id:
                    return 0
                return self._expire_waiting_for(session, participant)
        except IntegrityError:
            return 0

    def _lapse(self, session: Session, token: Token) -> bool:
        """Claim the expiry of one request (``confirm`` or ``consent``), once
        across ticks and hosts, and end its token when the email said it
        would, whatever the clock of the process that reads it next."""
        kind = f"{token.action}_expired"
        if not self._claim(session, token.action, kind, token.issued_at, token.id):
            return False
        lapsed = token.issued_at + timedelta(days=self.settings.confirm_days)
        token.expires_at = min(token.expires_at, lapsed)
        return True

    def _expire_consent(self, token_id: int) -> int:
        """The author never agreed to the case submitted for them: it
        expires, so nothing goes out under their name without their yes,
        and whoever submitted it is told (the author asked for nothing)."""
        try:
            with self.database.transaction() as session:
                token = session.get(Token, token_id)
                case = (
                    session.get(Case, token.case_id, with_for_update=True, populate_existing=True)
                    if token is not None and token.case_id is not None
                    else None
                )
                if token is None or case is None:
                    return 0
                if not self._lapse(session, token):
                    return 0
                submitted_by = queries.submitter(session, case)
                if case.state != State.PENDING_CONFIRMATION or submitted_by is None:
                    return 0
                steps.move(
                    session,
                    case,
                    self.workflow,
                    Event.EXPIRED,
                    actor="mailflow",
                    note=f"the author did not agree within {self.settings.confirm_days} days",
                )
                self.workflow.send(
                    session,
                    Outgoing(
                        "consent_expired",
                        submitted_by,
                        {
                            **reviewing.case_values(case, self.workflow),
                            "confirm_days": self.settings.confirm_days,
                        },
                        case=case,
                    ),
                )
                return 1
        except IntegrityError:
            return 0

    def _expire_waiting_for(self, session: Session, participant: Participant) -> int:
        expired = []
        for case in queries.waiting_for_confirmation(session, participant.id):
            steps.move(
                session,
                case,
                self.workflow,
                Event.EXPIRED,
                actor="mailflow",
                note=f"not confirmed within {self.settings.confirm_days} days",
            )
            expired.append(case)
        self.workflow.send(
            session,
            Outgoing(
                "confirmation_expired",
                participant.email,
                {
                    "items": [
                        {"case": case, "flow": self.workflow.flows.of(case).name}
                        for case in expired
                    ],
                    "confirm_days": self.settings.confirm_days,
                },
                case=expired[0] if len(expired) == 1 else None,
            ),
        )
        return 1

    # -- scheduled jobs ------------------------------------------------------------

    def _record_tick(self, now: datetime) -> None:
        """For `mailflow status` and /metrics: a schedules row of its own,
        so every process and host reads the same last tick."""
        try:
            with self.database.transaction() as session:
                row = session.get(Schedule, queries.LAST_TICK) or Schedule(
                    name=queries.LAST_TICK, expression=""
                )
                row.next_due_at = row.last_run_at = now
                session.merge(row)
        except IntegrityError:  # another host recorded its tick at the same instant
            pass

    def _run_job(self, name: str, now: datetime) -> bool:
        """Run the job if its schedule fell due, claimed by compare-and-set."""
        try:
            return self._claim_job(name, now)
        except IntegrityError:  # another process saw the schedule first
            return False

    def _claim_job(self, name: str, now: datetime) -> bool:
        expression, job = self.jobs[name]
        with self.database.transaction() as session:
            row = session.get(Schedule, name)
            if row is None or row.expression != expression:
                # First seen, or its schedule was changed: due at its next fire.
                row = row or Schedule(name=name)
                row.expression, row.next_due_at = expression, first_fire(expression, now)
                session.merge(row)
                session.flush()
            if row.next_due_at > now:
                return False
            claimed = session.execute(
                update(Schedule)
                .where(Schedule.name == name, Schedule.next_due_at == row.next_due_at)
                .values(next_due_at=next_fire(expression, now), last_run_at=now)
                .execution_options(synchronize_session=False)
            )
            if not getattr(claimed, "rowcount", 0):
                return False
            return job(session, row.last_run_at)

    def _digest_period(self, session: Session, _since: datetime | None) -> bool:
        return self.digests.start(session)

    def _monthly_report(self, session: Session, _since: datetime | None) -> bool:
        """The whole previous calendar month, for every administrator and
        every overseer of ``[report].recipients``: the text, with the CSV
        and the HTML report (charts) attached."""
        now = self.workflow.clock.now()
        until = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        since = (until - timedelta(days=1)).replace(day=1)
        figures = report.build_report(
            session, self.workflow.economies, self.workflow.flows, since, until
        )
        name = f"mailflow-report-{since:%Y-%m}"
        attachments = (
            FileAttachment(f"{name}.csv", "text/csv", report.as_csv(figures).encode()),
            FileAttachment(f"{name}.html", "text/html", report.as_html(figures).encode()),
        )
        readers = [*self.workflow.admins, *self.workflow.settings.report.recipients]
        for reader in dict.fromkeys(readers):
            self.workflow.send(
                session,
                Outgoing(
                    "monthly_report",
                    reader,
                    {"month": since, "report": report.as_text(figures)},
                    attachments=attachments,
                ),
            )
        return True

    def _after_claim(self, name: str) -> None:
        """A failure here (the files' disk) costs that night's work, never
        the rest of the tick: the digests and the record of the tick."""
        work = self.after_claim.get(name)
        if work is None:
            return
        try:
            work()
        except Exception:
            log.exception("scheduled job %s failed after its claim; it runs again next time", name)

    def _sweep_orphan_files(self) -> None:
        """By the machine's own clock, never ``tick --now``'s: a day is real
        time for a transaction still under way."""

        def named(names: list[str]) -> set[str]:
            with self.database.reading() as session:
                return queries.stored_file_names(session, names)

        removed = self.database.files.sweep(named, datetime.now(UTC))
        if removed:
            log.info("removed %d stored file(s) that nothing refers to", removed)

    def _daily_summary(self, session: Session, since: datetime | None) -> bool:
        return summary.send_daily_summary(session, self.workflow, since)
