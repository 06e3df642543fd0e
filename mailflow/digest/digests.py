"""Digests (SPEC section 6): each subscriber gets one email of what was
published since their own last digest, grouped by priority area, and none
when nothing is new.

A digest period is a ``DigestRun`` ending at ``period_end``: made by the
``[digest].schedule`` job or by `mailflow digest send`. The fan-out then
goes through the subscribers in batches, one transaction each. For every
subscriber, moving ``digest_from`` to ``period_end`` (compare-and-set) and
writing their email to the outbox commit together, so a fan-out killed
midway, resumed by the next tick or run twice at once, sends nobody the
same period twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from mailflow.digest import subscriptions
from mailflow.notify.outbox import Outgoing
from mailflow.store.db import Database
from mailflow.store.models import Case, Counter, DigestRun, Publication, Subscriber
from mailflow.vocab import AREAS, Kind
from mailflow.workflow.context import Workflow
from mailflow.workflow.states import State

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Item:
    id: str
    title: str
    kind: str
    area: str
    economy: str
    url: str


@dataclass(frozen=True)
class CommentItem:
    case_id: str
    case_title: str
    name: str
    economy: str
    url: str


@dataclass(frozen=True)
class News:
    """What a digest tells: cases published and comments approved."""

    cases: list[Item]
    comments: list[CommentItem]

    def __bool__(self) -> bool:
        return bool(self.cases or self.comments)


@dataclass
class FanOut:
    sent: int = 0
    nothing_new: int = 0


class Digests:
    def __init__(self, database: Database, workflow: Workflow) -> None:
        self.database = database
        self.workflow = workflow
        settings = workflow.settings
        self._base = settings.site.base_url.rstrip("/")
        self._one_click = bool(settings.archive.http_port)

    def start(self, session: Session) -> bool:
        """A new period ending now, unless one ends at that very moment."""
        hold_period_start(session)
        period_end = self.workflow.clock.now()
        exists = session.scalar(select(DigestRun.id).where(DigestRun.period_end == period_end))
        if exists:
            return False
        session.add(DigestRun(period_end=period_end, started_at=self.workflow.clock.now()))
        session.flush()
        return True

    def start_now(self) -> None:
        try:
            with self.database.transaction() as session:
                self.start(session)
        except IntegrityError:
            pass  # started by another process at the same moment

    def fan_out(self, progress: Progress = lambda _: None) -> FanOut:
        """Finish every period not yet finished, oldest first."""
        total = FanOut()
        with self.database.transaction() as session:
            runs = session.execute(
                select(DigestRun.id, DigestRun.period_end)
                .where(DigestRun.finished_at.is_(None))
                .order_by(DigestRun.period_end)
            ).all()
        for run_id, period_end in runs:
            while self._batch(run_id, period_end, total):
                progress(f"{total.sent} digests written, {total.nothing_new} with nothing new")
            with self.database.transaction() as session:
                session.execute(
                    update(DigestRun)
                    .where(DigestRun.id == run_id, DigestRun.finished_at.is_(None))
                    .values(finished_at=self.workflow.clock.now())
                )
        return total

    def preview(self, period_end: datetime) -> FanOut:
        """What a digest ending now would send, writing nothing."""
        total = FanOut()
        after = 0
        with self.database.reading() as session:
            windows: dict[datetime, News] = {}
            while batch := self.due(session, period_end, after_id=after):
                for subscriber in batch:
                    start = subscriber.digest_from
                    assert start is not None
                    if start not in windows:
                        windows[start] = self.news_between(session, start, period_end)
                    if windows[start]:
                        total.sent += 1
                    else:
                        total.nothing_new += 1
                after = batch[-1].id
        return total

    def due(self, session: Session, period_end: datetime, after_id: int = 0) -> list[Subscriber]:
        """The next subscribers whose digest for this period is not written."""
        return list(
            session.scalars(
                select(Subscriber)
                .where(
                    Subscriber.confirmed_at.is_not(None),
                    Subscriber.left_at.is_(None),
                    Subscriber.suspended_at.is_(None),
                    Subscriber.digest_from < period_end,
                    Subscriber.id > after_id,
                )
                .order_by(Subscriber.id)
                .limit(self.workflow.settings.digest.batch)
            )
        )

    def _batch(self, run_id: int, period_end: datetime, total: FanOut) -> bool:
        with self.database.transaction() as session:
            batch = self.due(session, period_end)
            windows: dict[datetime, News] = {}
            sent = 0
            for subscriber in batch:
                start = subscriber.digest_from
                assert start is not None
                claimed = session.execute(
                    update(Subscriber)
                    .where(
                        Subscriber.id == subscriber.id,
                        Subscriber.digest_from == start,
                        # Still on the list: someone may have left meanwhile.
                        Subscriber.left_at.is_(None),
                        Subscriber.suspended_at.is_(None),
                    )
                    .values(digest_from=period_end)
                    .execution_options(synchronize_session=False)
                )
                if not getattr(claimed, "rowcount", 0):
                    continue  # another fan-out took this one
                if start not in windows:
                    windows[start] = self.news_between(session, start, period_end)
                if windows[start]:
                    self.workflow.send(session, self.digest(subscriber, windows[start]))
                    sent += 1
                else:
                    total.nothing_new += 1
            session.execute(
                update(DigestRun).where(DigestRun.id == run_id).values(sent=DigestRun.sent + sent)
            )
        total.sent += sent
        return bool(batch)

    def news_between(self, session: Session, start: datetime, end: datetime) -> News:
        return News(
            self.published_between(session, start, end),
            self.comments_between(session, start, end),
        )

    def published_between(self, session: Session, start: datetime, end: datetime) -> list[Item]:
        """Cases published in (start, end] (the emails group them by area)."""
        rows = session.execute(
            select(Publication, Case)
            .join(Case, Case.id == Publication.case_id)
            .where(
                Publication.withdrawn_at.is_(None),
                Publication.published_at > start,
                Publication.published_at <= end,
            )
            .order_by(Publication.area, Publication.seq)
        )
        return [
            Item(
                id=case.public_id,
                title=case.title,
                kind=case.kind or Kind.BEST_PRACTICE.value,
                area=AREAS[publication.area - 1].name,
                economy=self.workflow.economies.get(publication.economy).name,
                url=f"{self._base}/cases/{case.public_id}/",
            )
            for publication, case in rows
        ]

    def comments_between(
        self, session: Session, start: datetime, end: datetime
    ) -> list[CommentItem]:
        """Comments shown on a case page in (start, end], on cases still
        published, oldest first."""
        about = aliased(Case)
        rows = session.execute(
            select(Case, about)
            .join(about, about.id == Case.about_id)
            .where(
                Case.kind == Kind.COMMENT,
                Case.state == State.PUBLISHED,
                Case.state_since > start,
                Case.state_since <= end,
                about.state == State.PUBLISHED,
            )
            .order_by(Case.state_since, Case.id)
        )
        economies = self.workflow.economies
        return [
            CommentItem(
                case_id=case.public_id,
                case_title=case.title,
                name=comment.author.name or "A participant",
                economy=economies.get(comment.economy).name if comment.economy else "",
                url=f"{self._base}/cases/{case.public_id}/",
            )
            for comment, case in rows
        ]

    def digest(self, subscriber: Subscriber, news: News) -> Outgoing:
        leave = subscriptions.leave_address(subscriber, self.workflow)
        unsubscribe = [f"<mailto:{leave}?subject=unsubscribe>"]
        site = self.workflow.settings.site
        headers = [
            ("List-Id", f"{site.name} digest <digest.{self.workflow.router.domain}>"),
            ("Precedence", "bulk"),  # auto-responders leave it alone
        ]
        if self._one_click:
            url = f"{self._base}/unsubscribe/?s={subscriber.secret}"
            unsubscribe.append(f"<{url}>")
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        headers.append(("List-Unsubscribe", ", ".join(unsubscribe)))
        return Outgoing(
            "digest",
            subscriber.email,
            {"items": news.cases, "comments": news.comments, "leave_address": leave},
            headers=tuple(headers),
            return_path=subscriptions.bounce_address(subscriber, self.workflow),
        )


def hold_period_start(session: Session) -> None:
    """Wait until no publication or comment being shown is in progress
    (each takes this row first, then stamps its time), so that none can
    land behind a digest period's end unseen. On SQLite, writers already
    run one at a time."""
    session.execute(select(Counter.value).where(Counter.name == "archive").with_for_update())
