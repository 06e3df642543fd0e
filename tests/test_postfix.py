"""Postfix in front of mailflow (SPEC section 8): `mailflow postfix`
writes the settings and maps, and a real, private Postfix fed with them
relays mail from outside to mailflow over LMTP, refuses unknown addresses
at RCPT (no bounce, so no backscatter), takes documents as large as
mailflow does, and keeps mail while mailflow is down.

One Postfix per pytest-xdist worker, started once (tests/postfix_server.py).
Its `mynetworks` leaves out 127.0.0.1, where the tests connect from,
so every message comes "from outside" and must be relayed on the strength
of the maps alone. Each test runs its own mailflow (SQLite only: Postfix,
not the database, is under test) on the one LMTP port the maps name.
"""

from __future__ import annotations

import base64
import re
import shutil
import smtplib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import Client, Mailbox, body_text, free_port, wait_until
from flows import state
from mails import PDF, address, message, reply, submission
from postfix_server import PostfixServer, postfix_running

from mailflow.app import App, Service, build
from mailflow.cli import main as mailflow
from mailflow.config import Settings, load_settings
from mailflow.postfix import address_pattern, lmtp_nexthop, postfix_files
from mailflow.routing import Router
from mailflow.workflow.dispatch import HANDLERS

# One worker starts this private server once for all of these tests.
pytestmark = pytest.mark.xdist_group("postfix")

ANA, ADMIN = "ana@example.org", "admin@mailflow.localhost"
LMTP = {"MAILFLOW_SMTP_LMTP": "true"}


@pytest.fixture(scope="session")
def postfix() -> Iterator[PostfixServer]:
    """Clients outside mynetworks (127.0.0.2 only): every message must be
    relayed on the strength of the maps alone."""
    with postfix_running(free_port()) as server:
        yield server


@pytest.fixture
def settings(
    write_config: Callable[..., Path], postfix: PostfixServer, sqlite_template: Path
) -> Settings:
    """mailflow on the LMTP port the maps name, on SQLite only."""
    path = write_config(port=postfix.lmtp_port)
    shutil.copyfile(sqlite_template, path.parent / "mailflow.db")
    return load_settings(path, environ=LMTP)


@pytest.fixture
def through_postfix(settings: Settings, postfix: PostfixServer) -> Client:
    """A sender on another host: its mail goes to Postfix, not to mailflow."""
    client = Client(settings)
    client.port = postfix.port
    return client


def test_a_submission_from_outside_is_relayed_to_mailflow_over_lmtp(
    service: Service, app: App, outbox: Mailbox, through_postfix: Client, postfix: PostfixServer
) -> None:
    """Postfix relays the domain (no "Relay access denied" for a client
    outside mynetworks) and hands the submission, then the confirming reply
    to actions+TOKEN@, to mailflow over LMTP: the case waits for review."""
    through_postfix.send(submission())
    confirm = outbox.wait_for_mail("submission_confirm", ANA)
    assert re.match(r"actions\+[^@]+@mailflow\.localhost", str(confirm["Reply-To"]))
    through_postfix.send(reply(confirm, ANA))
    outbox.wait_for_mail("admin_review", ADMIN)
    assert state(app) == "admin_review"
    assert "relay=127.0.0.1[127.0.0.1]:" + str(postfix.lmtp_port) in postfix.log()
    wait_until(lambda: postfix.queue() == [], 10, "an empty Postfix queue")


def test_an_unknown_address_is_refused_at_rcpt_and_nothing_bounces(
    service: Service, postfix: PostfixServer
) -> None:
    """nobody@ and look-alikes of mailflow's addresses hear a 5xx at RCPT,
    while the sender is still connected: Postfix queues no bounce to a
    forged sender. mailflow's own addresses, in any case, are accepted."""
    with smtplib.SMTP("127.0.0.1", postfix.port, timeout=30) as smtp:
        smtp.ehlo("client.example.org")
        smtp.mail("forged@example.org")
        for unknown in ("nobody", "submitx", "xsubmit", "submit-", "actions-token"):
            code, reply_text = smtp.rcpt(address(unknown))
            assert 500 <= code < 600, (unknown, code, reply_text)
        for known in ("SUBMIT", "Actions+AbC-12_x", "comment+BP-2026-0001", "postmaster"):
            code, reply_text = smtp.rcpt(address(known))
            assert code == 250, (known, code, reply_text)
        smtp.rset()
    assert postfix.queue() == []
    assert "User unknown in relay recipient table" in postfix.log()


def test_postmaster_reaches_the_administrators(
    service: Service, outbox: Mailbox, through_postfix: Client
) -> None:
    """postmaster@ is one of mailflow's addresses, so Postfix relays it and
    mailflow forwards it to the administrators."""
    complaint = message("ops@example.net", address("postmaster"), "Your server", "Hello there.")
    through_postfix.send(complaint)
    forwarded = outbox.wait_for_mail("mailbox_forwarded", ADMIN)
    assert "postmaster@mailflow.localhost" in body_text(forwarded)


def with_document(size: int) -> bytes:
    """A submission with a PDF of ``size`` bytes. The email package takes
    seconds to encode megabytes; base64 takes a blink, so the document is
    put in place of a small one."""
    placeholder = PDF + b"%placeholder"
    small = submission(attachment=("large.pdf", placeholder, "application/pdf")).as_bytes()
    document = placeholder + b"0" * (size - len(placeholder))
    encoded = base64.encodebytes(placeholder).strip()
    assert small.count(encoded) == 1
    return small.replace(encoded, base64.encodebytes(document).strip())


