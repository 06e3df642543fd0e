"""The commands on outgoing mail and on what lets it be delivered:
`outbox`, `outbox retry`, `postfix` (Postfix in front) and `dkim`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mailflow import postfix
from mailflow.app import sender_domain
from mailflow.cli.common import EX_USAGE, open_app, settings_from
from mailflow.errors import ConfigError
from mailflow.notify import dkim
from mailflow.store import queries
from mailflow.store.models import OutboxMessage

MAX_LISTED_OUTBOX = 500


def cmd_outbox(args: argparse.Namespace) -> int:
    """Outgoing mail waiting, or failed for good, with the server's reply."""
    with open_app(settings_from(args)) as app, app.database.reading() as session:
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
    with open_app(settings_from(args)) as app:
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


def cmd_postfix(args: argparse.Namespace) -> int:
    """Postfix in front (SPEC section 8): its settings and maps for this config."""
    for path in postfix.write_postfix_files(settings_from(args), Path(args.output)):
        print(f"wrote {path}")
    print(f"next: the steps in {Path(args.output).resolve() / 'README'}")
    return 0


def cmd_dkim(args: argparse.Namespace) -> int:
    """Creates the key once (a second run keeps it: DNS already names it)
    and prints the record to publish."""
    settings = settings_from(args)
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
