"""The `mailflow` command: parse arguments, load settings, call the app.

Every command accepts ``--config PATH`` after its name. Errors a person
can act on are printed as one line naming what is wrong and exit non-zero;
nothing here holds logic of its own.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import resource
import signal
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from mailflow import casefile, hosts, importing, logs, postfix, report
from mailflow.app import App, Service, build, sender_domain
from mailflow.clock import FixedClock, SystemClock
from mailflow.config import Settings, config_path, load_settings
from mailflow.documents import ACCEPTED
from mailflow.errors import ConfigError, MailflowError, NotFound, UsageError
from mailflow.monitor import status as status_report
from mailflow.notify import dkim
from mailflow.spool import Envelope, Spool
from mailflow.store import queries
from mailflow.store import roster as rostered
from mailflow.store.db import Database
from mailflow.store.models import OutboxMessage
from mailflow.store.queries import case_named
from mailflow.vocab import Kind, area_by_number
from mailflow.workflow import decisions, publishing, roster, roster_mail
from mailflow.workflow.context import Workflow
from mailflow.workflow.fields import Problem
from mailflow.workflow.states import State

# sysexits.h: what an MTA's pipe transport understands.
EX_DATAERR, EX_TEMPFAIL, EX_CONFIG = 65, 75, 78


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


def _settings(args: argparse.Namespace) -> Settings:
    settings = load_settings(config_path(args.config))
    logs.use_format(settings.log.format)
    return settings


@contextmanager
def _app(settings: Settings) -> Iterator[App]:
    app = build(settings)
    try:
        yield app
    finally:
        app.database.dispose()


def _raise_open_file_limit() -> None:
    """Every SMTP client holds an open file. Under the usual soft limit of
    1,024, a thousand idle clients would also keep the workers from opening
    spool files; the hard limit is what the operator allows (systemd's
    LimitNOFILE, see deploy/)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            logging.getLogger(__name__).warning("open files stay limited to %d: %s", soft, exc)


def cmd_run(args: argparse.Namespace) -> int:
    app = build(_settings(args))
    _raise_open_file_limit()
    service = Service(app)
    service.start()

    def stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("stopping (%s)", signal.Signals(signum).name)
        service.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    settings = app.settings
    print(
        f"mailflow is running: {'LMTP' if settings.smtp.lmtp else 'SMTP'} on "
        f"{settings.smtp.host}:{settings.smtp.port}, outgoing mail "
        + (
            f"in {settings.outbound.maildir}/new"
            if settings.outbound.transport == "maildir"
            else f"via {settings.outbound.host}:{settings.outbound.port}"
        )
        + (
            f", archive on http://{settings.archive.http_host}:{settings.archive.http_port}/"
            if settings.archive.http_port
            else f", archive written to {settings.archive.output_dir}"
        )
        + (
            f", reading {settings.imap.folder} of {settings.imap.username} "
            f"at {settings.imap.host}:{settings.imap.port}"
            if settings.imap
            else ""
        )
        + ". Press Ctrl-C to stop.",
        flush=True,
    )
    service.wait()
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    settings = _settings(args)
    raw = Path(args.file).read_bytes() if args.file not in (None, "-") else sys.stdin.buffer.read()
    if len(raw) > settings.limits.max_message_bytes:
        print(
            f"mailflow: message refused: {len(raw)} bytes is more than "
            f"[limits].max_message_bytes = {settings.limits.max_message_bytes}",
            file=sys.stderr,
        )
        return EX_DATAERR
    envelope = Envelope(
        sender="<>" if args.sender == "" else (args.sender or ""),
        recipients=tuple(args.recipient or ()),
        received_at=datetime.now(UTC),
        source="ingest",
    )
    try:
        stem = Spool(settings.spool.dir, settings.spool.max_tries).put(envelope, raw)
    except OSError as exc:
        print(f"mailflow: could not store the message, try again: {exc}", file=sys.stderr)
        return EX_TEMPFAIL
    print(f"accepted: {stem}")
    try:
        with _app(settings) as app:
            entry = app.spool.claim_by_id(stem)
            if entry is not None:
                print(f"processed: {app.runner.process(entry)}")
                # The archive is left to `mailflow run` or `tick`: an MTA's
                # delivery must not wait on a site build.
                app.drain_outbox()
    except Exception as exc:  # accepted all the same: exit 0 is the promise
        # `mailflow run` will process it from the spool.
        print(f"mailflow: kept in the spool for later: {exc}", file=sys.stderr)
    return 0


