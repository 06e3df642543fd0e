"""Reviewers who are away (SPEC section 4): nobody waits weeks on a holiday.

An out-of-office reply to a review email is never answered (the triage
keeps every auto-reply from the handlers), but it is news: its sender is
away until the date it names, else for ``[workflow].away_days``, and the
case moves on at once. While a focal point is away their economy's cases
go to its other focal points, else to the administrators (who decide in
the focal point's place, unless ``[workflow].admin_endorses = false``).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from mailflow.store.models import Absence, Case
from mailflow.triage import Incoming
from mailflow.workflow import reviewing
from mailflow.workflow.context import Workflow

# The farthest ahead a date in an out-of-office reply is believed.
LONGEST_ABSENCE = timedelta(days=366)

_MONTHS = {
    name: number
    for number, names in enumerate(
        (
            ("january", "jan", "enero", "janvier", "januar"),
            ("february", "feb", "febrero", "février", "fevrier", "februar"),
            ("march", "mar", "marzo", "mars", "märz"),
            ("april", "apr", "abril", "avril"),
            ("may", "mayo", "mai"),
            ("june", "jun", "junio", "juin", "juni"),
            ("july", "jul", "julio", "juillet", "juli"),
            ("august", "aug", "agosto", "août", "aout"),
            ("september", "sep", "sept", "septiembre", "septembre"),
            ("october", "oct", "octubre", "octobre", "oktober"),
            ("november", "nov", "noviembre", "novembre"),
            ("december", "dec", "diciembre", "décembre", "decembre", "dezember"),
        ),
        start=1,
    )
    for name in names
}
_MONTH = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DAY = r"(\d{1,2})(?:st|nd|rd|th)?\.?"
_DATES = (
    (re.compile(r"\b(\d{4})-(\d{1,2})-(\d{1,2})\b"), ("y", "m", "d")),
    # 10 January 2027, 10 de enero de 2027, 10. Januar 2027
    (
        re.compile(rf"\b{_DAY}\s+(?:de\s+)?({_MONTH})\.?,?\s+(?:de\s+)?(\d{{4}})\b", re.I),
        ("d", "M", "y"),
    ),
    # January 10, 2027
    (re.compile(rf"\b({_MONTH})\.?\s+{_DAY},?\s+(\d{{4}})\b", re.I), ("M", "d", "y")),
    # 10/01/2027 and 10.01.2027: day first, as most of the world writes it
    (re.compile(r"\b(\d{1,2})[./](\d{1,2})[./](\d{4})\b"), ("d", "m", "y")),
)


def return_date(text: str, now: datetime) -> date | None:
    """The first date in ``text`` after today and within a year: when an
    out-of-office reply says its writer is back (or away until)."""
    found: list[tuple[int, date]] = []
    for pattern, order in _DATES:
        for match in pattern.finditer(text):
            parts = dict(zip(order, match.groups(), strict=True))
            month = _MONTHS[parts["M"].lower()] if "M" in parts else int(parts["m"])
            try:
                day = date(int(parts["y"]), month, int(parts["d"]))
            except ValueError:
                continue
            if now.date() < day <= (now + LONGEST_ABSENCE).date():
                found.append((match.start(), day))
    return min(found)[1] if found else None


def out_of_office(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    """An auto-reply to one of our review emails: its sender is away, and
    the case they were asked about goes on without them at once."""
    assert incoming.destination is not None  # routed to actions+<token>@
    secret = incoming.destination.tag
    verdict = workflow.tokens.verify(session, secret, incoming.sender)
    token = verdict.token
    case = session.get(Case, token.case_id) if token and token.case_id else None
    stage = workflow.flows.of(case).stage(case.state) if case is not None else None
    if case is not None:
        # Two focal points' replies at once must not each see the other as
        # still present: one at a time per case (SQLite writes one at a time
        # anyway).
        session.execute(select(Case.id).where(Case.id == case.id).with_for_update())
    person, now = (token.person if token else ""), workflow.clock.now()
    if (
        case is None
        or stage is None
        or not stage.focal
        or verdict.refusal is not None
        or person not in reviewing.focal_points(case, workflow)
    ):
        return "ignored: an auto-reply"
    back = return_date(incoming.parsed.text, now)
    until = (
        datetime(back.year, back.month, back.day, tzinfo=UTC)
        if back
        else now + timedelta(days=workflow.settings.workflow.away_days)
    )
    session.merge(
        Absence(email=person.lower(), until=until, reason="out-of-office reply", noted_at=now)
    )
    session.flush()
    workflow.engine.record(
        session,
        case,
        "away",
        person,
        incoming.record,
        note=f"out-of-office reply: away until {until:%Y-%m-%d}",
    )
    reviewing.reroute(session, case, workflow, stage)
    return f"{case.public_id}: {person} is away until {until:%Y-%m-%d}"
