"""The commands that run the service or look after it: `run`, `ingest`
(an MTA's pipe), `tick`, `status`, `requeue` and `db upgrade`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType

from mailflow import hosts
from mailflow.app import Service, build
from mailflow.cli.common import (
    EX_DATAERR,
    EX_TEMPFAIL,
    log,
    moment_arg,
    open_app,
    raise_open_file_limit,
    settings_from,
)
from mailflow.clock import FixedClock, SystemClock
from mailflow.config import prepare_paths
from mailflow.monitor import status as status_report
from mailflow.spool import Envelope, Spool
from mailflow.store.db import Database


def cmd_run(args: argparse.Namespace) -> int:
    app = build(settings_from(args))
    raise_open_file_limit()
    service = Service(app)
    service.start()

    def stop(signum: int, _frame: FrameType | None) -> None:
        log.info("stopping (%s)", signal.Signals(signum).name)
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
    settings = settings_from(args)
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
        with open_app(settings) as app:
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


def cmd_tick(args: argparse.Namespace) -> int:
    """Scheduled work that is due, as if the clock read ``--now``."""
    settings = settings_from(args)
    clock = FixedClock(moment_arg(args.now)) if args.now else SystemClock()
    app = build(settings, clock)
    try:
        report = app.timed.tick()
        print(f"tick at {clock.now().isoformat()}: {report}")
        app.drain_outbox()
        app.update_archive_unless_written_elsewhere()
    finally:
        app.database.dispose()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """This host's spool, the outbox, the last tick, who holds the
    scheduler and the site writer, and every host seen on the database."""
    settings = settings_from(args)
    with open_app(settings) as app:
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


def cmd_requeue(args: argparse.Namespace) -> int:
    settings = settings_from(args)
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


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    prepare_paths(settings)  # a migration may write into [files] dir
    database = Database(settings.database.url, settings.files.dir)
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
