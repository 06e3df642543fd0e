"""The commands on cases and what is made of them: `cases`, `case`,
`act` (the administrator's decisions), `archive build`, `digest send`
and `report`.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from mailflow import casefile, report
from mailflow.cli.common import day_arg, open_app, settings_from
from mailflow.errors import NotFound, UsageError
from mailflow.store.queries import case_named
from mailflow.workflow import decisions, publishing


def cmd_cases(args: argparse.Namespace) -> int:
    with open_app(settings_from(args)) as app, app.database.transaction() as session:
        print(casefile.format_list(casefile.list_cases(session, args.state, args.kind)))
    return 0


def cmd_case(args: argparse.Namespace) -> int:
    with open_app(settings_from(args)) as app, app.database.transaction() as session:
        data = casefile.case_file(session, args.case_id, app.workflow.economies)
    print(
        json.dumps(data, indent=2, ensure_ascii=False) if args.json else casefile.format_case(data)
    )
    return 0


def cmd_act(args: argparse.Namespace) -> int:
    """The administrator's decisions from the shell, through the same code
    as the links in the review emails."""
    with open_app(settings_from(args)) as app:
        workflow = app.workflow
        with app.database.transaction() as session:
            case = case_named(session, args.case_id)
            if case is None:
                raise NotFound(f"no case {args.case_id.upper()}; `mailflow cases` lists them")
            shell_action = publishing.SHELL_ACTIONS.get(args.action)
            actor, reason = workflow.admins[0], args.reason or ""
            done = (
                shell_action(session, case, workflow, actor=actor, reason=reason)
                if shell_action
                else decisions.act(
                    session, case, workflow, word=args.action, actor=actor, reason=reason
                )
            )
        app.drain_outbox()
        app.update_archive_unless_written_elsewhere()
    print(done)
    return 0


def cmd_archive_build(args: argparse.Namespace) -> int:
    with open_app(settings_from(args)) as app:
        app.site.build(app.database, progress=lambda line: print(line, flush=True))
    return 0


def cmd_digest_send(args: argparse.Namespace) -> int:
    """A digest period ending now, fanned out with progress (or only counted)."""
    with open_app(settings_from(args)) as app:
        digests = app.timed.digests
        if args.dry_run:
            would = digests.preview(app.workflow.clock.now())
            print(
                f"would send {would.sent} digest(s); {would.nothing_new} subscriber(s) "
                "have nothing new. Nothing was written."
            )
            return 0
        digests.start_now()
        done = digests.fan_out(progress=lambda line: print(line, flush=True))
        print(f"{done.sent} digest(s) written; {done.nothing_new} subscriber(s) had nothing new")
        while sent := app.drain_outbox():
            print(f"sent {sent} email(s)", flush=True)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    until = day_arg(args.until, "--until") if args.until else datetime.now(UTC)
    since = day_arg(args.since, "--since") if args.since else datetime(2000, 1, 1, tzinfo=UTC)
    if since >= until:
        raise UsageError(f"--since {since:%Y-%m-%d} is not before --until {until:%Y-%m-%d}")
    with open_app(settings_from(args)) as app, app.database.reading() as session:
        built = report.build_report(
            session, app.workflow.economies, app.workflow.flows, since, until
        )
    formats = {
        "text": report.as_text,
        "markdown": lambda r: report.as_text(r, markdown=True),
        "json": report.as_json,
        "csv": report.as_csv,
    }
    sys.stdout.write(formats[args.format](built))
    if args.html:
        Path(args.html).write_text(report.as_html(built))
        print(f"charts written to {args.html}", file=sys.stderr)
    return 0
