"""Reading the focal point roster (SPEC section 4).

Who reviews an economy's cases is read here, and only here: the workflow
asks ``confirmed`` (through ``reviewing.focal_points``), never the config.
Changing the roster is ``workflow/roster.py``'s business; this module only
reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.store.models import Absence, Case, FocalPoint, RosterChange, Token

FOCAL_POINT = "focal_point"
DEPUTY = "deputy"

INVITED = "invited"
CONFIRMED = "confirmed"
REMOVED = "removed"


@dataclass(frozen=True)
class Entry:
    """One person on the roster as people are shown it."""

    economy: str
    email: str
    role: str
    state: str
    away_until: datetime | None


def confirmed(session: Session, economy: str, role: str = FOCAL_POINT) -> list[str]:
    """The confirmed focal points (or deputy) of an economy: who reviews."""
    return list(
        session.scalars(
            select(FocalPoint.email)
            .where(
                FocalPoint.economy == economy.upper(),
                FocalPoint.role == role,
                FocalPoint.state == CONFIRMED,
            )
            .order_by(FocalPoint.id)
        )
    )


def entry(session: Session, economy: str, email: str, role: str) -> FocalPoint | None:
    return session.scalar(
        select(FocalPoint).where(
            FocalPoint.economy == economy.upper(),
            FocalPoint.email == email.lower(),
            FocalPoint.role == role,
        )
    )


def serving(
    session: Session, role: str = FOCAL_POINT, *, email: str = "", economy: str = ""
) -> list[FocalPoint]:
    """The roster places that are not removed, of one person or of one
    economy (or both)."""
    query = select(FocalPoint).where(FocalPoint.role == role, FocalPoint.state != REMOVED)
    if email:
        query = query.where(FocalPoint.email == email.lower())
    if economy:
        query = query.where(FocalPoint.economy == economy.upper())
    return list(session.scalars(query.order_by(FocalPoint.economy, FocalPoint.id)))


def economies_served(session: Session, emails: Iterable[str]) -> dict[str, str]:
    """The economy each of ``emails`` (lower case) serves as focal point or
    deputy (the first, if several), whether or not they have confirmed yet."""
    served: dict[str, str] = {}
    for email, economy in session.execute(
        select(FocalPoint.email, FocalPoint.economy)
        .where(FocalPoint.email.in_(set(emails)), FocalPoint.state != REMOVED)
        .order_by(FocalPoint.id)
    ):
        served.setdefault(email, economy)
    return served


def current(session: Session, now: datetime) -> list[Entry]:
    """Everyone on the roster who is not removed, by economy, with when
    the away ones are back."""
    rows = session.execute(select(Absence.email, Absence.until).where(Absence.until > now))
    away = {email: until for email, until in rows}
    people = session.scalars(
        select(FocalPoint)
        .where(FocalPoint.state != REMOVED)
        .order_by(FocalPoint.economy, FocalPoint.role.desc(), FocalPoint.id)
    )
    return [Entry(r.economy, r.email, r.role, r.state, away.get(r.email)) for r in people]


def changes(session: Session, limit: int) -> Sequence[RosterChange]:
    """The latest changes of the roster, the newest last."""
    newest = session.scalars(
        select(RosterChange).order_by(RosterChange.at.desc(), RosterChange.id.desc()).limit(limit)
    )
    return list(reversed(list(newest)))


def asked(session: Session, case: Case) -> set[str]:
    """Who holds a review email for the case's current stage: a reply
    token issued since the case entered it."""
    return set(
        session.scalars(
            select(Token.person).where(
                Token.case_id == case.id,
                Token.action == "review",
                Token.stage == str(case.state),
                Token.issued_at >= case.state_since,
            )
        )
    )
