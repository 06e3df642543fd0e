"""Deliverability (SPEC section 8), over real SMTP and HTTP, on SQLite and
PostgreSQL: every email is DKIM-signed so that two independent verifiers
accept it (dkimpy, and Mail::DKIM from Debian's libmail-dkim-perl), raw
UTF-8 headers and the digest's List-Unsubscribe included; `mailflow dkim`
makes the key once and prints its DNS record; a document too large to
attach is linked from the review email, by a private link that works for
as long as the reviewer's tokens do."""

from __future__ import annotations

import base64
import hashlib
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

import dkim
import pytest
from conftest import Client, Mailbox, body_html, body_text
from cryptography.hazmat.primitives import serialization
from dkim_verifiers import dkimpy_verifies, dns_record, mail_dkim_results
from flows import ADMIN, ANA, FOCAL, click, state
from mails import PDF, reply, submission
from readers import digest_send, subscribed
from sqlalchemy import select

from bench.seed import seed_published
from mailflow.app import App
from mailflow.cli import main
from mailflow.config import Settings, load_settings
from mailflow.notify import dkim as notify_dkim
from mailflow.notify.dkim import Signer, create_key, load_key
from mailflow.store.models import OutboxMessage

SELECTOR = "mail2026"
DOMAIN = "mailflow.localhost"
JOSE = "josé@ejemplo.cl"
TITLE = "Hợp tác xã của chúng tôi"
FOCAL_POINT = f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'
SIGNING = f'[outbound]\ndkim_selector = "{SELECTOR}"\n'
# A 200 KB document against a limit of 100 KB: linked, not attached.
LINKING = "[outbound]\nmax_attachment_bytes = 102400\n"
LINKED = r"The document \((.+?)\) is too large to attach: download it here: (\S+)"
LARGE_PDF = PDF + b"%" + b"x" * 204_800 + b"\n%%EOF\n"


@pytest.fixture(scope="session")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One key for the whole session: making one takes a tenth of a second."""
    path = tmp_path_factory.mktemp("dkim") / "dkim.key"
    create_key(path)
    return path


@pytest.fixture
def config_text() -> str:
    return FOCAL_POINT + SIGNING


@pytest.fixture
def settings(
    write_config: Callable[..., Path],
    database_url: str,
    config_text: str,
    tmp_path: Path,
    dkim_key: Path,
) -> Settings:
    (tmp_path / "var").mkdir(exist_ok=True)
    shutil.copyfile(dkim_key, tmp_path / "var" / "dkim.key")
    return load_settings(write_config(config_text, database_url), environ={})


def maildir_files(outbox: Mailbox) -> list[Path]:
    return sorted((outbox.root / "new").iterdir())


def test_every_email_verifies_with_two_independent_dkim_verifiers(
    client: Client,
    outbox: Mailbox,
    app: App,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A case by a sender whose address needs SMTPUTF8: its emails carry the
    # title as raw UTF-8 in the header (RFC 6532).
    client.send(submission(sender=f"José <{JOSE}>", subject=TITLE), sender=JOSE)
    confirm = outbox.wait_for_mail("submission_confirm", JOSE)
    client.send(reply(confirm, JOSE), sender=JOSE)
    review = outbox.wait_for_mail("admin_review", ADMIN)
    # Small documents are still attached.
    assert [part.get_filename() for part in review.iter_attachments()] == ["seed_capital.pdf"]
    assert "download it here" not in body_text(review)
    # A digest, with List-Unsubscribe and List-Unsubscribe-Post.
    subscribed(client, outbox)
    seed_published(app, 1)
    digest_send(settings)
    digest = outbox.wait_for_mail("digest")
    record = dns_record(settings, capsys)

    files = maildir_files(outbox)
    raws = {path: path.read_bytes() for path in files}
    # Raw UTF-8 in the header (RFC 6532); a maildir file's lines end in LF.
    utf8 = [p for p, raw in raws.items() if not raw.partition(b"\n\n")[0].isascii()]
    assert utf8 and all(TITLE.encode() in raws[p] for p in utf8)
    assert [dkimpy_verifies(raw, record) for raw in raws.values()] == [True] * len(files)
    assert mail_dkim_results(files, record) == ["pass"] * len(files)

    signature = str(digest["DKIM-Signature"])
    assert f"d={DOMAIN};" in signature and f"s={SELECTOR};" in signature
    assert "a=rsa-sha256;" in signature and "c=relaxed/relaxed;" in signature
    signed = re.search(r"h=([^;]+);", signature).group(1)  # type: ignore[union-attr]
    assert {name.strip().lower() for name in signed.split(":")} >= {
        "from", "to", "subject", "date", "message-id", "mime-version", "content-type",
        "auto-submitted", "list-unsubscribe", "list-unsubscribe-post", "feedback-id",
    }  # fmt: skip

    # What both check: a changed subject breaks the signature.
    tampered = files[0].with_name("tampered")
    tampered.write_bytes(re.sub(rb"\nSubject: ", b"\nSubject: Re: ", raws[files[0]], count=1))
    assert not dkimpy_verifies(tampered.read_bytes(), record)
    assert mail_dkim_results([tampered], record) == ["fail"]
    tampered.unlink()


def test_openssl_signs_the_very_bytes_dkimpy_would(
    dkim_key: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mailflow.notify.dkim hands dkimpy's RSA step to OpenSSL: the
    signature must be the one dkimpy's own Python arithmetic makes."""
    pem = load_key(dkim_key)
    Signer(SELECTOR, "mailflow.localhost", pem)  # its key goes to OpenSSL
    private = dkim.crypto.parse_pem_private_key(pem)
    python_arithmetic = dkim.crypto.RSASSA_PKCS1_v1_5_sign

    def refused(*_: object) -> bytes:
        raise AssertionError("signed in Python, not by OpenSSL")

    monkeypatch.setattr(notify_dkim, "_PURE_PYTHON_SIGN", refused)
    for text in (b"", b"From: ana@example.org\r\n", b"x" * 100_000):
        digest = dkim.HashThrough(hashlib.sha256(text))
        assert dkim.RSASSA_PKCS1_v1_5_sign(digest, private) == python_arithmetic(digest, private)


