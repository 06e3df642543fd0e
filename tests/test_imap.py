"""The IMAP ingress against a real, private Dovecot: a mailbox message
becomes a case and is moved, the whole workflow runs through one shared
mailbox, and dropped connections, restarts between spool and move, and
UIDVALIDITY changes lose nothing and double nothing."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import Mailbox, free_port, headline, wait_until
from dovecot import (
    PASSWORD,
    Dovecot,
    DovecotServer,
    MailboxClient,
    delivery_headers,
    dovecot_binary,
    with_delivery_headers,
)
from flows import ANA, FOCAL, answered_at_their_address, click, links, published
from imapclient import IMAPClient
from mails import PDF, message, reply, submission
from sqlalchemy import func, select

from mailflow.app import App, Service, build
from mailflow.config import Settings, load_settings
from mailflow.errors import ConfigError
from mailflow.ingress import imap
from mailflow.ingress.imap import ImapIngress, mailbox_name, return_path
from mailflow.runner import Result
from mailflow.store.models import Case, InboundMessage

# One worker starts this private server once for all of these tests.
pytestmark = pytest.mark.xdist_group("dovecot")

PROCESSED = "mailflow.processed"  # "mailflow/processed" with Dovecot's maildir delimiter


@pytest.fixture(scope="session")
def dovecot_server() -> Iterator[DovecotServer]:
    yield from _dovecot_server()


@pytest.fixture
def dovecot(dovecot_server: DovecotServer) -> Dovecot:
    """A mailbox of the test's own on the worker's Dovecot."""
    if not dovecot_server.running():  # a test that stopped it failed
        dovecot_server.start()
    return dovecot_server.account()


def _dovecot_server(capabilities: str = "") -> Iterator[DovecotServer]:
    binary = dovecot_binary()
    if binary is None:
        why = "dovecot is not installed (apt-get install dovecot-imapd)"
        if os.environ.get("MAILFLOW_TEST_REQUIRE_DOVECOT") == "1":
            pytest.fail(why)
        pytest.skip(why)
    server = DovecotServer(binary, free_port(), capabilities)
    server.start()
    yield server
    server.remove()


@pytest.fixture(autouse=True)
def imap_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILFLOW_IMAP_PASSWORD", PASSWORD)


def imap_section(server: Dovecot, folder: str = "INBOX") -> str:
    return (
        f'[imap]\nhost = "127.0.0.1"\nport = {server.port}\nssl = false\n'
        f'username = "{server.user}"\nfolder = "{folder}"\n\n'
    )


@pytest.fixture
def config_text(dovecot: Dovecot) -> str:
    return imap_section(dovecot) + f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'


@pytest.fixture
def mailbox(dovecot: Dovecot, service: Service) -> MailboxClient:
    assert service.imap is not None
    assert service.imap.connected.wait(15), dovecot.log()
    return MailboxClient(dovecot)


def ingress(
    settings: Settings, app: App, max_bytes: int | None = None, poll_seconds: float = 60
) -> ImapIngress:
    assert settings.imap is not None
    return ImapIngress(
        settings.imap,
        PASSWORD,
        app.spool,
        lambda: None,
        max_bytes or settings.limits.max_message_bytes,
        poll_seconds=poll_seconds,
    )


def count(app: App, model: type) -> int:
    with app.database.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# -- the mailbox as an ingress -------------------------------------------------


def test_a_submission_in_the_inbox_becomes_a_case_and_is_moved(
    mailbox: MailboxClient, dovecot: Dovecot, outbox: Mailbox, app: App
) -> None:
    mailbox.send(submission())

    confirmation = outbox.wait_for(1, ANA)[-1]
    assert "confirm" in headline(confirmation).lower()
    assert dovecot.uids("INBOX") == []
    assert len(dovecot.uids(PROCESSED)) == 1
    with app.database.transaction() as session:
        record = session.scalars(select(InboundMessage)).one()
        assert record.envelope_sender == ANA  # from the Return-Path the server wrote
        assert record.outcome.startswith("handled: submit")


def test_an_smtputf8_sender_in_the_mailbox_is_answered_at_their_exact_address(
    mailbox: MailboxClient, dovecot: Dovecot, outbox: Mailbox, app: App
) -> None:
    """A message from josé@ejemplo.cl, its From and Return-Path in raw UTF-8
    as a server that took it over SMTPUTF8 stores it, and the reply to the
    confirmation: both moved to the processed folder, the author registered
    under that address, every answer written to it."""
    person = "josé@ejemplo.cl"

    def deliver(raw: bytes, recipient: str) -> None:
        mailbox.deliver(delivery_headers(person, recipient) + raw)

    answered_at_their_address(app, outbox, person, deliver)
    assert dovecot.uids("INBOX") == []
    assert len(dovecot.uids(PROCESSED)) == 2


def test_the_whole_workflow_runs_through_the_mailbox(
    mailbox: MailboxClient, outbox: Mailbox, app: App, settings: Settings
) -> None:
    case_id = published(mailbox, outbox, app)  # type: ignore[arg-type]

    page = settings.archive.output_dir / "cases" / case_id / "index.html"
    wait_until(page.exists, what="the published page")
    assert "Seed capital" in page.read_text()


def test_one_shared_mailbox_routes_by_plus_addresses(
    dovecot: Dovecot, write_config: Callable[..., Path], database_url: str
) -> None:
    routes = ("submit", "register", "subscribe", "unsubscribe", "internship", "comment")
    shared = "\n".join(f'{r} = "mailflow+{r}"' for r in (*routes, "help", "actions", "bounces"))
    settings = load_settings(
        write_config(
            imap_section(dovecot)
            + '[site]\ndomain = "example.org"\n\n'
            + '[admin]\naddresses = ["boss@example.org"]\n\n'
            + '[outbound]\nfrom = "APEC MSE <mailflow@example.org>"\n\n'
            + f"[addresses]\n{shared}\n",
            database_url,
        ),
        environ={},
    )
    with running(settings) as (_, outbox):
        client = MailboxClient(dovecot)
        client.send(
            message(
                "Ana Perez <ana@example.org>",
                "mailflow+submit@example.org",
                "Seed capital",
                FORM_CHILE,
                ("seed.pdf", PDF, "application/pdf"),
            )
        )
        confirmation = outbox.wait_for(1, ANA)[-1]
        assert confirmation["Reply-To"].addresses[0].addr_spec.startswith("mailflow+actions+")
        client.send(reply(confirmation, ANA))
        review = outbox.wait_for(1, "boss@example.org")[-1]
        actions = links(review)
        for label in ("Approve", "Request changes", "Reject"):
            assert actions[label].startswith("mailto:mailflow+actions+")
        click(client, review, "Approve", "boss@example.org")  # type: ignore[arg-type]
        assert "Approved" in headline(outbox.wait_for(3, ANA)[-1])
        assert dovecot.uids("INBOX") == []
        assert len(dovecot.uids(PROCESSED)) == 3


FORM_CHILE = """Kind: Best practice
Economy: Chile
Priority area: Access to Financial Services
Organization: SERCOTEC
Summary: Seed capital for micro entrepreneurs.
"""


@contextmanager
def running(settings: Settings) -> Iterator[tuple[App, Mailbox]]:
    app = build(settings)
    service = Service(app)
    service.start()
    try:
        assert service.imap is not None and service.imap.connected.wait(15)
        yield app, Mailbox(settings.outbound.maildir)
    finally:
        service.stop()


def test_mail_announced_with_idles_continuation_wakes_the_ingress(
    dovecot: Dovecot, app: App, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message that arrives between a pass over the folder and the IDLE
    after it: Dovecot sends "+ idling" and "* 1 EXISTS" at once, and when
    both come in one read, as on a loaded machine, imaplib holds the EXISTS
    in its buffer, where a poll of the socket never sees it. It must still
    be taken at once, not at the next IDLE two minutes later."""
    arriving = [with_delivery_headers(submission(subject="Between the pass and IDLE"))]

    class DeliveringAsIdleBegins(IMAPClient):
        def idle(self) -> None:
            if not arriving:
                return super().idle()
            dovecot.append(arriving.pop())
            # imapclient's idle(), with the wait that puts both lines in
            # the socket before the continuation is read.
            self._idle_tag = self._imap._command("IDLE")
            wait_until(
                lambda: b"EXISTS" in self.socket().recv(4096, socket.MSG_PEEK),
                what="Dovecot's EXISTS behind IDLE's continuation",
            )
            assert self._imap._get_response() is None  # the continuation

    monkeypatch.setattr(imap, "IMAPClient", DeliveringAsIdleBegins)
    stopping = _run_in_thread(ingress(settings, app))
    try:
        wait_until(lambda: dovecot.uids(PROCESSED), what="the ingress to take the message")
    finally:
        stopping.set()
    assert not arriving and dovecot.uids("INBOX") == []
    assert len(app.spool.pending()) == 1


