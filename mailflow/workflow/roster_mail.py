"""Mail to ``focal-points@`` (SPEC sections 2 and 4).

Administrators manage the roster with one command a line (``add CL
ana@sercotec.cl``, ``remove Chile ana@sercotec.cl``, ``list``; the economy
by code or name, as forgiving as the forms) and get the updated roster
back. A focal point names a deputy (``Deputy: address``, ``Deputy: none``)
or says they are away (``Away until: 2027-01-10``; a past day or ``back``
ends it) and gets a short note of what was set. Anyone else gets a polite
note of what this address does, and a person reads their message (it goes
to the administrators as a question to ``help@`` does).

Parsing is here; what a command does is ``workflow/roster.py``'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from email.utils import parseaddr

from sqlalchemy.orm import Session

from mailflow.economies import normalise_name
from mailflow.forms import parse_form, strip_reply
from mailflow.notify.outbox import Outgoing
from mailflow.routing import Route
from mailflow.store import roster as rostered
from mailflow.triage import Incoming, failed_dmarc
from mailflow.words import every_language, in_every_language, pgettext
from mailflow.workflow import absence, people, roster
from mailflow.workflow.context import Workflow

_COMMAND = re.compile(r"^\s*(add|remove|list)\b[\s:]*(.*?)\s*$", re.IGNORECASE)

# A focal point's lines, understood in every shipped language (the words
# catalogs): "Suplente:", "Ausente hasta:", "Vắng mặt đến:".
FORM_KEYS = in_every_language(
    {
        pgettext("field", "Deputy"): "deputy",
        pgettext("field", "Away until"): "away",
        "away": "away",
    }
)

# Written instead of a day: the focal point is back, or names no deputy.
_BACK = {"-", *every_language("value", pgettext("value", "back"))}
_BACK |= every_language("value", pgettext("value", "none")) | every_language("action", "no")


def _says_back(written: str) -> bool:
    return normalise_name(written) in _BACK or written.strip() in _BACK


@dataclass(frozen=True)
class Done:
    """One command line and what became of it: a code the template says."""

    line: str
    outcome: str
    economy: str = ""
    email: str = ""
    closest: str = ""


def handle_focal_points(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    if failed_dmarc(incoming.parsed, workflow.settings.security.authserv_id):
        # A forged administrator must not add a focal point, nor a forged
        # focal point name a deputy or go away: nothing changes, no answer.
        return "focal-points: DMARC failed for the sender (not answered: it may be forged)"
    text, sender = incoming.parsed.text, incoming.sender.lower()
    lines = commands(text)
    form = parse_form(text, FORM_KEYS)
    admin = sender in {a.lower() for a in workflow.admins}
    outcomes: list[str] = []
    if lines and admin:
        outcomes.append(_manage(session, incoming, workflow, lines))
    if form and _on_roster(session, sender):
        outcomes.append(_set_own(session, incoming, workflow, form))
    if outcomes:
        return "; ".join(outcomes)
    return _not_for_you(session, incoming, workflow, refused=bool(lines) and not admin)


def commands(text: str) -> list[str]:
    """The command lines of a message (new text only, no quoted reply)."""
    return [line.strip() for line in strip_reply(text).splitlines() if _COMMAND.match(line)]


def run_command(session: Session, workflow: Workflow, line: str, *, by: str, how: str) -> Done:
    """One ``add``/``remove``/``list`` line, by mail or from the shell."""
    match = _COMMAND.match(line)
    assert match is not None
    verb, rest = match[1].lower(), match[2]
    if verb == "list":
        return Done(line, "listed")
    written, _, address = rest.rpartition(" ")
    email = parseaddr(address)[1].lower()
    if "@" not in email or not written.strip():
        return Done(line, "incomplete")
    economy = workflow.economies.match(written)
    if economy is None:
        near = workflow.economies.closest(written)
        return Done(line, "unknown_economy", written.strip(), email, near.name if near else "")
    change = roster.add if verb == "add" else roster.remove
    outcome = change(session, workflow, economy.code, email, by=by, how=how)
    return Done(line, outcome, economy.name, email)


def _manage(session: Session, incoming: Incoming, workflow: Workflow, lines: list[str]) -> str:
    done = [
        run_command(session, workflow, line, by=incoming.sender.lower(), how=roster.MAIL)
        for line in lines
    ]
    workflow.send(
        session,
        Outgoing(
            "roster",
            incoming.sender,
            {**roster.roster_values(session, workflow), "done": done, "news": "answer"},
            answering=incoming,
            reply_to=workflow.router.address(Route.FOCAL_POINTS),
            earned=True,
        ),
    )
    return "roster: " + ", ".join(f"{d.outcome} {d.email}".strip() for d in done)


def _set_own(session: Session, incoming: Incoming, workflow: Workflow, form: dict[str, str]) -> str:
    """``Deputy:`` and ``Away until:`` from a focal point, and the note of
    what was set."""
    sender, values = incoming.sender.lower(), dict[str, object]()
    if "deputy" in form:
        written = form["deputy"].strip()
        deputy = "" if _says_back(written) else parseaddr(written)[1].lower()
        codes = roster.confirmed_places(session, sender)
        if deputy and "@" not in deputy:
            values["deputy_problem"] = written
        elif not codes:
            values["deputy_unconfirmed"] = True  # confirm the role first
        else:
            roster.name_deputy(session, workflow, sender, deputy)
            values.update(deputy=deputy, deputy_for=", ".join(roster.names(workflow, codes)))
    if "away" in form:
        written = form["away"].strip()
        until = _day(written, workflow)
        if until is None and not _says_back(written):
            values["away_problem"] = written
        elif until and until > (workflow.clock.now() + absence.LONGEST_ABSENCE).date():
            values["away_too_long"] = written  # a mistyped year, most likely
        else:
            roster.set_away(session, workflow, sender, until)
            back = until is None or until <= workflow.clock.now().date()
            values.update(away_until=until.isoformat() if until and not back else "", back=back)
    workflow.send(
        session,
        Outgoing(
            "roster_set",
            sender,
            values,
            answering=incoming,
            reply_to=workflow.router.address(Route.FOCAL_POINTS),
            earned=True,
        ),
    )
    return f"roster: {sender} set " + ", ".join(sorted(values))


def _day(written: str, workflow: Workflow) -> date | None:
    """A day as people write it: 2027-01-10, 10 January 2027, 10/01/2027."""
    try:
        return date.fromisoformat(written)
    except ValueError:
        return absence.return_date(written, workflow.clock.now())


def _not_for_you(session: Session, incoming: Incoming, workflow: Workflow, *, refused: bool) -> str:
    """What this address does, for someone who may not use it (once a
    day at most); their message goes on to the administrators, who may act
    on it."""
    people.forward_to_admins(session, incoming, workflow)
    if workflow.sent_lately(session, incoming.sender, "roster_info", people.NOTICE_INTERVAL):
        return "roster: not an administrator or focal point; forwarded (told already today)"
    workflow.send(
        session,
        Outgoing("roster_info", incoming.sender, {"refused": refused}, answering=incoming),
    )
    return "roster: not an administrator or focal point; told, forwarded to the administrators"


def _on_roster(session: Session, sender: str) -> bool:
    return bool(
        rostered.serving(session, email=sender)
        or rostered.serving(session, rostered.DEPUTY, email=sender)
    )
