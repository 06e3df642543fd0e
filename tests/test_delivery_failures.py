"""Outgoing mail that cannot be delivered (SPEC section 8, "Delivery
failures" and "Logs"): a 5xx fails an email for good at once, a 4xx is
tried again; `mailflow outbox` shows both and sends them again; the
administrators hear at once of a review request nobody received, and the
daily summary names the address; every message and email leaves one log
line, as JSON for a log collector.

The relay is a real SMTP server on a loopback port, started once per test
worker; what it accepts it writes into the test's maildir, as the
recipient's server would, so the usual ``outbox`` fixture reads it.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from mailflow import logs
from mailflow.app import App, Service, build
from mailflow.cli import main
from mailflow.config import load_settings
from mailflow.errors import ConfigError
from mailflow.notify.outbox import Outgoing
from mailflow.scheduling.summary import send_daily_summary
from mailflow.store.models import OutboxMessage
from tests.conftest import Client, Mailbox, body_html, body_text, purpose, wait_until
from tests.flows import click, submitted
from tests.mails import address, reply, submission
from tests.relay import Relay, relay_running

ADMIN = "admin@mailflow.localhost"
OTHER_ADMIN = "editor-in-chief@example.org"
ANA = "ana@example.org"
FOCAL = "focal.cl@example.org"
GONE, TOO_BIG, BUSY, FINE = (f"{who}@example.org" for who in ("gone", "big", "busy", "fine"))


@pytest.fixture(scope="session")
def relay_server() -> Iterator[tuple[Relay, int]]:
    with relay_running() as running:
        yield running


@pytest.fixture
def config_text(relay_server: tuple[Relay, int]) -> str:
    return (
        f'[outbound]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {relay_server[1]}\n\n'
        f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'
    )


@pytest.fixture
def relay(relay_server: tuple[Relay, int], app: App) -> Relay:
    relay = relay_server[0]
    relay.start(app.settings.outbound.maildir)
    return relay


def all_rows(app: App) -> list[OutboxMessage]:
    with app.database.transaction() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def rows(app: App) -> dict[str, OutboxMessage]:
    """The latest email to each recipient."""
    return {row.recipient: row for row in all_rows(app)}


def send(app: App, *outgoing: Outgoing) -> None:
    with app.database.transaction() as session:
        for one in outgoing:
            app.workflow.outbox.enqueue(session, one)


def test_a_5xx_at_rcpt_or_after_data_fails_for_good_and_a_4xx_is_tried_again(
    app: App, relay: Relay
) -> None:
    """Refused at RCPT (550) or after DATA (552): failed for good at once,
    with the server's reply, and never tried again. A 451 waits for its
    next attempt, a while later."""
    relay.gone, relay.too_big, relay.busy = {GONE}, {TOO_BIG}, {BUSY}
    send(app, *(Outgoing("help", to) for to in (GONE, TOO_BIG, BUSY, FINE)))

    assert app.drain_outbox() == 1
    after = rows(app)
    assert after[FINE].sent_at is not None
    gone, too_big, busy = after[GONE], after[TOO_BIG], after[BUSY]
    assert gone.failed_at is not None and gone.last_error.startswith("550 5.1.1")
    assert too_big.failed_at is not None and too_big.last_error.startswith("552 5.3.4")
    assert gone.attempts == too_big.attempts == 1
    assert busy.failed_at is None and busy.sent_at is None and busy.attempts == 1
    assert busy.last_error.startswith("451") and busy.next_attempt_at > busy.created_at

    assert app.drain_outbox() == 0  # the 451 waits; the failed are never tried again
    assert relay.tried[GONE] == 1 and relay.tried[BUSY] == 1


def test_outbox_lists_waiting_and_failed_mail_and_retry_sends_it_again(
    app: App, relay: Relay, outbox: Mailbox, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mailflow outbox` shows what waits, `--failed` what failed for good,
    each with the server's reply; after the address is fixed, `mailflow
    outbox retry ID` sends it and says so. An unknown ID is one line
    naming it, exit 1 (the product's answer); naming neither an ID nor
    --failed is a usage error, exit 2, as argparse's own."""
    config = ["--config", str(app.settings.source)]
    relay.gone, relay.busy = {GONE}, {BUSY}
    send(app, Outgoing("help", GONE), Outgoing("help", BUSY))
    app.drain_outbox()
    capsys.readouterr()

    assert main(["outbox", *config]) == 0
    waiting = capsys.readouterr().out
    assert BUSY in waiting and "451 4.3.0" in waiting and "help" in waiting
    assert "1 attempt(s), next attempt" in waiting and GONE not in waiting
    assert main(["outbox", "--failed", *config]) == 0
    failed = capsys.readouterr().out
    assert GONE in failed and "550 5.1.1" in failed and BUSY not in failed
    assert "mailflow outbox retry ID" in failed

    assert main(["outbox", "retry", "999999", *config]) == 1
    refused = capsys.readouterr()
    assert "999999" in refused.err and len(refused.err.splitlines()) == 1
    assert main(["outbox", "retry", *config]) == 2
    assert "--failed" in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["outbox", "retry", "not-a-number", *config])
    assert usage.value.code == 2
    capsys.readouterr()
    assert rows(app)[GONE].failed_at is not None  # nothing was touched

    relay.gone.clear()  # the address is fixed
    gone_id = rows(app)[GONE].id
    assert main(["outbox", "retry", str(gone_id), *config]) == 0
    said = capsys.readouterr().out
    assert f"requeued {gone_id} to {GONE} (help)" in said and f"sent {gone_id} to {GONE}" in said
    assert outbox.of("help", GONE)
    assert rows(app)[GONE].sent_at is not None

    assert main(["outbox", "retry", "--failed", *config]) == 0
    assert "No outgoing email failed for good." in capsys.readouterr().out