# -- faults --------------------------------------------------------------------


def test_a_dropped_connection_and_a_server_restart_are_recovered(
    mailbox: MailboxClient,
    dovecot: Dovecot,
    outbox: Mailbox,
    service: Service,
    caplog: pytest.LogCaptureFixture,
) -> None:
    dovecot.kick()
    mailbox.send(submission(subject="After the connection dropped"))
    outbox.wait_for(1, ANA)

    def reconnections() -> int:
        return sum("reconnecting in" in record.message for record in caplog.records)

    before = reconnections()
    dovecot.stop()
    # The ingress finds the server gone (one warning) and keeps trying (another).
    wait_until(lambda: reconnections() >= before + 2, what="a failed reconnection")
    dovecot.start()
    mailbox.send(submission(subject="After the server restarted"))
    outbox.wait_for(2, ANA)  # the second confirmation request
    assert len(dovecot.uids(PROCESSED)) == 2


def test_a_restart_between_spool_and_move_changes_nothing(
    dovecot: Dovecot, app: App, settings: Settings, outbox: Mailbox
) -> None:
    dovecot.append(with_delivery_headers(submission()))

    crashing = ingress(settings, app)
    crashing._move = _lose_connection  # type: ignore[method-assign]
    with crashing.connect() as client, pytest.raises(ConnectionResetError):
        crashing.take_waiting(client)
    assert len(app.spool.pending()) == 1
    assert dovecot.uids("INBOX") == [1]  # not moved: not known to be safe yet

    restarted = ingress(settings, app)
    with restarted.connect() as client:
        assert restarted.take_waiting(client) == 1

    assert sorted(app.runner.run_pending()) == [Result.DONE, Result.DUPLICATE]
    app.drain_outbox()
    assert len(outbox.to(ANA)) == 1
    assert count(app, Case) == 1
    assert dovecot.uids("INBOX") == [] and len(dovecot.uids(PROCESSED)) == 1


