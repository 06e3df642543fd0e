"""Messages as people write them, for the tests."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

DOMAIN = "mailflow.localhost"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"

FORM = """Kind: Best practice            (or: Experience)
Economy: Chile
Priority area: Access to Financial Services
Organization: SERCOTEC
Summary: Seed capital gives micro entrepreneurs a non-reimbursable
  first funding, with technical assistance in the first year.
Second contact: Luis Rojas <luis@example.org>   (optional)
"""


def address(local: str) -> str:
    return f"{local}@{DOMAIN}"


def message(
    sender: str,
    to: str,
    subject: str,
    body: str,
    attachment: tuple[str, bytes, str] | None = None,
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain="example.org")
    for name, value in (headers or {}).items():
        mail[name] = value
    mail.set_content(body)
    if attachment is not None:
        filename, content, content_type = attachment
        maintype, _, subtype = content_type.partition("/")
        mail.add_attachment(content, maintype=maintype, subtype=subtype, filename=filename)
    return mail


def submission(
    sender: str = "Ana Perez <ana@example.org>",
    subject: str = "Seed capital for micro entrepreneurs",
    body: str = FORM,
    attachment: tuple[str, bytes, str] | None = ("seed capital.pdf", PDF, "application/pdf"),
    headers: dict[str, str] | None = None,
) -> EmailMessage:
    return message(sender, address("submit"), subject, body, attachment, headers)


def reply(
    original: EmailMessage,
    sender: str,
    body: str = "",
    attachment: tuple[str, bytes, str] | None = None,
) -> EmailMessage:
    """What a mail client sends when a person presses Reply."""
    mail = message(
        sender,
        str(original["Reply-To"] or original["From"]),
        "Re: " + str(original["Subject"]),
        body + "\n\n> quoted text\n",
        attachment,
    )
    mail["In-Reply-To"] = str(original["Message-ID"])
    mail["References"] = str(original["Message-ID"])
    return mail
