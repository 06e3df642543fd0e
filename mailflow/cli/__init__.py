"""The `mailflow` command: parse arguments, load settings, call the app.

This module is the table of commands: which name runs which function,
with which arguments and help. The commands live in modules by role:
`service` (run, ingest, tick, status, requeue, db upgrade), `cases`
(cases, case, act, archive build, digest send, report), `roster`
(economies, focal-points), `imports` (import) and `mail` (outbox,
postfix, dkim); `common` holds what they share.

Every command accepts ``--config PATH`` after its name. Errors a person
can act on are printed as one line naming what is wrong and exit non-zero;
nothing here holds logic of its own.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from mailflow import logs
from mailflow.cli.cases import (
    cmd_act,
    cmd_archive_build,
    cmd_case,
    cmd_cases,
    cmd_digest_send,
    cmd_report,
)
from mailflow.cli.common import EX_CONFIG, EX_DATAERR, EX_TEMPFAIL, EX_USAGE
from mailflow.cli.imports import cmd_import
from mailflow.cli.mail import cmd_dkim, cmd_outbox, cmd_outbox_retry, cmd_postfix
from mailflow.cli.roster import cmd_economies, cmd_focal_points
from mailflow.cli.service import (
    cmd_db_upgrade,
    cmd_ingest,
    cmd_requeue,
    cmd_run,
    cmd_status,
    cmd_tick,
)
from mailflow.errors import ConfigError, MailflowError
from mailflow.vocab import Kind
from mailflow.workflow.states import State

# The exit codes are part of the command's contract (an MTA reads them).
__all__ = ["EX_CONFIG", "EX_DATAERR", "EX_TEMPFAIL", "EX_USAGE", "main"]


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logs.start(args.verbose)
    logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's chatter
    logging.getLogger("mailparser").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        return int(args.command(args))
    except ConfigError as exc:
        print(f"mailflow: config error: {exc}", file=sys.stderr)
        return EX_CONFIG
    except MailflowError as exc:
        print(f"mailflow: {exc}", file=sys.stderr)
        return 1


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mailflow",
        description=("An editorial workflow run over email: submit, review, endorse, publish."),
    )
    commands = parser.add_subparsers(title="commands", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $MAILFLOW_CONFIG, else ./config.toml)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log debug details")

    def add(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        text: str,
        into: argparse._SubParsersAction[argparse.ArgumentParser] = commands,
    ) -> argparse.ArgumentParser:
        sub = into.add_parser(name, parents=[common], help=text, description=text)
        sub.set_defaults(command=handler)
        return sub

    add("run", cmd_run, "run SMTP ingress, workers, outbox sender and archive in one process")
    ingest = add(
        "ingest",
        cmd_ingest,
        "accept one message from FILE or standard input (for an MTA pipe transport)",
    )
    ingest.add_argument("file", nargs="?", metavar="FILE", help="the message; '-' or none: stdin")
    ingest.add_argument(
        "--recipient",
        action="append",
        metavar="ADDRESS",
        help="envelope recipient (repeatable); default: from the headers",
    )
    ingest.add_argument("--sender", metavar="ADDRESS", help="envelope sender")
    cases = add("cases", cmd_cases, "list cases")
    cases.add_argument("--state", choices=[s.value for s in State], help="only this state")
    cases.add_argument("--kind", choices=[k.value for k in Kind], help="only this kind")
    case = add("case", cmd_case, "show one case with its full history")
    case.add_argument("case_id", metavar="ID", help="e.g. BP-2026-0001, CM-2026-0001, IN-2026-0001")
    case.add_argument("--json", action="store_true", help="print JSON")
    act = add("act", cmd_act, "act on a case as the administrator")
    act.add_argument("case_id", metavar="ID", help="e.g. BP-2026-0001")
    act.add_argument(
        "action",
        choices=["approve", "endorse", "accept", "changes", "reject", "unpublish", "publish"],
        help="endorse, accept (an internship) = in the focal point's place; "
        "unpublish (a case or a comment), publish = undo an unpublish",
    )
    act.add_argument("--reason", metavar="R", help="sent to the author")
    add("economies", cmd_economies, "list economies, focal points and travel eligibility")
    focal = add(
        "focal-points",
        cmd_focal_points,
        "the focal point roster: list it, add or remove one (they confirm by email)",
    )
    focal.add_argument("action", nargs="?", choices=["list", "add", "remove"], default="list")
    focal.add_argument("economy", nargs="?", metavar="CODE", help="e.g. CL, or a name: Chile")
    focal.add_argument("address", nargs="?", metavar="ADDRESS", help="e.g. ana@sercotec.cl")
    reporting = add(
        "report",
        cmd_report,
        "what was submitted, published and pending; time in each stage; focal points",
    )
    reporting.add_argument("--since", metavar="DATE", help="from this day (UTC), e.g. 2026-10-01")
    reporting.add_argument("--until", metavar="DATE", help="to this day, not included")
    reporting.add_argument(
        "--format", choices=["text", "markdown", "json", "csv"], default="text", help="default text"
    )
    reporting.add_argument(
        "--html", metavar="FILE", help="also write a page with charts (no scripts) to FILE"
    )
    tick = add(
        "tick",
        cmd_tick,
        "run the scheduled work that is due: reminders, escalations, expiries, daily summary",
    )
    tick.add_argument(
        "--now",
        metavar="ISO-TIME",
        help="act as if the clock read this time, e.g. 2026-12-01T08:00:00+00:00",
    )
    archive = commands.add_parser("archive", help="the archive site").add_subparsers(
        title="archive commands", required=True, metavar="COMMAND"
    )
    add("build", cmd_archive_build, "rewrite the whole archive site", into=archive)
    digest = commands.add_parser("digest", help="digests to subscribers").add_subparsers(
        title="digest commands", required=True, metavar="COMMAND"
    )
    send = add("send", cmd_digest_send, "send the digests due now, with progress", into=digest)
    send.add_argument(
        "--dry-run", action="store_true", help="only count who would get one; write nothing"
    )
    db = commands.add_parser("db", help="database schema").add_subparsers(
        title="db commands", required=True, metavar="COMMAND"
    )
    add("upgrade", cmd_db_upgrade, "apply schema migrations", into=db)
    requeue = add(
        "requeue",
        cmd_requeue,
        "list shunted messages, or send the named ones through processing again",
    )
    requeue.add_argument("ids", nargs="*", metavar="ID", help="shunted message ids")
    postfix_command = add(
        "postfix", cmd_postfix, "write the Postfix settings and maps that put Postfix in front"
    )
    postfix_command.add_argument(
        "--output", required=True, metavar="DIR", help="e.g. /etc/postfix/mailflow"
    )
    add("dkim", cmd_dkim, "create the DKIM key if absent and print the DNS TXT record to publish")
    status = add(
        "status",
        cmd_status,
        "this host and the others: scheduler, site writer, spool and outbox, the last tick",
    )
    status.add_argument("--json", action="store_true", help="print JSON")
    _add_outbox_commands(add)
    _add_import_command(add)
    return parser


def _add_outbox_commands(add: Callable[..., argparse.ArgumentParser]) -> None:
    outbox = add("outbox", cmd_outbox, "outgoing mail waiting, or failed for good; send again")
    outbox.add_argument(
        "--failed", action="store_true", help="the emails failed for good, with the reply"
    )
    retry = add(
        "retry",
        cmd_outbox_retry,
        "send the named emails (or all failed ones) again now",
        into=outbox.add_subparsers(title="outbox commands", metavar="COMMAND"),
    )
    retry.add_argument("ids", nargs="*", type=int, metavar="ID", help="as `mailflow outbox` lists")
    retry.add_argument("--failed", action="store_true", help="every email failed for good")


def _add_import_command(
    add: Callable[..., argparse.ArgumentParser],
) -> None:
    command = add(
        "import",
        cmd_import,
        "open cases from a CSV file of existing material, each for its author's agreement",
    )
    command.add_argument(
        "file",
        metavar="FILE.csv",
        help="columns: title, kind, economy, priority area, organization, summary, "
        "second contact, document (a path from the file's folder), author (Name <address>)",
    )
    command.add_argument(
        "--dry-run", action="store_true", help="check every row; write nothing, send nothing"
    )
