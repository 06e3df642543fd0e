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

The subscribers who get the same digest (the same news, in the same
language) share it: it is rendered and composed once per period, and each
subscriber's email is written from it with only their own parts changed
(``digest/shared.py``); their rows go to the outbox in one statement per
batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from mailflow.digest import recipients, subscriptions
from mailflow.digest.recipients import Recipient
from mailflow.digest.shared import SharedDigest, can_share
from mailflow.notify.outbox import Outgoing
from mailflow.store.db import Database
from mailflow.store.models import Case, Counter, DigestRun, OutboxMessage, Publication
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
    """What a digest tells: cases published and comments approved. Equal
    news (from two starts with nothing published between them) is one
    digest."""

    cases: tuple[Item, ...]
    comments: tuple[CommentItem, ...]

    def __bool__(self) -> bool:
        return bool(self.cases or self.comments)


@dataclass
class FanOut:
    sent: int = 0
    nothing_new: int = 0


@dataclass
class Period:
    """What one period's fan-out keeps from batch to batch: the news since
    each start, and each distinct digest (news and language), composed
    once. (A case taken off the site while the fan-out runs stays in that
    period's digests, as it is in the emails already written.)"""

    end: datetime
    news: dict[datetime, News] = field(default_factory=dict)
    shared: dict[tuple[News, str], SharedDigest] = field(default_factory=dict)


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
            period = Period(period_end)
            while self._batch(run_id, period, total):
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
        period = Period(period_end)
        after = 0
        with self.database.reading() as session:
            while batch := recipients.due(session, period_end, self._batch_size, after_id=after):
                for recipient in batch:
                    if self._news(session, period, recipient.start):
                        total.sent += 1
                    else:
                        total.nothing_new += 1
                after = batch[-1].id
        return total

    @property
    def _batch_size(self) -> int:
        return self.workflow.settings.digest.batch

    def _batch(self, run_id: int, period: Period, total: FanOut) -> bool:
        """One transaction: claim the next subscribers due and write their
        digests; False once none is left."""
        with self.database.transaction() as session:
            batch = recipients.due(session, period.end, self._batch_size)
            claimed = recipients.claim(session, batch, period.end)
            language_of = self.workflow.outbox.readers.of_all(
                session, (recipient.email for recipient in claimed)
            )
            now = self.workflow.clock.now()
            rows: list[dict[str, Any]] = []
            sent = 0
            for recipient in claimed:
                news = self._news(session, period, recipient.start)
                if not news:
                    total.nothing_new += 1
                    continue
                if self._can_share(recipient):
                    shared = self._shared(period, news, language_of[recipient.email])
                    rows.append(self._row(shared, recipient, now))
                else:
                    self.workflow.send(
                        session, self.digest(recipient.email, recipient.secret, news)
                    )
                sent += 1
            if rows:
                session.execute(insert(OutboxMessage), rows)
            session.execute(
                update(DigestRun).where(DigestRun.id == run_id).values(sent=DigestRun.sent + sent)
            )
        total.sent += sent
        return bool(batch)

    def _news(self, session: Session, period: Period, start: datetime) -> News:
        news = period.news.get(start)
        if news is None:
            news = period.news[start] = self.news_between(session, start, period.end)
        return news

    def _can_share(self, recipient: Recipient) -> bool:
        """A subscriber of the shapes a shared digest can be written for;
        one of our own addresses goes the outbox's way, which refuses it."""
        return can_share(recipient.email, recipient.secret) and not self.workflow.router.is_ours(
            recipient.email
        )

    def _shared(self, period: Period, news: News, language: str) -> SharedDigest:
        """The digest of everyone with this news and language, composed on
        first use."""
        shared = period.shared.get((news, language))
        if shared is None:
            outbox = self.workflow.outbox

            def compose(address: str, secret: str) -> EmailMessage:
                return outbox.compose(self.digest(address, secret, news), language)

            shared = SharedDigest.compose(compose, self.workflow.router.domain)
            period.shared[(news, language)] = shared
        return shared

    def _row(self, shared: SharedDigest, recipient: Recipient, now: datetime) -> dict[str, Any]:
        """The outbox row of one subscriber's digest, as ``Outbox.enqueue``
        would write it."""
        written = shared.write(recipient.email, recipient.secret)
        return {
            "created_at": now,
            "recipient": recipient.email,
            "envelope_sender": subscriptions.bounce_address(recipient.secret, self.workflow),
            "message_id": written.message_id,
            "subject": shared.subject,
            "template": "digest",
            "raw": written.raw,
            "next_attempt_at": now,
        }

    def news_between(self, session: Session, start: datetime, end: datetime) -> News:
        return News(
            self.published_between(session, start, end),
            self.comments_between(session, start, end),
        )

    def published_between(
        self, session: Session, start: datetime, end: datetime
    ) -> tuple[Item, ...]:
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
        return tuple(
            Item(
                id=case.public_id,
                title=case.title,
                kind=case.kind or Kind.BEST_PRACTICE.value,
                area=AREAS[publication.area - 1].name,
                economy=self.workflow.economies.get(publication.economy).name,
                url=f"{self._base}/cases/{case.public_id}/",
            )
            for publication, case in rows
        )

    def comments_between(
        self, session: Session, start: datetime, end: datetime
    ) -> tuple[CommentItem, ...]:
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
        return tuple(
            CommentItem(
                case_id=case.public_id,
                case_title=case.title,
                name=comment.author.name or "A participant",
                economy=economies.get(comment.economy).name if comment.economy else "",
                url=f"{self._base}/cases/{case.public_id}/",
            )
            for comment, case in rows
        )

    def digest(self, address: str, secret: str, news: News) -> Outgoing:
        leave = subscriptions.leave_address(secret, self.workflow)
        unsubscribe = [f"<mailto:{leave}?subject=unsubscribe>"]
        site = self.workflow.settings.site
        headers = [
            ("List-Id", f"{site.name} digest <digest.{self.workflow.router.domain}>"),
            ("Precedence", "bulk"),  # auto-responders leave it alone
        ]
        if self._one_click:
            url = f"{self._base}/unsubscribe/?s={secret}"
            unsubscribe.append(f"<{url}>")
            headers.append(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        headers.append(("List-Unsubscribe", ", ".join(unsubscribe)))
        return Outgoing(
            "digest",
            address,
            {"items": news.cases, "comments": news.comments, "leave_address": leave},
            headers=tuple(headers),
            return_path=subscriptions.bounce_address(secret, self.workflow),
        )


def hold_period_start(session: Session) -> None:
    """Wait until no publication or comment being shown is in progress
    (each takes this row first, then stamps its time), so that none can
    land behind a digest period's end unseen. On SQLite, writers already
    run one at a time."""
    session.execute(select(Counter.value).where(Counter.name == "archive").with_for_update())