def test_an_email_dkim_cannot_sign_fails_for_good_when_sent(app: App) -> None:
    """Emails are signed as they are sent: bytes dkimpy refuses (here, with
    no From to sign) fail for good at once, naming DKIM, instead of being
    tried again and again."""
    now = app.workflow.clock.now()
    with app.database.transaction() as session:
        row = OutboxMessage(
            created_at=now,
            recipient="ana@example.org",
            envelope_sender=f"bounces@{DOMAIN}",
            message_id="<x@mailflow.localhost>",
            subject="no sender",
            template="test",
            raw=b"To: ana@example.org\r\nSubject: no sender\r\n\r\nText.\r\n",
            next_attempt_at=now,
        )
        session.add(row)
    assert app.drain_outbox() == 0
    with app.database.transaction() as session:
        failed = session.scalars(
            select(OutboxMessage).where(OutboxMessage.template == "test")
        ).one()
        assert failed.failed_at is not None and failed.sent_at is None
        assert "DKIM could not sign this email" in (failed.last_error or "")


def test_mailflow_dkim_makes_the_key_once_and_prints_its_record(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unsigned = write_config()
    assert main(["dkim", "--config", str(unsigned)]) == 78
    error = capsys.readouterr().err
    assert "[outbound] dkim_selector is empty" in error and "var/dkim.key" in error
    assert len(error.strip().splitlines()) == 1

    config = write_config(SIGNING + 'dkim_key_file = "keys/k.pem"\n')
    key_file = tmp_path / "keys" / "k.pem"
    assert main(["dkim", "--config", str(config)]) == 0
    record = capsys.readouterr().out.strip()
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = serialization.load_pem_private_key(key_file.read_bytes(), password=None)
    assert key.key_size == 2048  # type: ignore[union-attr]
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert record.startswith(f"{SELECTOR}._domainkey.{DOMAIN} IN TXT ")
    strings = re.findall(r'"([^"]*)"', record)
    assert len(strings) > 1 and all(len(s) <= 255 for s in strings)
    value = "".join(strings)
    assert value.startswith("v=DKIM1; k=rsa; p=")
    assert base64.b64decode(value.partition("p=")[2]) == public

    made = key_file.read_bytes()
    assert main(["dkim", "--config", str(config)]) == 0
    assert capsys.readouterr().out.strip() == record
    assert key_file.read_bytes() == made


def download(settings: Settings, link: str) -> tuple[int, dict[str, str], bytes]:
    url = f"http://127.0.0.1:{settings.archive.http_port}{urlsplit(link).path}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def document_link(mail: EmailMessage) -> str:
    text = body_text(mail)
    found = re.search(LINKED, text)
    assert found, text
    assert found.group(1) == "0.2 MB"
    assert f'<a href="{found.group(2)}">download it here</a>' in body_html(mail)
    return found.group(2)


@pytest.mark.parametrize("config_text", [FOCAL_POINT + LINKING], ids=["100 KB limit"])
def test_a_document_too_large_to_attach_is_linked_for_as_long_as_the_review(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    client.send(submission(attachment=("big report.pdf", LARGE_PDF, "application/pdf")))
    client.send(reply(outbox.wait_for_mail("submission_confirm", ANA), ANA))
    review = outbox.wait_for_mail("admin_review", ADMIN)
    assert list(review.iter_attachments()) == []
    link = document_link(review)
    assert link.startswith(settings.site.base_url + "/documents/")

    for _ in range(2):  # not spent by a download
        status, headers, content = download(settings, link)
        assert (status, content) == (200, LARGE_PDF)
        assert headers["Content-Type"] == "application/pdf"
        assert headers["Content-Disposition"] == (
            "attachment; filename=\"big_report.pdf\"; filename*=UTF-8''big_report.pdf"
        )
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "private, no-store"
        assert headers["Referrer-Policy"] == "no-referrer"

    made_up = link[:-4] + ("aaaa" if not link.endswith("aaaa") else "bbbb")
    assert download(settings, made_up)[0] == 404
    action_token = re.search(r"actions\+(\w+)@", str(review["Reply-To"])).group(1)  # type: ignore[union-attr]
    assert download(settings, "/documents/" + action_token)[0] == 404  # another kind

    click(client, review, "Approve", ADMIN)
    endorse = outbox.wait_for_mail("focal_review", FOCAL)
    assert state(app) == "focal_review"
    assert download(settings, link)[0] == 404  # the case left the stage
    focal_link = document_link(endorse)
    assert focal_link != link
    assert download(settings, focal_link)[:3:2] == (200, LARGE_PDF)


def test_mailflow_dkim_names_the_key_when_its_folder_cannot_be_written(
    write_config: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A key file whose folder cannot be made (here under a file; on a
    server, a relative path resolved under /etc) is one line naming the
    key, exit 78, not a traceback."""
    (tmp_path / "etc").write_text("a file, not a folder")
    config = write_config(SIGNING + 'dkim_key_file = "etc/keys/dkim.key"\n')
    assert main(["dkim", "--config", str(config)]) == 78
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert "[outbound] dkim_key_file" in error and "etc/keys/dkim.key" in error
