"""Tokens and identity (issue 11, torture suite), plus the privacy grep:
the secrets of action links are long, random, stored only as digests, single
use, bound to their person and case, expiring, and unguessable; they never
reach the archive or the log; attacker text never becomes a header of our
mail; tricky From headers never pass for the administrator or a focal point;
the archive shows no address and no mail internals. Everything goes over
real SMTP into the running service, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import logging
import os
import random
import re
import smtplib
import time
import urllib.request
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from conftest import Client, Mailbox, body_text, headline, wait_until
from flows import ADMIN, ANA, FOCAL, click, links, state, submitted
from mails import FORM, PDF, address, message, reply, submission
from sqlalchemy import func, select, text

from mailflow.app import App, Service, build
from mailflow.cli import main
from mailflow.clock import FixedClock
from mailflow.config import Settings
from mailflow.store.models import Case, CaseEvent, InboundMessage, OutboxMessage, Token

pytestmark = pytest.mark.torture

EVIL = "evil@example.org"
GUESSER = "guesser@example.net"
BOB = "bob@example.org"
LUIS = "luis@example.org"  # the second contact of the FORM
SECRET = re.compile(r"actions\+([a-z2-7]+)@mailflow\.localhost")
CHANGED_NOTHING = "Your message changed nothing"
# What `mailflow run` logs (cli.main quiets these libraries the same way).
QUIET_LOGGERS = {
    "mail.log": logging.WARNING,
    "mailparser": logging.ERROR,
    "alembic": logging.WARNING,
    "apscheduler": logging.WARNING,
}


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'


# -- reading what mailflow sent and stored --------------------------------------


def readable(mail: EmailMessage) -> str:
    """Every header and every text part, decoded, as a person would see them."""
    found = [f"{name}: {value}" for name, value in mail.items()]
    found += [
        str(part.get_content())
        for part in mail.walk()
        if part.get_content_maintype() == "text" and not part.is_multipart()
    ]
    return "\n".join(found)


def secrets_in(mails: Iterable[EmailMessage]) -> set[str]:
    return {secret for mail in mails for secret in SECRET.findall(readable(mail))}


def forms_of(secret: str) -> list[str]:
    """The ways a secret could sit in storage: as written, upper case, its
    raw bytes in hex and in base64."""
    raw = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    return [secret, secret.upper(), raw.hex(), base64.b64encode(raw).decode().rstrip("=")]


def link(mail: EmailMessage, label: str) -> tuple[str, str, str]:
    """(address, subject, body) of a button, as a mail client opens it."""
    url = urlsplit(links(mail)[label])
    query = parse_qs(url.query)
    return unquote(url.path), query["subject"][0], query.get("body", [""])[0]


def raw_mail(
    from_header: str,
    to: str,
    subject: str,
    body: str,
    headers: dict[str, str] | None = None,
) -> bytes:
    """A message written byte by byte, so that hostile headers reach the
    service exactly as an attacker writes them."""
    lines = [
        f"From: {from_header}",
        f"To: {to}",
        f"Subject: {subject}",
        f"Message-ID: {make_msgid(domain='example.org')}",
        f"Date: {format_datetime(datetime.now(UTC))}",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
    ]
    body = body.replace("\r\n", "\n").replace("\n", "\r\n")  # a bare CR stays bare
    return ("\r\n".join(lines) + "\r\n\r\n" + body + "\r\n").encode()


def click_from(
    client: Client, mail: EmailMessage, label: str, from_header: str, envelope: str
) -> None:
    """Press a button of someone else's email with a From of one's choosing."""
    to, subject, body = link(mail, label)
    client.send(raw_mail(from_header, to, subject, body), sender=envelope, to=[to])


def settle(app: App, timeout: float = 30) -> None:
    """Wait until every message is processed and every email written."""

    def done() -> bool:
        if app.spool.pending() or any(app.spool.cur.iterdir()):
            return False
        with app.database.transaction() as session:
            unsent = session.scalar(
                select(func.count(OutboxMessage.id)).where(
                    OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None)
                )
            )
        return unsent == 0

    wait_until(done, timeout, "the service to settle")


def history(app: App, case_id: str = "BP-2026-0001") -> list[tuple[str, str, str | None, str]]:
    """(event, actor, to_state, note) of each history row, oldest first."""
    with app.database.transaction() as session:
        case = session.scalar(select(Case).where(Case.public_id == case_id))
        assert case is not None
        rows = session.scalars(
            select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
        )
        return [(e.event, e.actor, e.to_state, e.note) for e in rows]


def moves(app: App, case_id: str = "BP-2026-0001") -> list[str]:
    return [
        f"{event} by {actor}" for event, actor, to_state, _ in history(app, case_id) if to_state
    ]


def tokens_used(app: App) -> list[tuple[str, str]]:
    """(action, person) of every spent token."""
    with app.database.transaction() as session:
        return [
            (t.action, t.person)
            for t in session.scalars(select(Token).where(Token.used_at.is_not(None)))
        ]


def explanations(outbox: Mailbox, to: str) -> list[EmailMessage]:
    return outbox.of("token_refused", to)


# -- 1. format and entropy --------------------------------------------------


def test_tokens_are_long_lowercase_base32_unique_and_stored_only_as_digests(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Every actions+ secret of a review email (and of 100 subscription
    confirmations) is lower-case base32 of at least 128 bits, no two are
    equal, and no column of the tokens table holds any of them."""
    review = submitted(client, outbox)
    in_review = secrets_in([review])
    assert len(in_review) == 4  # Approve, Request changes, Reject, and the Reply-To
    assert SECRET.fullmatch(str(review["Reply-To"]))

    readers = [f"reader{n}@example.net" for n in range(100)]
    with smtplib.SMTP(client.host, client.port, timeout=30) as smtp:
        for reader in readers:
            smtp.send_message(message(reader, address("subscribe"), "Subscribe", "please"))
    settle(app, timeout=90)

    per_email = [secrets_in([mail]) for mail in outbox.messages()]
    issued = set().union(*per_email)
    assert len(issued) >= 4 + len(readers) + 2  # and Ana's confirmation and acknowledgement
    assert sum(len(found) for found in per_email) == len(issued)  # never one in two emails
    for secret in issued:
        assert re.fullmatch(r"[a-z2-7]+", secret), secret
        assert len(base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))) * 8 >= 128

    with app.database.transaction() as session:
        rows = [tuple(row) for row in session.execute(text("SELECT * FROM tokens"))]
    assert len(rows) >= len(issued)
    stored = "\n".join(" ".join(str(value) for value in row) for row in rows)
    leaked = [secret for secret in issued for form in forms_of(secret) if form in stored]
    assert leaked == []