def _lose_connection(*_: object) -> None:
    raise ConnectionResetError("the connection dropped before the move")


@pytest.fixture
def folder_config(dovecot: Dovecot) -> str:
    return imap_section(dovecot, folder="Submissions")


def test_a_changed_uidvalidity_neither_hides_nor_repeats_a_message(
    dovecot: Dovecot,
    app: App,
    write_config: Callable[..., Path],
    database_url: str,
    folder_config: str,
) -> None:
    settings = load_settings(write_config(folder_config, database_url), environ={})
    first = with_delivery_headers(submission(subject="First practice"))
    with dovecot.session() as client:
        client.create_folder("Submissions")
        client.append("Submissions", first)
    reader = ingress(settings, app)
    with reader.connect() as client:
        moving = reader._move
        reader._move = _lose_connection  # type: ignore[method-assign]
        with pytest.raises(ConnectionResetError):
            reader.take_waiting(client)
        reader._move = moving  # type: ignore[method-assign]
        old_validity = client.select_folder("Submissions")[b"UIDVALIDITY"]

    # The mailbox is restored from a backup: a new UIDVALIDITY, UIDs from 1
    # again, the first message back and a new one where it used to be.
    with dovecot.session() as client:
        client.delete_folder("Submissions")
        client.create_folder("Submissions")
        client.append("Submissions", with_delivery_headers(submission(subject="Second practice")))
        client.append("Submissions", first)
        status = client.select_folder("Submissions")
        assert status[b"UIDVALIDITY"] != old_validity
        assert client.search("ALL") == [1, 2]

    with reader.connect() as client:
        assert reader.take_waiting(client) == 2
    assert sorted(app.runner.run_pending()) == [Result.DONE, Result.DONE, Result.DUPLICATE]
    assert count(app, Case) == 2
    assert dovecot.uids("Submissions") == []