def cmd_cases(args: argparse.Namespace) -> int:
    with _app(_settings(args)) as app, app.database.transaction() as session:
        print(casefile.format_list(casefile.list_cases(session, args.state, args.kind)))
    return 0


def cmd_case(args: argparse.Namespace) -> int:
    with _app(_settings(args)) as app, app.database.transaction() as session:
        data = casefile.case_file(session, args.case_id, app.workflow.economies)
    print(
        json.dumps(data, indent=2, ensure_ascii=False) if args.json else casefile.format_case(data)
    )
    return 0


def cmd_act(args: argparse.Namespace) -> int:
    """The administrator's decisions from the shell, through the same code
    as the links in the review emails."""
    with _app(_settings(args)) as app:
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
    with _app(_settings(args)) as app:
        app.site.build(app.database, progress=lambda line: print(line, flush=True))
    return 0


def cmd_tick(args: argparse.Namespace) -> int:
    """Scheduled work that is due, as if the clock read ``--now``."""
    settings = _settings(args)
    clock = FixedClock(_moment(args.now)) if args.now else SystemClock()
    app = build(settings, clock)
    try:
        report = app.timed.tick()
        print(f"tick at {clock.now().isoformat()}: {report}")
        app.drain_outbox()
        app.update_archive_unless_written_elsewhere()
    finally:
        app.database.dispose()
    return 0


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--now {text!r} is not an ISO 8601 time; write e.g. 2026-12-01T08:00:00+00:00"
        ) from None
    if moment.tzinfo is None:
        raise UsageError(f"--now {text!r} needs an offset, e.g. {text}+00:00")
    return moment


def cmd_digest_send(args: argparse.Namespace) -> int:
    """A digest period ending now, fanned out with progress (or only counted)."""
    with _app(_settings(args)) as app:
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
    until = _day_arg(args.until, "--until") if args.until else datetime.now(UTC)
    since = _day_arg(args.since, "--since") if args.since else datetime(2000, 1, 1, tzinfo=UTC)
    if since >= until:
        raise UsageError(f"--since {since:%Y-%m-%d} is not before --until {until:%Y-%m-%d}")
    with _app(_settings(args)) as app, app.database.reading() as session:
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