# -- 2. single use ----------------------------------------------------------


def test_approve_clicked_twice_changes_the_case_once_and_is_explained_once(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """The first click approves; the second and third change nothing, both
    are in the history, and the administrator gets one explanation."""
    review = submitted(client, outbox)
    click(client, review, "Approve", ADMIN)
    assert state(app) == "focal_review"
    click(client, review, "Approve", ADMIN)
    click(client, review, "Approve", ADMIN)
    settle(app)

    assert state(app) == "focal_review"
    assert [m for m in moves(app) if m.startswith("approved")] == [f"approved by {ADMIN}"]
    refused = [note for event, _, _, note in history(app) if event == "action_refused"]
    assert refused == ["approve: token used", "approve: token used"]
    (told,) = explanations(outbox, ADMIN)
    assert "This link was already used" in body_text(told)
    assert "mailto:" not in body_text(told)
    assert len(outbox.to(FOCAL)) == 1  # one endorse email, not two
    approved = [m for m in outbox.to(ANA) if "Approved" in headline(m)]
    assert len(approved) == 1


# -- 3. binding -------------------------------------------------------------


def test_the_administrators_link_used_from_another_address_does_nothing(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Eve presses the administrator's Approve: refused and recorded; the
    administrator's own click still works afterwards."""
    review = submitted(client, outbox)
    click(client, review, "Approve", EVIL)
    settle(app)
    assert state(app) == "admin_review"
    assert ("action_refused", EVIL, None, "approve: token wrong_sender") in history(app)
    assert tokens_used(app) == [("confirm", ANA)]
    assert len(explanations(outbox, EVIL)) == 1
    assert outbox.to(FOCAL) == []

    click(client, review, "Approve", ADMIN)
    assert state(app) == "focal_review"


def test_a_forwarded_endorse_link_does_nothing_for_the_colleague(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """The focal point forwards the endorse email; the colleague's click is
    refused, the focal point's own click publishes."""
    click(client, submitted(client, outbox), "Approve", ADMIN)
    endorse = outbox.wait_for(1, FOCAL)[-1]
    colleague = "colleague@example.cl"
    forwarded = message(FOCAL, colleague, "Fwd: " + str(endorse["Subject"]), body_text(endorse))
    to, subject, body = link(endorse, "Endorse")
    assert to in forwarded.get_content()  # the link travels with the forward
    client.send(message(colleague, to, subject, body))
    settle(app)
    assert state(app) == "focal_review"
    assert ("action_refused", colleague, None, "endorse: token wrong_sender") in history(app)
    assert len(explanations(outbox, colleague)) == 1
    assert not any("published" in headline(m) for m in outbox.to(ANA))

    click(client, endorse, "Endorse", FOCAL)
    assert state(app) == "published"


def test_a_token_quoted_in_a_reply_all_to_our_other_addresses_acts_for_nobody(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """The administrator replies to all, but only help@ and submit@ are
    addressed: the body starts with "approve" and quotes every link of the
    review email; actions are read from the plus-address only."""
    review = submitted(client, outbox)
    quoted = "\n".join("> " + line for line in body_text(review).splitlines())
    approve_to, _, _ = link(review, "Approve")
    body = f"approve\n\nApprove: mailto:{approve_to}\n{review['Reply-To']}\n\n{quoted}\n"
    headers = {
        "Cc": address("submit"),
        "In-Reply-To": str(review["Message-ID"]),
        "References": str(review["Message-ID"]),
    }
    mail = raw_mail(ADMIN, address("help"), "Re: " + str(review["Subject"]), body, headers)
    client.send(mail, sender=ADMIN, to=[address("help"), address("submit")])
    settle(app)

    assert state(app) == "admin_review"
    assert [e for e in history(app) if e[1] == ADMIN] == []
    assert tokens_used(app) == [("confirm", ANA)]
    assert outbox.to(FOCAL) == []
    assert not any("Approved" in headline(m) for m in outbox.to(ANA))
    with app.database.transaction() as session:
        handled = session.scalars(
            select(InboundMessage.outcome).where(InboundMessage.sender == ADMIN)
        ).all()
    assert handled and all("actions" not in outcome for outcome in handled)


# -- 4. expiry --------------------------------------------------------------


def test_a_link_used_after_token_days_is_refused(settings: Settings, outbox: Mailbox) -> None:
    """With the service's clock moved: a link used a minute before
    [workflow].token_days works, one used a minute after is refused as
    expired, recorded, and explained."""
    clock = FixedClock(datetime.now(UTC))
    app = build(settings, clock=clock)
    service = Service(app)
    service.start()
    try:
        client = Client(settings)
        days = timedelta(days=settings.workflow.token_days)
        review = submitted(client, outbox)
        clock.advance(days - timedelta(minutes=1))
        click(client, review, "Approve", ADMIN)
        assert state(app) == "focal_review"
        endorse = outbox.wait_for(1, FOCAL)[-1]

        clock.advance(days + timedelta(minutes=1))
        click(client, endorse, "Endorse", FOCAL)
        settle(app)
        assert state(app) == "focal_review"
        assert ("action_refused", FOCAL, None, "endorse: token expired") in history(app)
        (told,) = explanations(outbox, FOCAL)
        assert "This link has expired" in body_text(told)
    finally:
        service.stop()


# -- 5. guessing ------------------------------------------------------------


def guesses(real: str, count: int) -> list[str]:
    """Near misses of a real secret (each letter changed, one short, one
    long), then random secrets of the same shape."""
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    near = [
        real[:i] + other + real[i + 1 :]
        for i, letter in enumerate(real)
        for other in alphabet
        if other != letter
    ]
    near += [real[:-1], real + "a", real[1:]]
    rng = random.Random(11)
    made = list(dict.fromkeys(near))
    while len(made) < count:
        made.append("".join(rng.choice(alphabet) for _ in range(len(real))))
    return made[:count]


def test_ten_thousand_guessed_tokens_change_nothing_and_are_explained_once(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """10,000 guesses over real SMTP (100 messages of 95 recipients, then 500
    messages of one), near misses of the real Approve secret first: no case,
    token or history changes, the guesser gets one explanation, and the real
    link still works. By default 2,000 on SQLite and 1,000 on PostgreSQL
    (each guess is the same one-row lookup, and the suite must stay within
    five minutes); MAILFLOW_TORTURE_TOKENS=10000 for the full count."""
    review = submitted(client, outbox)
    approve_to, subject, body = link(review, "Approve")
    real = SECRET.fullmatch(approve_to)[1]  # type: ignore[index]
    wanted = os.environ.get("MAILFLOW_TORTURE_TOKENS")
    default = 1_000 if app.database.engine.dialect.name == "postgresql" else 2_000
    total = int(wanted) if wanted else default
    guessed = guesses(real, total)
    assert real not in guessed and len(set(guessed)) == total
    settle(app)
    with app.database.transaction() as session:
        before_tokens = session.execute(select(Token.id, Token.used_at)).all()
        before_messages = session.scalar(select(func.count(InboundMessage.id)))
    before_history, before_outbox = history(app), len(outbox.messages())

    started = time.monotonic()
    in_bulk = total * 95 // 100
    batches = [guessed[i : i + 95] for i in range(0, in_bulk, 95)]
    batches += [[secret] for secret in guessed[in_bulk:]]
    with smtplib.SMTP(client.host, client.port, timeout=60) as smtp:
        for batch in batches:
            to = [f"actions+{secret}@mailflow.localhost" for secret in batch]
            smtp.sendmail(GUESSER, to, raw_mail(GUESSER, to[0], subject, body))
    sent = time.monotonic() - started

    def processed() -> bool:
        with app.database.transaction() as session:
            count = session.scalar(select(func.count(InboundMessage.id)))
        return count == (before_messages or 0) + len(batches)

    wait_until(processed, 120, "every guess processed")
    settle(app)
    elapsed = time.monotonic() - started
    print(f"\n{total:,} guesses: sent in {sent:.1f} s, processed in {elapsed:.1f} s")

    assert state(app) == "admin_review"
    with app.database.transaction() as session:
        assert session.execute(select(Token.id, Token.used_at)).all() == before_tokens
        outcomes = session.execute(
            select(InboundMessage.outcome, InboundMessage.detail).where(
                InboundMessage.sender == GUESSER
            )
        ).all()
    assert {outcome for outcome, _ in outcomes} == {"handled: actions"}
    # Every recipient was looked up on its own and refused as unknown.
    assert sum(detail.count("action refused (unknown)") for _, detail in outcomes) == total
    assert history(app) == before_history
    (told,) = explanations(outbox, GUESSER)
    assert "We do not know this link" in body_text(told)
    assert len(outbox.messages()) == before_outbox + 1
    click(client, review, "Approve", ADMIN)
    assert state(app) == "focal_review"


# -- 6. no token in the archive or the log ------------------------------------


@pytest.fixture
def debug_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """The service's log at DEBUG from before it starts, as `mailflow run -v`
    writes it."""
    quieted = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name, level in QUIET_LOGGERS.items():
        logging.getLogger(name).setLevel(level)
    caplog.set_level(logging.DEBUG)
    yield caplog
    for name, level in quieted.items():
        logging.getLogger(name).setLevel(level)


# The example form on the guide (and in the help email): nobody's address.
FORM_PLACEHOLDER = b"&lt;name@example.org&gt;"


def site_text(root: Path) -> dict[str, bytes]:
    """Every file of the site, without the guide's example form address."""
    return {
        str(p.relative_to(root)): p.read_bytes().replace(FORM_PLACEHOLDER, b"")
        for p in root.rglob("*")
        if p.is_file()
    }


def test_no_token_reaches_the_archive_or_the_log(
    debug_log: pytest.LogCaptureFixture,
    client: Client,
    outbox: Mailbox,
    app: App,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A whole flow to publication, with a refused click on the way and a
    full `mailflow archive build` at the end: no secret of any email is in
    any file of the site or in any log line."""
    review = submitted(client, outbox)
    click(client, review, "Approve", EVIL)
    click(client, review, "Approve", ADMIN)
    click(client, outbox.wait_for(1, FOCAL)[-1], "Endorse", FOCAL)
    assert state(app) == "published"
    settle(app)
    page = settings.archive.output_dir / "cases" / "BP-2026-0001" / "index.html"
    wait_until(page.exists, what="the published page")
    assert main(["archive", "build", "--config", str(settings.source)]) == 0
    capsys.readouterr()

    secrets = secrets_in(outbox.messages())
    assert len(secrets) >= 8
    site = site_text(settings.archive.output_dir)
    assert "cases/BP-2026-0001/index.html" in site
    in_site = [(s, name) for s in secrets for name, data in site.items() if s.encode() in data]
    assert in_site == []

    records = debug_log.get_records("setup") + debug_log.get_records("call")
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    log = "\n".join(formatter.format(record) for record in records)
    assert "listening for SMTP" in log  # the capture did see the service
    assert [s for s in secrets for form in forms_of(s) if form in log] == []


# -- 7. header injection ----------------------------------------------------

# Headers mailflow writes (and the maildir adds); nothing else may appear.
OUR_HEADERS = {
    "return-path",
    "delivered-to",
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "auto-submitted",
    "content-language",
    "x-auto-response-suppress",
    "x-loop",
    "feedback-id",
    "reply-to",
    "in-reply-to",
    "references",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
    "content-disposition",
    "list-unsubscribe",
    "list-unsubscribe-post",
}
INJECTION = "\r\nBcc: evil@example.org"
ENCODED = "=?utf-8?q?Seed_capital=0D=0ABcc:_x@evil.example=0D=0AX-Evil:_1?="


def header_block(raw: bytes) -> list[tuple[str, str]]:
    """(name, value) of each header line as written, unfolded."""
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0].decode("utf-8", "replace")
    fields: list[tuple[str, str]] = []
    for line in re.split(r"\r\n|\n|\r", head):
        if line[:1] in (" ", "\t") and fields:
            fields[-1] = (fields[-1][0], fields[-1][1] + line)
        else:
            name, _, value = line.partition(":")
            fields.append((name.strip().lower(), value))
    return fields


def assert_no_injection(outbox: Mailbox, intended: set[str]) -> None:
    """Every file of the outbox: only our headers, none valued by the
    attacker, no line break in a decoded subject, and one recipient each,
    one of those intended."""
    files = sorted((outbox.root / "new").iterdir())
    assert files
    recipients = set()
    for path in files:
        raw = path.read_bytes()
        fields = header_block(raw)
        names = [name for name, _ in fields]
        assert set(names) <= OUR_HEADERS, (path.name, set(names) - OUR_HEADERS)
        assert names.count("to") == 1 and names.count("delivered-to") == 1, path.name
        for name, value in fields:
            if name != "subject":
                assert "evil" not in value.lower(), (path.name, name, value)
        mail = outbox.messages()[files.index(path)]
        assert "\r" not in str(mail["Subject"]) and "\n" not in str(mail["Subject"])
        assert "bcc" not in {k.lower() for k in mail}
        assert str(mail["To"]) == str(mail["Delivered-To"]), path.name
        recipients.add(str(mail["Delivered-To"]))
    assert recipients <= intended and ADMIN in recipients and ANA in recipients
    assert not any("evil" in r for r in recipients)


def test_attacker_text_never_becomes_a_header_of_our_mail(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """A submission with line breaks in the Subject (a raw CR, and CR LF in
    an encoded word), in the author's display name, Name and Organization
    (raw, and as literal encoded words), then reviewer reasons with
    "\\r\\nBcc:": our emails carry no Bcc, no header of the attacker's, and
    go to exactly the people mailflow meant."""
    form = (
        FORM.replace(
            "SERCOTEC", f"SERCOTEC\rBcc: evil@example.org\n  {ENCODED.replace('Seed', 'Org')}"
        )
        + f"Name: Ana\rBcc: evil@example.org\n  {ENCODED.replace('Seed', 'Name')}\n"
    )
    raw = raw_mail(
        f"=?utf-8?q?Ana=0D=0ABcc=3A_evil=40example.org?= <{ANA}>",
        address("submit"),
        "Seed capital =?utf-8?q?for=0D=0ABcc=3A_evil=40example.org?= micro\rBcc: evil@example.org",
        form,
    )
    raw = raw.replace(b"Content-Type: text/plain", b"Content-Type: multipart/mixed; boundary=b")
    head, _, body = raw.partition(b"\r\n\r\n")
    document = base64.encodebytes(PDF).replace(b"\n", b"\r\n")
    raw = head + (
        b"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        + body
        + b"--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b'Content-Disposition: attachment; filename="x.pdf"\r\n\r\n' + document + b"--b--\r\n"
    )
    client.send(raw, sender=ANA, to=[address("submit")])
    confirm = outbox.wait_for(1, ANA)[-1]
    client.send(reply(confirm, ANA))
    review = outbox.wait_for(1, ADMIN)[-1]
    # The attacker's words did reach the subject, as text on one line.
    assert "Seed capital for Bcc" in headline(review)
    click(client, review, "Approve", ADMIN, "Fine." + INJECTION)
    click(client, outbox.wait_for(1, FOCAL)[-1], "Request changes", FOCAL, "Shorter." + INJECTION)
    assert state(app) == "changes_requested"
    settle(app)
    asked = [m for m in outbox.to(ANA) if "Please change" in headline(m)][-1]
    assert "Bcc: evil@example.org" in body_text(asked)  # the reason, as text of the body

    assert_no_injection(outbox, {ANA, ADMIN, FOCAL})


@pytest.mark.parametrize("where", ["Title line", "doubly encoded Subject"])
def test_an_encoded_word_in_the_title_never_becomes_a_header(
    client: Client, outbox: Mailbox, app: App, where: str
) -> None:
    """A title that is itself an encoded word whose decoded text holds
    CR LF Bcc: (from the Title: line, which is body text, or from a Subject
    encoded twice): it must stay text in our subjects."""
    if where == "Title line":
        raw = submission(body=f"Title: {ENCODED}\n" + FORM).as_bytes(policy=SMTP)
    else:
        twice = base64.b64encode(ENCODED.encode())
        raw = (
            submission(subject="Placeholder")
            .as_bytes(policy=SMTP)
            .replace(b"Subject: Placeholder", b"Subject: =?utf-8?b?" + twice + b"?=")
        )
    client.send(raw, sender=ANA, to=[address("submit")])
    client.send(reply(outbox.wait_for(1, ANA)[-1], ANA))
    outbox.wait_for(1, ADMIN)
    settle(app)
    assert_no_injection(outbox, {ANA, ADMIN, FOCAL})


# -- 8. address-parsing traps -------------------------------------------------


def traps_for(person: str) -> list[str]:
    """From headers that mention ``person`` but do not name them as the
    one mailbox of the message."""
    local, _, domain = person.partition("@")
    return [
        f'"{person}" <{EVIL}>',
        f"{EVIL} <{person}>",
        f"{person} <{EVIL}>",
        f"{person}@evil.example.org",
        f"{local}@{domain}.evil.example.org",
        f'"{person}"@evil.example.org',
        f"{EVIL} ({person})",
        f"({person}) {EVIL}",
        f'"{person}": {EVIL};',
        f"Team: {EVIL}, {person};",
        f"{person}, {EVIL}",
        f"<{EVIL}>{person}",
        f"=?utf-8?q?{person.replace('@', '=40')}?= <{EVIL}>",
        f"=?utf-8?b?{base64.b64encode(person.encode()).decode()}?=",
        f"{local}({domain})@evil.example.org",
    ]


def test_tricky_from_headers_never_pass_for_the_administrator_or_a_focal_point(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Each trap presses the real Approve (then Endorse) link with the
    attacker as envelope sender: nothing moves and no token is spent; the
    real people's clicks then work."""
    review = submitted(client, outbox)
    for trap in traps_for(ADMIN):
        click_from(client, review, "Approve", trap, EVIL)
        assert state(app) == "admin_review", trap
    assert tokens_used(app) == [("confirm", ANA)]
    click(client, review, "Approve", ADMIN)
    assert state(app) == "focal_review"

    endorse = outbox.wait_for(1, FOCAL)[-1]
    for trap in traps_for(FOCAL):
        click_from(client, endorse, "Endorse", trap, EVIL)
        assert state(app) == "focal_review", trap
    assert sorted(tokens_used(app)) == [("approve", ADMIN), ("confirm", ANA)]
    assert moves(app)[-1] == f"approved by {ADMIN}"
    with app.database.transaction() as session:
        seen = session.execute(
            select(InboundMessage.outcome, InboundMessage.detail).where(
                InboundMessage.envelope_sender == EVIL
            )
        ).all()
    # Each trap was read: refused as someone else, or kept as unreadable.
    assert len(seen) == len(traps_for(ADMIN)) + len(traps_for(FOCAL))
    for outcome, detail in seen:
        assert outcome == "unparseable" or (
            outcome == "handled: actions" and "wrong_sender" in detail
        ), (outcome, detail)
    click(client, endorse, "Endorse", FOCAL)
    assert state(app) == "published"


def test_an_empty_group_named_like_the_administrator_is_not_the_administrator(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """A group with no member names no mailbox: it cannot act."""
    review = submitted(client, outbox)
    click_from(client, review, "Approve", f"{ADMIN}:;", EVIL)
    assert state(app) == "admin_review"


# -- 9. privacy -------------------------------------------------------------

PDF_WITH_METADATA = (
    b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n"
    b"2 0 obj << /Author (Ana Perez) /Producer (Writer 7.1) /Title (Seed capital) >> endobj\n"
    b"trailer << /Root 1 0 R /Info 2 0 R >>\n%%EOF\n"
)
MAIL_INTERNALS = {
    "Received": "from mx.example.org (mx.example.org [192.0.2.1]) by mailflow.localhost",
    "Return-Path": f"<{ANA}>",
    "Delivered-To": address("submit"),
    "X-Loop": "lists@example.org",
}


def asking(outbox: Mailbox, person: str, template: str, case_id: str) -> EmailMessage:
    """The newest review email of ``template`` about ``case_id`` to ``person``."""
    found = wait_until(
        lambda: [m for m in outbox.of(template, person) if f"[{case_id}]" in str(m["Subject"])],
        what=f"{template} of {case_id} to {person}",
    )
    return found[-1]


def fetch(settings: Settings, path: str) -> bytes:
    url = f"http://127.0.0.1:{settings.archive.http_port}/{path.lstrip('/')}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return bytes(response.read())


def test_the_archive_shows_no_address_no_mail_internals_no_token_and_safe_file_names(
    client: Client,
    outbox: Mailbox,
    app: App,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Two cases published (documents named ../../etc/passwd.pdf and
    C:\\evil\\x.pdf, with metadata), an approved comment, then a full
    rebuild: no participant's address, no "@example.org", no mail header
    name, no token anywhere in the site; each document is served byte for
    byte under a safe name inside its case's folder."""
    names = {"BP-2026-0001": "../../etc/passwd.pdf", "BP-2026-0002": "C:\\evil\\x.pdf"}
    first = submission(
        attachment=(names["BP-2026-0001"], PDF_WITH_METADATA, "application/pdf"),
        headers=MAIL_INTERNALS,
    )
    client.send(first)
    client.send(reply(outbox.wait_for(1, ANA)[-1], ANA))
    click(client, outbox.wait_for(1, ADMIN)[-1], "Approve", ADMIN)
    click(client, outbox.wait_for(1, FOCAL)[-1], "Endorse", FOCAL)
    assert state(app, "BP-2026-0001") == "published"

    second = submission(
        subject="Mentoring circles",
        attachment=(names["BP-2026-0002"], PDF_WITH_METADATA, "application/pdf"),
        headers=MAIL_INTERNALS,
    )
    client.send(second)
    click(client, asking(outbox, ADMIN, "admin_review", "BP-2026-0002"), "Approve", ADMIN)
    click(client, asking(outbox, FOCAL, "focal_review", "BP-2026-0002"), "Endorse", FOCAL)
    assert state(app, "BP-2026-0002") == "published"

    client.send(
        message(
            BOB,
            address("register"),
            "Register",
            "Name: Bob Lee\nEconomy: Peru\nOrganization: Coop\n",
        )
    )
    client.send(reply(outbox.wait_for(1, BOB)[-1], BOB))
    outbox.wait_for(2, BOB)
    client.send(
        message(
            f"Bob Lee <{BOB}>",
            "comment+BP-2026-0001@mailflow.localhost",
            "Comment",
            f"It worked in Peru too; write to me at {BOB}.\n\nOn Mon, 3 Nov 2026 at 10:02, "
            f"Ana <{ANA}> wrote:\n> quoted\n",
        )
    )
    comment_review = wait_until(
        lambda: [m for m in outbox.to(ADMIN) if "comment" in headline(m).lower()],
        what="the comment review",
    )[-1]
    click(client, comment_review, "Approve", ADMIN)
    assert state(app, "CM-2026-0001") == "published"
    settle(app)
    root = settings.archive.output_dir
    page = root / "cases" / "BP-2026-0001" / "index.html"
    wait_until(lambda: page.exists() and "Bob Lee" in page.read_text(), what="the comment")
    assert main(["archive", "build", "--config", str(settings.source)]) == 0
    capsys.readouterr()

    site = site_text(root)
    needles = [ANA, LUIS, BOB, FOCAL, ADMIN, "@example.org"]
    needles += ["Received:", "X-Loop", "Delivered-To", "Return-Path", "mx.example.org"]
    needles += sorted(secrets_in(outbox.messages()))
    found = [
        (needle, name)
        for name, data in site.items()
        for needle in needles
        if needle.lower().encode() in data.lower()
    ]
    assert found == []
    assert "It worked in Peru too" in page.read_text()  # the grep read the comment's page

    for case_id in names:
        folder = root / "cases" / case_id
        files = sorted(p.name for p in folder.iterdir() if p.is_file())
        documents = [name for name in files if name != "index.html"]
        assert len(documents) == 1, files
        assert re.fullmatch(r"[A-Za-z0-9_-]+\.pdf", documents[0]), documents
        html = (folder / "index.html").read_text()
        assert f'href="{documents[0]}"' in html
        assert fetch(settings, f"/cases/{case_id}/{documents[0]}") == PDF_WITH_METADATA
    strays = [
        p
        for p in tmp_path.rglob("*")
        if p.name in ("passwd.pdf", "x.pdf") and p.parent.parent != root / "cases"
    ]
    assert strays == []
    assert not (tmp_path / "etc").exists() and not (root / "etc").exists()