# -- servers and messages that differ ------------------------------------------


@pytest.fixture(scope="session")
def plain_dovecot_server() -> Iterator[DovecotServer]:
    yield from _dovecot_server(capabilities="IMAP4rev1 LITERAL+ NAMESPACE")


@pytest.fixture
def plain_dovecot(plain_dovecot_server: DovecotServer) -> Dovecot:
    return plain_dovecot_server.account()


def test_a_server_without_idle_move_or_uidplus_is_polled_and_copied(
    plain_dovecot: Dovecot, app: App, write_config: Callable[..., Path], database_url: str
) -> None:
    settings = load_settings(write_config(imap_section(plain_dovecot), database_url), environ={})
    reader = ingress(settings, app, poll_seconds=0.2)
    with reader.connect() as client:
        assert not {b"IDLE", b"MOVE", b"UIDPLUS"} & set(client.capabilities())
    stopping = _run_in_thread(reader)
    try:
        for number in range(2):
            plain_dovecot.append(with_delivery_headers(submission(subject=f"Polled {number}")))
            wait_until(lambda: not plain_dovecot.uids("INBOX"), what="the poll to take it")
    finally:
        stopping.set()
    assert len(plain_dovecot.uids(PROCESSED)) == 2
    assert len(app.spool.pending()) == 2


def _run_in_thread(reader: ImapIngress) -> threading.Event:
    stopping = threading.Event()
    threading.Thread(target=reader.run, args=(stopping,), daemon=True).start()
    return stopping


def test_an_oversize_message_stays_flagged_and_the_rest_flows(
    dovecot: Dovecot, app: App, settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    big = submission(attachment=("big.pdf", PDF + b"x" * 50_000, "application/pdf"))
    dovecot.append(with_delivery_headers(big))
    dovecot.append(with_delivery_headers(submission(subject="A normal one")))
    reader = ingress(settings, app, max_bytes=20_000)

    with caplog.at_level(logging.ERROR), reader.connect() as client:
        assert reader.take_waiting(client) == 1
        assert reader.take_waiting(client) == 0  # looked at once, not again

    assert dovecot.uids("INBOX") == [1]
    assert b"\\Flagged" in dovecot.flags("INBOX")[0]
    assert len(app.spool.pending()) == 1
    assert sum("over [limits].max_message_bytes" in r.message for r in caplog.records) == 1


# -- configuration ---------------------------------------------------------------


def test_a_missing_password_variable_is_named(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MAILFLOW_IMAP_PASSWORD")
    with pytest.raises(ConfigError, match=r"\$MAILFLOW_IMAP_PASSWORD, which is not set"):
        Service(app)


@pytest.mark.parametrize(
    ("section", "complaint"),
    [
        ('host = "imap.example.org"\nssl = false', "in clear"),
        ('host = "imap.example.org"\nssl = true\nstarttls = true', "not both"),
    ],
)
def test_imap_settings_that_would_leak_the_password_are_refused(
    tmp_path: Path, section: str, complaint: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f'[imap]\n{section}\nusername = "m@example.org"\n')
    with pytest.raises(ConfigError, match=complaint):
        load_settings(path, environ={})


@pytest.mark.parametrize(
    ("configured", "prefix", "delimiter", "expected"),
    [
        ("mailflow/processed", "", ".", "mailflow.processed"),
        ("mailflow/processed", "", "/", "mailflow/processed"),
        ("mailflow/processed", "INBOX.", ".", "INBOX.mailflow.processed"),
        ("INBOX/mailflow", "INBOX.", ".", "INBOX.mailflow"),
    ],
)
def test_the_processed_folder_follows_the_servers_hierarchy(
    configured: str, prefix: str, delimiter: str, expected: str
) -> None:
    assert mailbox_name(configured, prefix, delimiter) == expected


def test_the_return_path_is_the_envelope_sender() -> None:
    assert return_path(b"Return-Path: <ana@example.org>\r\nFrom: x\r\n\r\n") == ANA
    assert return_path(b"Return-Path: <>\r\nFrom: x\r\n\r\n") == ""
    assert return_path(b"From: x\r\n\r\n") == ""