def test_the_administrators_hear_at_once_when_a_focal_point_does_not_get_the_request_to_endorse(
    app: App, service: object, client: Client, outbox: Mailbox, relay: Relay
) -> None:
    """The focal point's server refuses the request to endorse: the
    administrators get one email saying who did not get which email about
    which case, the server's reply, and what to do."""
    relay.gone = {FOCAL}
    click(client, submitted(client, outbox), "Approve", ADMIN)

    told = outbox.wait_for_mail("delivery_failed", ADMIN)
    assert told["Subject"].startswith("[BP-2026-0001] ")
    assert purpose(told) == f"Not delivered: the request to endorse, to {FOCAL}"
    text = body_text(told)
    failed = rows(app)[FOCAL]
    assert failed.template == "focal_review" and failed.failed_at is not None
    assert "User unknown" in text and "550 5.1.1" in text and "BP-2026-0001" in text
    assert f"mailflow outbox retry {failed.id}" in text
    assert "mailflow case BP-2026-0001" in text and "mailflow act BP-2026-0001 ACTION" in text
    assert f"mailflow outbox retry {failed.id}" in body_html(told)
    assert "&lt;focal.cl@example.org&gt;" in body_html(told)  # the reply, escaped


def test_a_failing_administrator_is_not_mailed_about_it_and_a_digest_failure_waits_for_the_summary(
    app: App, relay: Relay, outbox: Mailbox
) -> None:
    """A digest (not a review request) that fails tells nobody at once; the
    next daily summary names the address whose mail failed for good."""
    relay.gone = {GONE}
    leave = {"items": [], "comments": [], "leave_address": address("unsubscribe")}
    send(app, Outgoing("digest", GONE, leave))
    app.drain_outbox()
    assert rows(app)[GONE].failed_at is not None
    assert not outbox.of("delivery_failed")

    with app.database.transaction() as session:
        assert send_daily_summary(session, app.workflow, since=None)
    app.drain_outbox()
    summary = outbox.wait_for_mail("daily_summary", ADMIN)
    assert f"- {GONE}" in body_text(summary) and GONE in body_html(summary)


