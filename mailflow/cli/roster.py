"""The commands on economies and their focal points: `economies` and
`focal-points`, the roster through the same code as mail to
``focal-points@``.
"""

from __future__ import annotations

import argparse
import getpass
import socket

from mailflow.cli.common import open_app, settings_from
from mailflow.errors import UsageError
from mailflow.store import roster as rostered
from mailflow.workflow import roster, roster_mail
from mailflow.workflow.context import Workflow

HISTORY_LINES = 20


def cmd_economies(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with open_app(settings) as app, app.database.reading() as session:
        entries = rostered.current(session, app.workflow.clock.now())
        economies = list(app.workflow.economies)
    print(f"{'CODE':<5} {'ECONOMY':<28} {'TRAVEL':<7} FOCAL POINTS")
    for economy in economies:
        people = [_roster_person(e) for e in entries if e.economy == economy.code]
        focal = "; ".join(people) or (
            "NONE: the administrator endorses in its place"
            if settings.workflow.no_focal_point == "admin" and settings.workflow.admin_endorses
            else "NONE: approved cases wait (on hold) until one is added"
        )
        travel = "yes" if economy.travel_eligible else "no"
        print(f"{economy.code:<5} {economy.name:<28} {travel:<7} {focal}")
    return 0


def _roster_person(entry: rostered.Entry) -> str:
    """One person on the roster, as the terminal shows them."""
    role = " (deputy)" if entry.role == rostered.DEPUTY else ""
    state = "" if entry.state == rostered.CONFIRMED else " waiting for confirmation"
    away = f" away until {entry.away_until:%Y-%m-%d}" if entry.away_until else ""
    return f"{entry.email}{role}{state}{away}"


def cmd_focal_points(args: argparse.Namespace) -> int:
    """The roster from the shell, through the same code as mail to
    ``focal-points@``: the change, then the roster and its latest history."""
    if args.action != "list" and not (args.economy and args.address):
        raise UsageError(f"write: mailflow focal-points {args.action} CODE ADDRESS")
    line = " ".join(filter(None, (args.action, args.economy, args.address)))
    with open_app(settings_from(args)) as app:
        workflow = app.workflow
        with app.database.transaction() as session:
            done = roster_mail.run_command(
                session, workflow, line, by=_operator(), how=roster.COMMAND
            )
            if done.outcome in ("unknown_economy", "not_on_roster", "incomplete"):
                raise UsageError(_roster_refusal(done, workflow))
            entries = rostered.current(session, workflow.clock.now())
            history = rostered.changes(session, HISTORY_LINES)
        app.drain_outbox()
    if done.outcome == "added":
        print(f"{done.email} added for {done.economy}; asked by email to confirm the role")
    elif done.outcome == "asked_again":
        print(f"{done.email} has not confirmed for {done.economy} yet; asked again by email")
    elif done.outcome != "listed":
        print(f"{done.email}: {done.outcome} ({done.economy})")
    if not entries:
        print("No focal point on the roster yet.")
    for entry in entries:
        name = workflow.economies.get(entry.economy).name
        print(f"{entry.economy:<5} {name:<28} {_roster_person(entry)}")
    print("\nLatest changes (who, how):")
    for change in history:
        note = f" ({change.note})" if change.note else ""
        print(
            f"{change.at:%Y-%m-%d %H:%M} {change.economy:<3} {change.email} {change.what}"
            f"{note}, by {change.by} ({change.how})"
        )
    return 0


def _operator() -> str:
    """Who runs the command, for the roster's history."""
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except OSError:
        return "operator"


def _roster_refusal(done: roster_mail.Done, workflow: Workflow) -> str:
    if done.outcome == "unknown_economy":
        near = f" (did you mean {done.closest}?)" if done.closest else ""
        codes = ", ".join(e.code for e in workflow.economies)
        return f"no economy {done.economy!r}{near}; write one of the codes {codes}, or its name"
    if done.outcome == "not_on_roster":
        listed = "`mailflow focal-points` lists them"
        return f"{done.email} is not a focal point of {done.economy}; {listed}"
    return "write: mailflow focal-points add|remove CODE ADDRESS, e.g. add CL ana@example.org"
