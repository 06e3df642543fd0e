"""Changing the focal point roster (SPEC section 4): who endorses each
economy's cases.

Three ways in, one set of functions: the config (``[economies.XX]
.focal_points``, brought in at start), mail to ``focal-points@`` from an
administrator or a focal point, and ``mailflow focal-points``. Every change
writes a history row saying who, when, how and what. A person added by mail
or command is only invited: they review nothing until they confirm with one
click; then the cases already waiting for their economy reach them. What
the config names counts as confirmed, so a deployment that named its focal
points there keeps working.

Functions return codes (``added``, ``already``, ...) for the caller's
template or terminal; never a sentence. Never commits.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime

from sqlalchemy.orm import Session

from mailflow.forms import strip_reply
from mailflow.notify.outbox import Outgoing
from mailflow.store import queries
from mailflow.store import roster as rostered
from mailflow.store.models import Absence, FocalPoint, RosterChange, RosterSeed, Token
from mailflow.store.roster import CONFIRMED, DEPUTY, FOCAL_POINT, INVITED, REMOVED
from mailflow.triage import Incoming
from mailflow.words import leading
from mailflow.workflow import people, reviewing
from mailflow.workflow.context import Workflow

CONFIG, MAIL, COMMAND = "config", "mail", "command"

# What ``Absence.reason`` says for an absence the focal point told us of.
TOLD_BY_MAIL = "by mail"


def add(session: Session, workflow: Workflow, code: str, email: str, *, by: str, how: str) -> str:
    """An administrator adds a focal point: they are invited to confirm
    (from the config: confirmed at once)."""
    return _place(session, workflow, code, email, FOCAL_POINT, by=by, how=how)


def remove(
    session: Session, workflow: Workflow, code: str, email: str, *, by: str, how: str
) -> str:
    """Off the roster; the economy's waiting cases go to whoever is left
    (another focal point, the deputy, else the administrators)."""
    row = rostered.entry(session, code, email, FOCAL_POINT)
    if row is None or row.state == REMOVED:
        return "not_on_roster"
    _set_state(session, workflow, row, REMOVED, by=by, how=how)
    _hand_on(session, workflow, code)
    return "removed"


def confirmed_places(session: Session, focal_point: str) -> list[str]:
    """The economies a person is a confirmed focal point of."""
    return [
        row.economy
        for row in rostered.serving(session, email=focal_point)
        if row.state == CONFIRMED
    ]


def name_deputy(session: Session, workflow: Workflow, focal_point: str, deputy: str) -> None:
    """A confirmed focal point names the deputy of each economy they serve
    (one deputy per economy: a new one replaces the last; "" removes it).
    The deputy confirms as a focal point does."""
    for code in confirmed_places(session, focal_point):
        for row in rostered.serving(session, DEPUTY, economy=code):
            if row.email != deputy.lower():
                _set_state(session, workflow, row, REMOVED, by=focal_point, how=MAIL)
        if deputy:
            _place(session, workflow, code, deputy, DEPUTY, by=focal_point, how=MAIL)
        _hand_on(session, workflow, code)  # a removed deputy's cases go on at once


def set_away(session: Session, workflow: Workflow, person: str, until: date | None) -> list[str]:
    """A focal point (or deputy) says they are away until a day (none, or
    a day gone by: they are back). While away, their economies' waiting
    cases go to whoever stands in, at once. Returns the economies' codes."""
    email, now = person.lower(), workflow.clock.now()
    rows = [
        *rostered.serving(session, email=email),
        *rostered.serving(session, DEPUTY, email=email),
    ]
    codes = sorted({row.economy for row in rows})
    back = datetime(until.year, until.month, until.day, tzinfo=UTC) if until else None
    if back is not None and back > now:
        session.merge(Absence(email=email, until=back, reason=TOLD_BY_MAIL, noted_at=now))
        note = f"away until {back:%Y-%m-%d}"
    else:
        absence = session.get(Absence, email)
        if absence is not None:
            session.delete(absence)
        note = "back"
    session.flush()
    for code in codes:
        _record(session, workflow, code, email, "away", by=email, how=MAIL, note=note)
        _hand_on(session, workflow, code)
    return codes


