"""What an operator sees and does: the case commands, schema upgrades, a
poison message set aside and replayed, refused tokens, and relaying
outgoing mail through a real SMTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import Client, Mailbox, body_text, free_port, purpose, wait_until
from mails import address, message, reply, submission
from sqlalchemy import select

from mailflow.app import App
from mailflow.cli import main
from mailflow.config import Settings
from mailflow.notify import transports
from mailflow.notify.outbox import Outgoing
from mailflow.notify.transports import SmtpTransport
from mailflow.routing import Route
from mailflow.runner import Result
from mailflow.store.db import Database
from mailflow.store.models import InboundMessage, OutboxMessage
from mailflow.workflow import dispatch

ANA = "ana@example.org"
ADMIN = "admin@mailflow.localhost"


def cli(settings: Settings, *arguments: str) -> int:
    return main([*arguments, "--config", str(settings.source)])


def test_case_commands_show_fields_and_history(
    client: Client, outbox: Mailbox, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """`mailflow cases` lists, `mailflow case ID` starts with Case:/State:
    and shows every state change with who and through which message."""
    client.send(submission())
    confirm = outbox.wait_for(1, ANA)[-1]
    client.send(reply(confirm, ANA))
    outbox.wait_for(1, ADMIN)
    capsys.readouterr()

    assert cli(settings, "cases", "--state", "admin_review") == 0
    assert "BP-2026-0001  admin_review" in capsys.readouterr().out
    assert cli(settings, "case", "bp-2026-0001") == 0
    text = capsys.readouterr().out
    assert text.startswith("Case: BP-2026-0001\nState: admin_review\n")
    assert "submitted  -> pending_confirmation  by ana@example.org (message #1)" in text
    assert "completed incomplete -> admin_review" in text
    assert cli(settings, "case", "BP-2026-0001", "--json") == 0
    data = json.loads(capsys.readouterr().out)
    assert data["document"]["filename"] == "seed_capital.pdf"
    assert [e["to"] for e in data["history"]] == [
        "pending_confirmation",
        "incomplete",
        "admin_review",
    ]
    assert cli(settings, "case", "BP-2026-0099") == 1
    assert "no case BP-2026-0099" in capsys.readouterr().err


def test_a_database_behind_the_code_stops_with_the_fix(
    settings: Settings, app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    """Commands refuse a database whose schema is behind and print the
    command that fixes it; running that command fixes it."""
    database: Database = app.database
    config = database._alembic_config()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "0001")  # as after an upgrade of mailflow
    assert cli(settings, "cases") == 1
    error = capsys.readouterr().err
    assert f"mailflow db upgrade --config {settings.source}" in error
    assert cli(settings, "db", "upgrade") == 0
    assert f"0001 -> {database.head_revision()}" in capsys.readouterr().out
    assert cli(settings, "cases") == 0
    assert "No cases." in capsys.readouterr().out


def test_the_schema_check_reads_the_revisions_as_alembic_does(app: App) -> None:
    """Every command checks the schema without loading alembic: the newest
    migration read from the files, and the revision read from alembic's
    table, are alembic's own answers, before and after a downgrade."""
    database: Database = app.database
    config = database._alembic_config()
    assert database.head_revision() == ScriptDirectory.from_config(config).get_current_head()
    for target in ("0001", "head"):
        with database.engine.begin() as connection:
            config.attributes["connection"] = connection
            (command.downgrade if target == "0001" else command.upgrade)(config, target)
        with database.engine.connect() as connection:
            alembic_says = MigrationContext.configure(connection).get_current_revision()
        assert database.current_revision() == alembic_says
    assert database.current_revision() == database.head_revision()


