"""notify/compose.py writes exactly the email package's bytes, only faster:
the same email composed both ways is the same bytes, for every shape of
body the outbox writes (base64 attachments of every length modulo a line,
text in each transfer encoding, bare CRs, headers beyond ASCII, SMTPUTF8)."""

from __future__ import annotations

import hashlib
import os
from email.message import EmailMessage
from email.policy import SMTP, SMTPUTF8

import pytest

from mailflow.notify.compose import flatten, leave_out, new_message, put_back, stored_payload


def _compose(message: EmailMessage, attachment: bytes, text: str, to: str) -> EmailMessage:
    message["From"] = "APEC MSE Best Practices <help@mailflow.localhost>"
    message["To"] = to
    message["Subject"] = "[MF-2026-0001] Práctica de microfinanzas — revisión " * 2
    message["Message-ID"] = "<1@mailflow.localhost>"
    message.set_content(text)
    message.add_alternative(f"<p>{text}</p>", subtype="html")
    message.add_attachment(
        attachment, maintype="application", subtype="pdf", filename="práctica.pdf"
    )
    message.add_attachment(b"a,b\r\n1,2\r\n", maintype="text", subtype="csv", filename="r.csv")
    for n, part in enumerate(message.walk()):
        if part.is_multipart():  # the email package draws them at random
            part.set_boundary(f"=_boundary_{n}")
    return message


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, 113, 114, 115, 300_000])
@pytest.mark.parametrize(
    "text",
    [
        "Plain ASCII text.\n",
        "Texte en français, avec des accents.\n" * 3,
        "A line far longer than any mail line may be " * 40 + "\n",
        "Mixed\r\nline\rends\n",
        "",
    ],
)
def test_the_same_bytes_as_the_email_package(size: int, text: str) -> None:
    attachment = os.urandom(size)
    ours = _compose(new_message(), attachment, text, "focal@example.org")
    theirs = _compose(EmailMessage(), attachment, text, "focal@example.org")
    assert flatten(ours) == theirs.as_bytes(policy=SMTP)


def test_a_header_parsed_once_serves_every_email_and_changes_with_none() -> None:
    """Emails share the header objects of values they have in common; one
    email changed afterwards leaves the others as they were."""
    attachment = os.urandom(100)
    first, second = (
        _compose(new_message(), attachment, "Text.\n", "focal@example.org") for _ in range(2)
    )
    assert first["From"] is second["From"]
    theirs = _compose(EmailMessage(), attachment, "Text.\n", "focal@example.org")
    assert flatten(first) == flatten(second) == theirs.as_bytes(policy=SMTP)
    text = second.get_body(("plain",))
    assert text is not None
    text.set_param("format", "flowed")
    second.replace_header("From", "Someone Else <else@example.org>")
    assert b'format="flowed"' in flatten(second)
    assert flatten(first) == theirs.as_bytes(policy=SMTP)


def test_an_address_beyond_ascii_is_written_as_smtputf8_the_same() -> None:
    attachment = os.urandom(1000)
    ours = _compose(new_message(), attachment, "Texto.\n", "josé@ejemplo.cl")
    theirs = _compose(EmailMessage(), attachment, "Texto.\n", "josé@ejemplo.cl")
    assert flatten(ours) == theirs.as_bytes(policy=SMTPUTF8)


def test_an_attachment_reads_back_as_given() -> None:
    attachment = os.urandom(10_001)
    message = _compose(new_message(), attachment, "Text.\n", "focal@example.org")
    document = next(message.iter_attachments())
    assert document.get_content() == attachment
    assert document.get_filename() == "práctica.pdf"


def test_a_body_with_bare_carriage_returns_is_written_as_the_email_package_does() -> None:
    """A part kept in 8bit as given, its line ends mixed: the one-write path
    steps aside for the email package's own."""
    body = b"line one\rline two\r\nline three\n\xe2\x82\xac\n"

    def compose(message: EmailMessage) -> EmailMessage:
        message["From"] = "help@mailflow.localhost"
        message.set_content(body, maintype="text", subtype="plain", cte="8bit")
        return message

    assert flatten(compose(new_message())) == compose(EmailMessage()).as_bytes(policy=SMTP)


@pytest.mark.parametrize("size", [0, 1, 57, 58, 300_000])
@pytest.mark.parametrize("to", ["focal@example.org", "josé@ejemplo.cl"])
def test_a_stored_file_left_out_and_put_back_is_the_email_with_it_attached(
    size: int, to: str
) -> None:
    """The outbox keeps a review email without its document's base64; put
    back as it is sent, the bytes are those of the email composed with the
    document attached (or, for a maildir, the same with every line ending
    in LF). A sender's text that spells such a line, without the process's
    random part, stays text."""
    document = os.urandom(size)
    name = hashlib.sha256(document).hexdigest()
    text = f"Summary: mailflow-stored-{'0' * 32}-{name}\n"
    whole = _compose(new_message(), document, text, to)
    stored = _compose(new_message(), document, text, to)
    pdf = next(stored.iter_attachments())
    pdf.set_payload(stored_payload(name))
    raw, places = leave_out(flatten(stored))
    assert len(raw) < 2_000 and [n for _, n in places] == [name]
    assert put_back(raw, places, {name: document}.__getitem__) == flatten(whole)
    # For a maildir: the same lines, each ending in LF.
    in_maildir = put_back(raw, places, {name: document}.__getitem__, b"\n")
    assert in_maildir == flatten(whole).replace(b"\r\n", b"\n")