def confirm(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    """The one-click answer to the invitation (an ``actions+TOKEN@``
    ``roster`` token, its stage naming economy and role): the person
    reviews from now on, the cases waiting for their economy reach them,
    and the administrators are told."""
    code, _, role = token.stage.partition(":")
    if not says_yes(incoming.parsed.text):
        # "I am not the right person" must not make them the reviewer: a
        # person reads it, and the invitation still works.
        people.forward_question(session, incoming, workflow)
        return f"roster: {token.person} answered the invitation without a yes; forwarded"
    if not workflow.tokens.use(session, token):
        return f"roster: {token.person}'s invitation was used already"
    row = rostered.entry(session, code, token.person, role)
    if row is None or row.state != INVITED:
        return f"roster: {token.person} is not invited for {code} (removed meanwhile)"
    _set_state(session, workflow, row, CONFIRMED, by=token.person, how=MAIL)
    cases = _hand_on(session, workflow, code)
    workflow.send(
        session,
        Outgoing(
            "roster_set",
            token.person,
            {"confirmed": names(workflow, [code]), "role": role, "cases": cases},
            answering=incoming,
        ),
    )
    tell_admins(session, workflow, {"news": "confirmed", "person": token.person, "role": role})
    return f"roster: {token.person} confirmed as {role} of {code}; {cases} waiting case(s) sent"


def says_yes(text: str) -> bool:
    """An answer to the invitation takes the role when it is empty (the
    Confirm button's email, sent as it is, or a bare reply) or starts with
    a yes in any shipped language ("Yes, I accept the role.", "Sí", "はい")."""
    said = strip_reply(text).strip()
    return not said or bool(leading(said, "action", ("yes", "accept", "approve"))[0])


def seed(session: Session, workflow: Workflow) -> int:
    """Bring ``[economies.XX].focal_points`` into the roster: on first
    start all of them, later only what changed in the config since the
    last start (added: confirmed; gone: removed). Returns the changes."""
    changed = 0
    for economy in workflow.economies:
        wanted = sorted({a.lower() for a in economy.focal_points})
        seen = session.get(RosterSeed, economy.code)
        before = seen.addresses.split() if seen else []
        if wanted == before:
            continue
        for email in sorted(set(wanted) - set(before)):
            done = add(session, workflow, economy.code, email, by=CONFIG, how=CONFIG)
            changed += done == "added"
        for email in sorted(set(before) - set(wanted)):
            done = remove(session, workflow, economy.code, email, by=CONFIG, how=CONFIG)
            changed += done == "removed"
        session.merge(RosterSeed(economy=economy.code, addresses="\n".join(wanted)))
    return changed


def tell_admins(session: Session, workflow: Workflow, news: dict[str, str]) -> None:
    """The administrators see the updated roster and what changed."""
    for admin in workflow.admins:
        workflow.send(
            session, Outgoing("roster", admin, {**roster_values(session, workflow), **news})
        )


def roster_values(session: Session, workflow: Workflow) -> dict[str, object]:
    """The roster as emails and the daily summary show it: per economy,
    its focal points and deputy with their state and absence."""
    entries = rostered.current(session, workflow.clock.now())
    economies = [
        {"economy": economy, "people": [e for e in entries if e.economy == economy.code]}
        for economy in workflow.economies
    ]
    return {
        "roster": [e for e in economies if e["people"]],
        "without": [e["economy"] for e in economies if not e["people"]],
    }


def _place(
    session: Session, workflow: Workflow, code: str, email: str, role: str, *, by: str, how: str
) -> str:
    row = rostered.entry(session, code, email, role)
    if row is not None and row.state == INVITED and how != CONFIG:
        _invite(session, workflow, row)  # the first invitation may be lost or forgotten
        return "asked_again"
    if row is not None and row.state != REMOVED:
        return "already"
    now = workflow.clock.now()
    if row is None:
        row = FocalPoint(
            economy=code.upper(),
            email=email.lower(),
            role=role,
            state=REMOVED,
            added_by=by,
            added_at=now,
            changed_at=now,
        )
        session.add(row)
    row.added_by, row.added_at = by, now
    if how == CONFIG:
        _set_state(session, workflow, row, CONFIRMED, by=by, how=how, what="added")
        _hand_on(session, workflow, code)
        return "added"
    _set_state(session, workflow, row, INVITED, by=by, how=how, what="added")
    _invite(session, workflow, row)
    return "added"


def _invite(session: Session, workflow: Workflow, row: FocalPoint) -> None:
    """One email explaining the role, with a one-click Confirm."""
    session.flush()
    token = workflow.tokens.issue(session, "roster", row.email, stage=f"{row.economy}:{row.role}")
    workflow.send(
        session,
        Outgoing(
            "roster_invite",
            row.email,
            {
                "economy": workflow.economies.get(row.economy),
                "role": row.role,
                "confirm_address": workflow.action_address(token),
                "named_by": row.added_by,
                "reminder_days": workflow.settings.workflow.reminder_days,
            },
            reply_to=workflow.action_address(token),
        ),
    )


def _set_state(
    session: Session,
    workflow: Workflow,
    row: FocalPoint,
    state: str,
    *,
    by: str,
    how: str,
    what: str = "",
) -> None:
    row.state, row.changed_at = state, workflow.clock.now()
    session.flush()
    label = what or state
    if row.role == DEPUTY:
        label = f"deputy {label}"
    _record(session, workflow, row.economy, row.email, label, by=by, how=how)


def _record(
    session: Session,
    workflow: Workflow,
    code: str,
    email: str,
    what: str,
    *,
    by: str,
    how: str,
    note: str = "",
) -> None:
    session.add(
        RosterChange(
            at=workflow.clock.now(),
            economy=code.upper(),
            email=email.lower(),
            what=what,
            by=by,
            how=how,
            note=note,
        )
    )


def _hand_on(session: Session, workflow: Workflow, code: str) -> int:
    """The roster of ``code`` changed: each of its cases waiting for a
    focal point goes to whoever reviews it now and does not hold it yet.
    Returns how many cases went to someone new."""
    moved = 0
    for case in queries.cases_in(session, workflow.flows.focal_states()):
        if reviewing.deciding_economy(case) != code.upper():
            continue
        stage = workflow.flows.of(case).stage(case.state)
        if stage is not None and stage.focal:
            moved += bool(reviewing.catch_up(session, case, workflow, stage))
    return moved


def names(workflow: Workflow, codes: Iterable[str]) -> list[str]:
    return [workflow.economies.get(code).name for code in codes]