def test_a_poison_message_is_shunted_and_replayed(
    settings: Settings,
    app: App,
    outbox: Mailbox,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """A message that crashes the code is tried max_tries times, set aside
    with its bytes, reported to the administrator, and `mailflow requeue`
    replays it once the code is fixed. Other mail flows meanwhile."""

    def crash(*args: object) -> str:
        raise RuntimeError("a bug in the help handler")

    monkeypatch.setitem(dispatch.HANDLERS, Route.HELP, crash)
    path = tmp_path / "poison.eml"
    path.write_bytes(message(ANA, address("help"), "help", "please").as_bytes())
    assert cli(settings, "ingest", str(path)) == 0  # accepted: it is on disk
    results = []
    for _ in range(settings.spool.max_tries):
        results += app.runner.run_pending()
    assert results == [Result.RETRY] * (settings.spool.max_tries - 1) + [Result.SHUNTED]
    [stem] = app.spool.shunted()
    assert (settings.spool.dir / "shunt" / stem).read_bytes().endswith(path.read_bytes())
    app.drain_outbox()
    [report] = outbox.to(ADMIN)
    assert f"mailflow requeue {stem}" in body_text(report)

    monkeypatch.setitem(dispatch.HANDLERS, Route.HELP, dispatch.answer_help)
    capsys.readouterr()
    assert cli(settings, "requeue") == 0
    assert stem in capsys.readouterr().out
    assert cli(settings, "requeue", stem) == 0
    assert app.runner.run_pending() == [Result.DONE]
    app.drain_outbox()
    assert len(outbox.to(ANA)) == 1


def test_a_wrong_token_is_explained_once_an_hour(client: Client, outbox: Mailbox, app: App) -> None:
    """An unknown action address changes nothing; the sender gets one short
    explanation without links, and no second one within the hour."""
    for _ in range(2):
        client.send(message(ANA, address("actions+notatoken"), "approve", "approve"))
    wait_until(lambda: _outcomes(app) == 2, what="both messages processed")
    assert _emails_to(app, ANA) == ["token_refused"]
    [answer] = outbox.wait_for(1, ANA)
    assert answer["Subject"] == "Your message changed nothing"
    assert "mailto:actions" not in str(answer)


def test_the_author_cannot_change_a_case_under_review(
    client: Client, outbox: Mailbox, app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    """Once a case is with the administrator, a reply about it changes
    nothing: it goes to the administrators as a question, is recorded in the
    case's history, and the author is told the case is unchanged."""
    client.send(submission())
    client.send(reply(outbox.wait_for(1, ANA)[-1], ANA))
    outbox.wait_for(2, ANA)
    client.send(submission(subject="Re: [BP-2026-0001] new version"))
    answer = outbox.wait_for(3, ANA)[-1]
    assert purpose(answer) == "A person will answer you"
    assert "the administrator is checking it now" in body_text(answer)
    question = outbox.wait_for(2, ADMIN)[-1]
    assert question["Reply-To"] == ANA
    assert cli(app.settings, "case", "BP-2026-0001") == 0
    assert "question_forwarded" in capsys.readouterr().out


def _outcomes(app: App) -> int:
    with app.database.transaction() as session:
        return len(session.scalars(select(InboundMessage.id)).all())


def _emails_to(app: App, recipient: str) -> list[str]:
    """What the outbox holds for someone: committed, sent or not yet."""
    with app.database.transaction() as session:
        return list(
            session.scalars(
                select(OutboxMessage.template).where(OutboxMessage.recipient == recipient)
            )
        )


class Relay:
    """A real SMTP server standing in for the outgoing relay; it answers
    with the code the test sets."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []
        self.answer = "250 OK"
        self.connections = 0

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        self.connections += 1  # the sender greets once per connection
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.answer.startswith("250"):
            self.received.append(envelope)
        return self.answer


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    handler, port = Relay(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    yield handler, port
    controller.stop()


def test_smtp_transport_relays_retries_and_gives_up(app: App, relay: tuple[Relay, int]) -> None:
    """Delivered with the bounce address as return path; a 4xx is retried
    later with backoff, a 5xx is a permanent failure, recorded."""
    handler, port = relay
    transport = SmtpTransport("127.0.0.1", port, starttls=False, username="", password="")
    outbox = app.workflow.outbox
    with app.database.transaction() as session:
        outbox.enqueue(session, Outgoing("help", ANA))
    assert outbox.drain(app.database, transport) == 1
    [envelope] = handler.received
    assert envelope.mail_from == address("bounces") and envelope.rcpt_tos == [ANA]
    assert isinstance(envelope.content, bytes)
    assert b"Auto-Submitted: auto-generated" in envelope.content

    handler.answer = "451 4.3.0 try later"
    with app.database.transaction() as session:
        outbox.enqueue(session, Outgoing("help", "bob@example.org"))
    assert outbox.drain(app.database, transport) == 0
    with app.database.transaction() as session:
        row = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())).first()
        assert row is not None and row.attempts == 1 and row.sent_at is None
        assert row.next_attempt_at > row.created_at and "451" in row.last_error

    handler.answer = "550 5.1.1 no such user"
    with app.database.transaction() as session:
        outbox.enqueue(session, Outgoing("help", "carol@example.org"))
    assert outbox.drain(app.database, transport) == 0
    with app.database.transaction() as session:
        row = session.scalars(select(OutboxMessage).order_by(OutboxMessage.id.desc())).first()
        assert row is not None and row.failed_at is not None and "550" in row.last_error


def test_one_pass_of_the_outbox_shares_connections_to_the_relay(
    app: App, relay: tuple[Relay, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Emails waiting together go over one connection, a fresh one after
    each share of messages and after a failure; 8-bit bodies are declared."""
    monkeypatch.setattr(transports, "MESSAGES_PER_CONNECTION", 5)
    handler, port = relay
    transport = SmtpTransport("127.0.0.1", port, starttls=False, username="", password="")
    outbox = app.workflow.outbox
    people = [f"person{n}@example.org" for n in range(12)]
    with app.database.transaction() as session:
        for person in people:
            outbox.enqueue(session, Outgoing("help", person))
    assert outbox.drain(app.database, transport) == 12
    assert handler.connections == 3  # 5 + 5 + 2
    assert sorted(e.rcpt_tos[0] for e in handler.received) == sorted(people)
    transport.deliver(ANA, address("bounces"), "Subject: Hola\r\n\r\nCaf\u00e9\r\n".encode(), 0)
    transport.close()
    assert "BODY=8BITMIME" in handler.received[-1].mail_options
    assert not any("BODY=8BITMIME" in e.mail_options for e in handler.received[:-1])  # ASCII

    handler.answer, handler.connections = "451 4.3.0 try later", 0
    with app.database.transaction() as session:
        outbox.enqueue(session, Outgoing("help", "bob@example.org"))
        outbox.enqueue(session, Outgoing("help", "carol@example.org"))
    assert outbox.drain(app.database, transport) == 0
    assert handler.connections == 2  # the failure dropped the first one


def test_nothing_is_ever_sent_to_our_own_addresses(app: App) -> None:
    """The outbox refuses our own addresses, so two mailflows never loop."""
    with app.database.transaction() as session:
        assert app.workflow.outbox.enqueue(session, Outgoing("help", address("submit"))) is None
        assert (
            app.workflow.outbox.enqueue(session, Outgoing("help", "help@mailflow.localhost"))
            is None
        )
