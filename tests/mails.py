"""Messages as people write them, for the tests."""

from __future__ import annotations

import re
from email.message import EmailMessage
from email.policy import SMTP
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


FORM_FIELDS = ("Kind", "Economy", "Priority area", "Organization", "Summary", "Second contact")


def filled_form(form: str, tag: str) -> str:
    """The form of the help email (in the reader's language ``tag``) as
    that reader fills it in: each label kept as the email wrote it, the
    values the language's own: an experience from Chile (as CLDR names it),
    priority area 4, by the language's own name for it."""
    from babel import Locale

    from mailflow.catalogs import locale_name
    from mailflow.vocab import AREAS
    from mailflow.words import label

    lines = form.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(label("field", "Kind", tag)))
    labels = [re.split(r"[:：]", line, maxsplit=1)[0] for line in lines[start:] if line[:1] != " "]
    written = dict(zip(FORM_FIELDS, labels[: len(FORM_FIELDS)], strict=True))
    for field in FORM_FIELDS:
        assert written[field] == label("field", field, tag), (field, written[field])
    values = {
        "Kind": label("kind", "Experience", tag),
        "Economy": Locale.parse(locale_name(tag)).territories["CL"] if tag != "en" else "Chile",
        "Priority area": label("area", AREAS[3].name, tag),
        "Organization": "SERCOTEC",
        "Summary": "Capital semilla para microempresas.",
        "Second contact": "Luis Rojas <luis@example.org>",
    }
    return "".join(f"{written[field]}: {values[field]}\n" for field in FORM_FIELDS)


def raw_mail(mail: EmailMessage, charset: str = "utf-8", **headers: str) -> bytes:
    """The message as a client sends it when it writes these headers as raw
    bytes (UTF-8, RFC 6532; or a legacy charset, undeclared)."""
    for name in headers:
        del mail[name]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    return head.encode(charset) + mail.as_bytes(policy=SMTP)