def _day_arg(text: str, option: str) -> datetime:
    """A date (YYYY-MM-DD, midnight UTC) or a full ISO 8601 time with offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date; write e.g. 2026-10-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def cmd_economies(args: argparse.Namespace) -> int:
    settings = _settings(args)
    with _app(settings) as app, app.database.reading() as session:
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
    with _app(_settings(args)) as app:
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


HISTORY_LINES = 20


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


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = _settings(args)
    database = Database(settings.database.url)
    try:
        before, after = database.upgrade()
    finally:
        database.dispose()
    print(
        f"database schema: {before or 'empty'} -> {after}"
        if before != after
        else f"database schema is up to date ({after})"
    )
    return 0


def cmd_requeue(args: argparse.Namespace) -> int:
    settings = _settings(args)
    spool = Spool(settings.spool.dir, settings.spool.max_tries)
    if not args.ids:
        shunted = spool.shunted()
        print("\n".join(shunted) if shunted else "No shunted messages.")
        return 0
    for stem in args.ids:
        try:
            spool.requeue(stem)
        except FileNotFoundError:
            print(
                f"mailflow: no shunted message {stem}; `mailflow requeue` lists them",
                file=sys.stderr,
            )
            return 1
        print(f"requeued {stem}; `mailflow run` will process it")
    return 0


def cmd_postfix(args: argparse.Namespace) -> int:
    """Postfix in front (SPEC section 8): its settings and maps for this config."""
    for path in postfix.write_postfix_files(_settings(args), Path(args.output)):
        print(f"wrote {path}")
    print(f"next: the steps in {Path(args.output).resolve() / 'README'}")
    return 0


def cmd_dkim(args: argparse.Namespace) -> int:
    """Creates the key once (a second run keeps it: DNS already names it)
    and prints the record to publish."""
    settings = _settings(args)
    outbound = settings.outbound
    if not outbound.dkim_selector:
        raise ConfigError(
            f'{settings.source}: [outbound] dkim_selector is empty; set it (e.g. "mail")'
            f" to sign with the key {outbound.dkim_key_file}"
        )
    created = dkim.create_key(outbound.dkim_key_file)
    print(
        f"{'created' if created else 'kept'} {outbound.dkim_key_file};"
        " publish this DNS record, then restart `mailflow run`:",
        file=sys.stderr,
    )
    domain = sender_domain(settings).encode("idna").decode("ascii")
    key = dkim.load_key(outbound.dkim_key_file)
    print(dkim.dns_record(outbound.dkim_selector, domain, key))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """This host's spool, the outbox, the last tick, who holds the
    scheduler and the site writer, and every host seen on the database."""
    settings = _settings(args)
    with _app(settings) as app:
        now = datetime.now(UTC)
        readings = app.readings()
        with app.database.reading() as session:
            seen = hosts.read(session)
    lease = timedelta(seconds=settings.hosts.lease_seconds)
    if args.json:
        record = status_report.record(readings, seen, now, lease, settings.hosts.name)
        print(json.dumps(record, indent=2))
        return 0
    print("\n".join(status_report.text(readings, seen, now, lease)))
    return 0


# -- outgoing mail ------------------------------------------------------------

EX_USAGE = 2  # as argparse exits on a usage error
MAX_LISTED_OUTBOX = 500


def cmd_outbox(args: argparse.Namespace) -> int:
    """Outgoing mail waiting, or failed for good, with the server's reply."""
    with _app(_settings(args)) as app, app.database.reading() as session:
        rows = (
            queries.outbox_failed(session, MAX_LISTED_OUTBOX)
            if args.failed
            else queries.outbox_waiting(session, MAX_LISTED_OUTBOX)
        )
        lines = [_outbox_line(row) for row in rows]
    if not lines:
        print("No outgoing email failed for good." if args.failed else "No outgoing email waits.")
        return 0
    print("\n".join(lines))
    if args.failed:
        print("\nSend one again after fixing its address: mailflow outbox retry ID")
    return 0


def _outbox_line(row: OutboxMessage) -> str:
    when = (
        f"failed for good at {row.failed_at:%Y-%m-%d %H:%M} UTC"
        if row.failed_at
        else f"next attempt {row.next_attempt_at:%Y-%m-%d %H:%M} UTC"
    )
    reply = row.last_error or "(no reply yet)"
    return (
        f"{row.id}  to {row.recipient}  {row.template}  {row.attempts} attempt(s), {when}\n"
        f"    subject: {row.subject}\n"
        f"    last reply: {reply}"
    )


