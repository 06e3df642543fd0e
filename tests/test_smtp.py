"""The SMTP and LMTP ingress answers honestly (SPEC section 10): 250 only
once the message is on disk, 552 for oversize, 550 for addresses that are
not ours, 451 when the spool or the code fails."""

from __future__ import annotations

import smtplib
import socket

import pytest
from conftest import Client, Mailbox, wait_until
from mails import address, message, submission

from mailflow.app import App, Service, build
from mailflow.config import load_settings
from mailflow.errors import SpoolError
from mailflow.spool import Spool


@pytest.fixture
def config_text() -> str:
    return "[limits]\nmax_message_bytes = 200000\n"


def test_oversize_mail_is_refused_with_552(client: Client) -> None:
    """SIZE is announced in EHLO and a bigger message gets 552."""
    with smtplib.SMTP(client.host, client.port) as smtp:
        smtp.ehlo()
        assert smtp.has_extn("size") and smtp.esmtp_features["size"] == "200000"
        big = submission(attachment=("big.pdf", b"%PDF-" + b"x" * 300_000, "application/pdf"))
        with pytest.raises(smtplib.SMTPResponseException) as refused:
            smtp.sendmail("ana@example.org", [address("submit")], big.as_bytes())
    assert refused.value.smtp_code == 552


def test_foreign_and_unknown_recipients_are_refused_at_rcpt(client: Client, app: App) -> None:
    """550 for another domain (no relaying) and for a local part we do not have."""
    with smtplib.SMTP(client.host, client.port) as smtp:
        smtp.ehlo()
        smtp.mail("ana@example.org")
        code, text = smtp.rcpt("someone@example.com")
        assert code == 550 and b"Relaying denied" in text
        code, text = smtp.rcpt(address("nobody"))
        assert code == 550 and b"help@mailflow.localhost" in text
        code, _ = smtp.rcpt(address("submit"))
        assert code == 250
    assert app.spool.pending() == []


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (SpoolError(5, "spool write: [Errno 5] Input/output error"), 451),
        (SpoolError(28, "spool disk full"), 452),
    ],
)
def test_spool_failure_answers_4xx_and_nothing_is_accepted(
    client: Client, app: App, monkeypatch: pytest.MonkeyPatch, failure: SpoolError, code: int
) -> None:
    """When the message cannot be made durable the sender hears 451 (452
    for a full disk), never 250, and keeps the message to retry. (The real
    full disk and failing fsync are issue 11's torture suite.)"""

    def failing_put(self: Spool, *args: object) -> str:
        raise failure

    monkeypatch.setattr(Spool, "put", failing_put)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.send(submission())
    assert refused.value.smtp_code == code
    assert app.spool.pending() == []


def test_a_bug_answers_451_without_details(client: Client, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception is a temporary failure, not aiosmtpd's 500
    with the exception text."""

    def broken_put(self: Spool, *args: object) -> str:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(Spool, "put", broken_put)
    with pytest.raises(smtplib.SMTPDataError) as refused:
        client.send(submission())
    assert refused.value.smtp_code == 451
    assert b"secret" not in refused.value.smtp_error


def test_lmtp_answers_once_per_recipient(write_config) -> None:  # type: ignore[no-untyped-def]
    """With lmtp = true the ingress speaks LMTP and answers DATA once per
    accepted recipient (RFC 2033), as Postfix expects."""
    settings = load_settings(write_config(), environ={"MAILFLOW_SMTP_LMTP": "true"})
    service = Service(build(settings))
    service.start()
    try:
        with socket.create_connection((settings.smtp.host, settings.smtp.port), 10) as raw:
            lines = raw.makefile("rb")
            assert lines.readline().startswith(b"220")
            dialogue = [
                b"LHLO client.example.org",
                b"MAIL FROM:<ana@example.org>",
                b"RCPT TO:<" + address("help").encode() + b">",
                b"RCPT TO:<" + address("submit").encode() + b">",
                b"DATA",
            ]
            for command in dialogue:
                raw.sendall(command + b"\r\n")
                while (line := lines.readline())[3:4] == b"-":
                    pass
                assert line[:1] in (b"2", b"3"), (command, line)
            mail = message("ana@example.org", address("help"), "hi", "hello").as_bytes()
            raw.sendall(mail.replace(b"\n", b"\r\n") + b"\r\n.\r\n")
            assert [lines.readline()[:3] for _ in range(2)] == [b"250", b"250"]
        Mailbox(settings.outbound.maildir).wait_for(1, "ana@example.org")
    finally:
        service.stop()


def test_too_many_connections_hear_421_and_a_freed_place_is_taken_again(
    write_config,  # type: ignore[no-untyped-def]
) -> None:
    """Beyond [smtp].max_connections_per_client, a new connection from the
    same address gets 421 at once; when one closes, the next is served."""
    environ = {"MAILFLOW_SMTP_MAX_CONNECTIONS_PER_CLIENT": "2"}
    settings = load_settings(write_config(), environ=environ)
    service = Service(build(settings))
    service.start()
    where = (settings.smtp.host, settings.smtp.port)
    try:
        held = [socket.create_connection(where, 10) for _ in range(2)]
        for connection in held:
            assert connection.makefile("rb").readline().startswith(b"220")
        with socket.create_connection(where, 10) as refused:
            lines = refused.makefile("rb")
            assert lines.readline().startswith(b"421 4.7.0 Too many connections")
            assert lines.readline() == b""  # and closed
        held.pop().close()

        def served() -> bool:
            try:
                with smtplib.SMTP(*where, timeout=10) as smtp:
                    return smtp.noop()[0] == 250
            except smtplib.SMTPConnectError as refused:  # until the server sees the close
                assert refused.smtp_code == 421
                return False

        wait_until(served, what="the next connection to be served")
        for connection in held:
            connection.close()
    finally:
        service.stop()


def test_a_session_of_endless_noops_is_closed(client: Client) -> None:
    """NOOP restarts the idle timeout, so it is limited: the 101st in one
    session gets 421 and the connection closes."""
    with socket.create_connection((client.host, client.port), 10) as raw:
        lines = raw.makefile("rb")
        assert lines.readline().startswith(b"220")
        for _ in range(100):
            raw.sendall(b"NOOP\r\n")
            assert lines.readline().startswith(b"250")
        raw.sendall(b"NOOP\r\n")
        assert lines.readline().startswith(b"421")
        assert lines.readline() == b""