@pytest.mark.parametrize("others", [[], [OTHER_ADMIN]], ids=["alone", "with_another"])
def test_an_administrator_whose_mailbox_refuses_is_not_mailed_about_it(
    others: list[str],
    write_config: Callable[..., Path],
    database_url: str,
    config_text: str,
    relay_server: tuple[Relay, int],
) -> None:
    """An administrator's server refuses the request to review: the other
    administrators are told; no email about it goes to that same address
    (it would fail again, and again). Alone, the log line is all there is."""
    admins = json.dumps([ADMIN, *others])
    extra = f"{config_text}\n[admin]\naddresses = {admins}\n"
    settings = load_settings(write_config(extra, database_url), environ={})
    app = build(settings)
    service = Service(app)
    service.start()
    try:
        relay, outbox = relay_server[0], Mailbox(settings.outbound.maildir)
        relay.start(settings.outbound.maildir)
        relay.gone = {ADMIN}
        client = Client(settings)
        client.send(submission())
        client.send(reply(outbox.wait_for_mail("submission_confirm", ANA), ANA))
        for other in others:
            told = outbox.wait_for_mail("delivery_failed", other)
            assert purpose(told) == f"Not delivered: the request to review, to {ADMIN}"
        wait_until(lambda: relay.tried[ADMIN], what="the request to review tried")
        wait_until(lambda: all(r.sent_at or r.failed_at for r in all_rows(app)), what="all sent")
        to_admin = [row.template for row in all_rows(app) if row.recipient == ADMIN]
        assert to_admin == ["admin_review"] and relay.tried[ADMIN] == 1
        assert len(outbox.of("delivery_failed")) == len(others)
    finally:
        service.stop()
        app.database.dispose()


def json_lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logs.formatter("json"))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_each_message_and_email_leaves_one_json_log_line(
    app: App, service: object, client: Client, outbox: Mailbox, relay: Relay, json_log: io.StringIO
) -> None:
    """With `[log].format = "json"`, each line is one JSON object: a message
    accepted (Message-ID, size, client), processed (spool id, case,
    outcome), an email sent or failed (outbox id, recipient, template,
    the server's reply)."""
    relay.gone = {ANA}
    sent = submission()
    client.send(sent)
    wait_until(lambda: rows(app) and all(r.failed_at for r in rows(app).values()), what="failed")

    lines = json_lines(json_log)
    assert all({"timestamp", "level", "logger", "message"} <= line.keys() for line in lines)
    [accepted] = [line for line in lines if "client" in line]
    assert accepted["message_id"] == sent["Message-ID"] and accepted["client"] == "127.0.0.1"
    assert isinstance(accepted["size"], int) and accepted["size"] > len(sent.get_payload())
    [processed] = [line for line in lines if line.get("spool") and "outcome" in line]
    assert processed["spool"] == accepted["spool"] and processed["case"] == "BP-2026-0001"
    assert str(processed["outcome"]).startswith("handled")
    [failed] = [line for line in lines if "outbox_id" in line]
    assert failed["recipient"] == ANA and failed["level"] == "ERROR"
    assert failed["template"] == "submission_confirm" and failed["outcome"] == "failed"
    assert str(failed["reply"]).startswith("550 5.1.1")


def test_a_sent_email_logs_the_relays_reply(
    app: App, relay: Relay, caplog: pytest.LogCaptureFixture
) -> None:
    """The line of an email sent names the relay's own 250 reply."""
    send(app, Outgoing("help", FINE))
    with caplog.at_level(logging.INFO, logger="mailflow.notify.outbox"):
        assert app.drain_outbox() == 1
    [line] = [r for r in caplog.records if getattr(r, "outbox_id", None)]
    assert line.reply == "250 2.0.0 Ok: queued" and line.levelname == "INFO"
    assert FINE in line.getMessage() and "sent" in line.getMessage()


def test_the_log_format_is_text_or_json(write_config: Callable[..., Path]) -> None:
    """`[log].format` is "text" by default, "json" for log collectors, and
    nothing else."""
    assert load_settings(write_config(""), environ={}).log.format == "text"
    assert load_settings(write_config('[log]\nformat = "json"\n'), environ={}).log.format == "json"
    with pytest.raises(ConfigError, match=r"\[log\] format"):
        load_settings(write_config('[log]\nformat = "xml"\n'), environ={})
