"""mailflow's own mail through the Postfix in front (SPEC section 8,
"DKIM" and "Delivery failures"), as deploy/README.md sets it up: mailflow
relays to Postfix on loopback (`[outbound].transport = "smtp"`), and
Postfix delivers to the recipients' servers.

The private Postfix (tests/postfix_server.py) is fed with `mailflow
postfix` like the one of test_postfix.py; here 127.0.0.1 is in its
`mynetworks`, as on an operator's machine, so mailflow may relay anywhere.
Its `relayhost` is the recipients' server of tests/relay.py, which writes
what Postfix delivers into the test's maildir: the bytes read are the bytes
a recipient gets. Postfix checks each recipient with that server before it
answers RCPT (`reject_unverified_recipient`), so a mailbox that is gone is
refused while mailflow is still connected. SQLite only: Postfix and the
signatures, not the database, are under test.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import Client, Mailbox, free_port, wait_until
from dkim_verifiers import dkimpy_verifies, dns_record, mail_dkim_results
from flows import FOCAL, click
from mails import reply, submission
from postfix_server import PostfixServer, postfix_running
from relay import Relay, relay_running
from sqlalchemy import select

from mailflow.app import App
from mailflow.cli import main
from mailflow.config import Settings, load_settings
from mailflow.notify.dkim import create_key
from mailflow.store.models import OutboxMessage

# One worker starts the private servers once for all Postfix tests.
pytestmark = pytest.mark.xdist_group("postfix")

ANA = "ana@example.org"
# Not at [site].domain: Postfix in front refuses every address there that
# is not one of mailflow's own (relay_recipient_maps).
ADMIN = "editor@example.org"
TITLE = "Hợp tác xã: seed capital for micro entrepreneurs"


@pytest.fixture(scope="session")
def recipients_server() -> Iterator[tuple[Relay, int]]:
    with relay_running() as running:
        yield running


@pytest.fixture(scope="session")
def postfix(recipients_server: tuple[Relay, int]) -> Iterator[PostfixServer]:
    """Loopback may relay (Debian's default mynetworks); everything not
    for mailflow goes to the recipients' server, once it has said at a
    probe's RCPT that it takes the address."""
    extra = (
        f"relayhost = [127.0.0.1]:{recipients_server[1]}\n"
        "smtpd_recipient_restrictions = reject_unverified_recipient\n"
        # Postfix's default is 450 (try later) even when the server said 550.
        "unverified_recipient_reject_code = 550\n"
        # The probe's answer before RCPT is answered, not a 450 "try later".
        "address_verify_poll_count = 20\n"
        "address_verify_poll_delay = 1s\n"
    )
    with postfix_running(free_port(), mynetworks="127.0.0.0/8", extra=extra) as server:
        yield server


@pytest.fixture
def settings(
    write_config: Callable[..., Path], postfix: PostfixServer, sqlite_template: Path, tmp_path: Path
) -> Settings:
    """mailflow sending through Postfix, signing with a key of its own."""
    path = write_config(
        f'[outbound]\ntransport = "smtp"\nhost = "127.0.0.1"\nport = {postfix.port}\n'
        'dkim_selector = "mail2026"\n\n'
        f'[admin]\naddresses = ["{ADMIN}"]\n\n'
        f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'
    )
    shutil.copyfile(sqlite_template, path.parent / "mailflow.db")
    create_key(tmp_path / "var" / "dkim.key")
    return load_settings(path, environ={})


@pytest.fixture
def recipients(recipients_server: tuple[Relay, int], app: App) -> Relay:
    relay = recipients_server[0]
    relay.start(app.settings.outbound.maildir)
    return relay


def delivered_file(outbox: Mailbox, mail: EmailMessage) -> Path:
    """The file the recipients' server wrote for ``mail``."""
    header = re.compile(
        rb"^Message-ID: " + re.escape(mail["Message-ID"].encode()) + rb"\r?$", re.I | re.M
    )
    [path] = [path for path in (outbox.root / "new").iterdir() if header.search(path.read_bytes())]
    return path


def test_mail_relayed_through_postfix_arrives_with_a_signature_two_verifiers_accept(
    service: object,
    client: Client,
    outbox: Mailbox,
    recipients: Relay,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A confirmation (text and HTML, a title in Vietnamese) and a review
    request (the document attached) leave mailflow signed, pass through
    Postfix, which adds its Received: line, and arrive with a signature
    that dkimpy and Mail::DKIM both accept against the published record."""
    client.send(submission(subject=TITLE))
    confirm = outbox.wait_for_mail("submission_confirm", ANA, timeout=30)
    client.send(reply(confirm, ANA))
    review = outbox.wait_for_mail("admin_review", ADMIN, timeout=30)
    record = dns_record(settings, capsys)

    files = [delivered_file(outbox, confirm), delivered_file(outbox, review)]
    raws = [path.read_bytes() for path in files]
    assert all(re.search(rb"\nReceived: from [^\n]+\n\s+by postfix\.test ", raw) for raw in raws)
    assert [part.get_filename() for part in review.iter_attachments()] == ["seed_capital.pdf"]
    assert [dkimpy_verifies(raw, record) for raw in raws] == [True, True]
    assert mail_dkim_results(files, record) == ["pass", "pass"]
    assert "d=mailflow.localhost;" in str(review["DKIM-Signature"])


def test_a_recipient_postfix_refuses_at_rcpt_fails_at_once_and_is_not_retried(
    service: object,
    app: App,
    client: Client,
    outbox: Mailbox,
    recipients: Relay,
    postfix: PostfixServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The focal point's mailbox is gone: Postfix refuses the request to
    endorse with a 550 at RCPT. mailflow fails it for good at once (no
    retry, no bounce queued in Postfix), `mailflow outbox --failed` lists
    it with Postfix's reply, and the administrators are told."""
    recipients.gone = {FOCAL}
    client.send(submission())
    client.send(reply(outbox.wait_for_mail("submission_confirm", ANA, timeout=30), ANA))
    click(client, outbox.wait_for_mail("admin_review", ADMIN, timeout=30), "Approve", ADMIN)

    told = outbox.wait_for_mail("delivery_failed", ADMIN, timeout=30)
    assert FOCAL in str(told.get_body(preferencelist=("plain",)))
    with app.database.reading() as session:
        [failed] = session.scalars(select(OutboxMessage).where(OutboxMessage.recipient == FOCAL))
    assert failed.failed_at is not None and failed.attempts == 1
    assert failed.last_error is not None and failed.last_error.startswith("550 ")
    assert "Recipient address rejected" in failed.last_error

    capsys.readouterr()
    assert main(["outbox", "--failed", "--config", str(app.settings.source)]) == 0
    listed = capsys.readouterr().out
    assert f"{failed.id}  to {FOCAL}  focal_review" in listed and "550 " in listed

    assert app.drain_outbox() == 0  # nothing is tried again
    with app.database.reading() as session:
        assert session.get(OutboxMessage, failed.id).attempts == 1  # type: ignore[union-attr]
    wait_until(lambda: postfix.queue() == [], 10, "an empty Postfix queue: nothing bounced")
    assert not outbox.to(FOCAL)