def cmd_outbox_retry(args: argparse.Namespace) -> int:
    """Put failed or waiting emails back for sending now, send them, and
    say what became of each."""
    if bool(args.ids) == bool(args.failed):
        print("mailflow: name the emails to send again (ID ...) or --failed", file=sys.stderr)
        return EX_USAGE
    with _app(_settings(args)) as app:
        with app.database.transaction() as session:
            rows = queries.outbox_failed(session, MAX_LISTED_OUTBOX) if args.failed else []
            for row_id in args.ids:
                row = session.get(OutboxMessage, row_id)
                if row is None or row.sent_at is not None:
                    print(
                        f"mailflow: no outgoing email {row_id} waits or failed;"
                        " `mailflow outbox` and `mailflow outbox --failed` list them",
                        file=sys.stderr,
                    )
                    return 1  # a wrong ID is the product's answer, not a usage error
                rows.append(row)
            for row in rows:
                app.workflow.outbox.requeue(row)
                print(f"requeued {row.id} to {row.recipient} ({row.template})", flush=True)
            ids = [row.id for row in rows]
        if not ids:
            print("No outgoing email failed for good.")
            return 0
        app.drain_outbox()
        with app.database.reading() as session:
            for row_id in ids:
                print(_retry_outcome(session.get(OutboxMessage, row_id)))
    return 0


def _retry_outcome(row: OutboxMessage | None) -> str:
    assert row is not None
    if row.sent_at is not None:
        return f"sent {row.id} to {row.recipient}"
    if row.failed_at is not None:
        return f"failed again {row.id} to {row.recipient}: {row.last_error}"
    return (
        f"waiting {row.id} to {row.recipient}: {row.last_error or 'not sent yet'};"
        f" next attempt {row.next_attempt_at:%Y-%m-%d %H:%M} UTC"
    )


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


# -- mailflow import ------------------------------------------------------------------


def cmd_import(args: argparse.Namespace) -> int:
    """Existing material from a CSV file, each case for its author's
    agreement: a line per row as it is done, every bad row's problems on
    its line, and a non-zero exit when any row was bad."""
    path = Path(args.file)
    opened = skipped = bad = 0
    with _app(_settings(args)) as app:
        importer = importing.Importer(app.database, app.workflow)
        for outcome in importer.run(path, dry_run=args.dry_run):
            if outcome.status == "bad":
                bad += 1
                problems = "; ".join(
                    f"{e.column}: {_import_problem(e.problem, app.workflow)}"
                    for e in outcome.errors
                )
                print(f"{path}:{outcome.line}: {problems}", file=sys.stderr, flush=True)
            elif outcome.status == "skipped":
                skipped += 1
                print(f"line {outcome.line}: skipped, imported before as {outcome.case_id}")
            elif outcome.status == "would_open":
                opened += 1
                print(f"line {outcome.line}: good; would ask {outcome.author} to agree")
            else:
                opened += 1
                print(
                    f"line {outcome.line}: {outcome.case_id} opened; "
                    f"waits for {outcome.author} to agree",
                    flush=True,
                )
        if not args.dry_run:
            app.drain_outbox()
    done = "would be opened" if args.dry_run else "opened, each waiting for its author"
    print(
        f"{opened} case(s) {done}; {skipped} imported before (skipped); {bad} bad row(s)"
        + (". Nothing was written." if args.dry_run else ".")
    )
    return 1 if bad else 0


def _import_problem(problem: Problem, workflow: Workflow) -> str:
    """A bad cell as the operator reads it, with the closest accepted value."""
    limit = workflow.settings.limits.max_attachment_bytes
    what = {
        "missing": "is empty",
        "unrecognised": f"{problem.value!r} is not recognised",
        "not_a_document": f"{problem.value} is not a {', '.join(ACCEPTED[:-1])} "
        f"or {ACCEPTED[-1]} file",
        "too_large": f"{problem.value} is larger than [limits].max_attachment_bytes = {limit}",
        "no_file": f"no such file: {problem.value}",
    }[problem.code]
    if problem.field == "author" and problem.code == "unrecognised":
        what += " (write it as Full Name <name@example.org>)"
    if problem.closest and problem.field == "economy":
        what += f" (did you mean {workflow.economies.get(problem.closest).name}?)"
    elif problem.closest and problem.field == "area":
        what += f" (did you mean {area_by_number(int(problem.closest)).name}?)"
    elif problem.closest:
        what += f" (did you mean {Kind(problem.closest).label}?)"
    return what


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