def test_a_15_mb_document_is_taken_and_reviewed(
    service: Service, app: App, outbox: Mailbox, through_postfix: Client
) -> None:
    """Postfix's default limit (10 MB) would refuse it; the generated
    message_size_limit lets through all that mailflow takes."""
    through_postfix.send(with_document(15 * 1_048_576), ANA, [address("submit")])
    confirm = outbox.wait_for_mail("submission_confirm", ANA, timeout=30)
    through_postfix.send(reply(confirm, ANA))
    review = outbox.wait_for_mail("admin_review", ADMIN, timeout=30)
    assert "large.pdf" in body_text(review)
    assert state(app) == "admin_review"


def test_mail_waits_in_postfix_while_mailflow_is_down(
    settings: Settings, outbox: Mailbox, through_postfix: Client, postfix: PostfixServer
) -> None:
    """With mailflow stopped Postfix keeps the message (deferred, not
    bounced); once mailflow is back, a flush delivers it."""
    through_postfix.send(submission())

    def deferred() -> bool:
        return [m.get("queue_name") for m in postfix.queue()] == ["deferred"]

    wait_until(deferred, 15, "the submission deferred in Postfix's queue")
    service = Service(build(settings))
    service.start()
    try:
        postfix.flush()
        outbox.wait_for_mail("submission_confirm", ANA)
        wait_until(lambda: postfix.queue() == [], 10, "an empty Postfix queue")
    finally:
        service.stop()


# -- the files themselves -------------------------------------------------


def test_the_files_are_the_same_bytes_for_the_same_config(
    write_config: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written twice, the files do not change: a config management tool
    sees nothing to do, and `postfix reload` nothing new."""
    config = str(write_config())
    command = ["postfix", "--output", str(tmp_path / "out"), "--config", config]
    monkeypatch.setenv("MAILFLOW_SMTP_LMTP", "true")
    assert mailflow(command) == 0
    first = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert mailflow(command) == 0
    second = {p.name: p.read_bytes() for p in (tmp_path / "out").iterdir()}
    assert sorted(first) == ["README", "main.cf", "recipients", "transport"]
    assert first == second


def test_without_lmtp_the_command_names_the_key(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Postfix hands mail over LMTP: with [smtp].lmtp false the command
    stops with one line that names the key, and writes nothing."""
    output = tmp_path / "out"
    assert mailflow(["postfix", "--output", str(output), "--config", str(write_config())]) == 78
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "[smtp].lmtp = true" in error
    assert not output.exists()


@pytest.mark.parametrize(
    "addresses",
    [
        "",
        '[addresses]\nhelp = "mail.help"\n',
        '[addresses]\nsubmit = "mailflow+submit"\nactions = "mailflow+actions"\n',
    ],
)
def test_the_maps_accept_exactly_what_mailflow_accepts(
    write_config: Callable[..., Path], addresses: str
) -> None:
    """The maps' pattern and mailflow's own RCPT check agree, address by
    address: plus-tags, plus-address local parts, dots taken literally."""
    settings = load_settings(write_config(addresses), environ=LMTP)
    pattern = re.compile(address_pattern(settings), re.IGNORECASE)
    router = Router(settings.site.domain, settings.addresses, HANDLERS)
    tried = [
        f"{local}@{domain}"
        for local in (
            *("submit", "SUBMIT", "submit+x", "submitx", "xsubmit", "nobody", "help", "mailXhelp"),
            *("mail.help", "mail.help+x", "mailflow+submit", "mailflow+actions+T0k-en", "mailflow"),
            *("actions+a+b", "comment+BP-2026-0001", "postmaster", "abuse", "bounces+t", "a@b"),
        )
        for domain in ("mailflow.localhost", "mailflowXlocalhost", "mailflow.localhost.evil")
    ]
    assert {a: bool(pattern.match(a)) for a in tried} == {a: router.accepts(a) for a in tried}


def test_the_maps_hand_mail_to_the_lmtp_listener(
    write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """The transport map names [smtp].host and port; the size limit is
    [limits].max_message_bytes with room to spare."""
    settings = load_settings(write_config("[limits]\nmax_message_bytes = 60000000\n"), environ=LMTP)
    files = postfix_files(settings, tmp_path)
    rule = [line for line in files["transport"].splitlines() if line.startswith("/")]
    assert rule == [f"/{address_pattern(settings)}/ lmtp:inet:127.0.0.1:{settings.smtp.port}"]
    settings_lines = [
        line for line in files["main.cf"].splitlines() if line and not line.startswith("#")
    ]
    lines = dict(line.split(" = ", 1) for line in settings_lines)
    assert lines["relay_domains"] == "mailflow.localhost"
    assert lines["relay_recipient_maps"] == f"regexp:{tmp_path}/recipients"
    assert int(lines["message_size_limit"]) > 60_000_000
    assert int(lines["mailbox_size_limit"]) >= int(lines["message_size_limit"])


@pytest.mark.parametrize(
    ("host", "nexthop"),
    [
        ("127.0.0.1", "lmtp:inet:127.0.0.1:8025"),
        ("0.0.0.0", "lmtp:inet:127.0.0.1:8025"),
        ("::1", "lmtp:inet:[::1]:8025"),
        ("::", "lmtp:inet:[::1]:8025"),
        ("mailflow.internal", "lmtp:inet:mailflow.internal:8025"),
    ],
)
def test_the_transport_names_where_mailflow_listens(host: str, nexthop: str) -> None:
    """mailflow listening on every address is reached on loopback; an IPv6
    address is written in brackets, as Postfix wants it."""
    assert lmtp_nexthop(host, 8025) == nexthop
