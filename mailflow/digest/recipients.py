"""Who gets a digest in a fan-out batch, asked of the database once per
batch rather than once per subscriber: the subscribers whose digest for a
period is not written yet, and the claim on them (the language each reads
is ``Readers.of_all``'s, also one question per batch).

The claim is a compare-and-set on ``digest_from``: of two fan-outs of one
period (a killed one resumed by the next tick, or two hosts at once), only
one moves a subscriber's ``digest_from``, and only that one writes their
digest, in the same transaction.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailflow.store.models import Subscriber


@dataclass(frozen=True)
class Recipient:
    """A subscriber as the fan-out needs them."""

    id: int
    email: str
    secret: str
    start: datetime  # their digest holds what was published after this


def due(session: Session, period_end: datetime, limit: int, after_id: int = 0) -> list[Recipient]:
    """The next subscribers whose digest for this period is not written."""
    rows = session.execute(
        select(Subscriber.id, Subscriber.email, Subscriber.secret, Subscriber.digest_from)
        .where(
            Subscriber.confirmed_at.is_not(None),
            Subscriber.left_at.is_(None),
            Subscriber.suspended_at.is_(None),
            Subscriber.digest_from < period_end,
            Subscriber.id > after_id,
        )
        .order_by(Subscriber.id)
        .limit(limit)
    )
    due_now = []
    for id, email, secret, start in rows:
        assert start is not None  # NULL is never < period_end
        due_now.append(Recipient(id, email, secret, start))
    return due_now


def claim(session: Session, recipients: list[Recipient], period_end: datetime) -> list[Recipient]:
    """Those of ``recipients`` whose ``digest_from`` this transaction moved to
    ``period_end``: one statement per distinct start. A reader another
    fan-out moved first, or who left meanwhile, is not among them."""
    by_start: dict[datetime, list[int]] = defaultdict(list)
    for recipient in recipients:
        by_start[recipient.start].append(recipient.id)
    claimed: set[int] = set()
    for start, ids in by_start.items():
        claimed.update(
            session.scalars(
                update(Subscriber)
                .where(
                    Subscriber.id.in_(ids),
                    Subscriber.digest_from == start,
                    # Still on the list: someone may have left meanwhile.
                    Subscriber.left_at.is_(None),
                    Subscriber.suspended_at.is_(None),
                )
                .values(digest_from=period_end)
                .returning(Subscriber.id)
                .execution_options(synchronize_session=False)
            )
        )
    return [recipient for recipient in recipients if recipient.id in claimed]
