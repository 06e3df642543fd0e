"""Subscribers who get the same digest share it (issue 23): it is composed
once, and each copy differs only in its reader's own parts, which work for
that reader alone; readers of another language get another digest; and a
copy written from the shared digest reads exactly as one composed for its
reader alone, whatever the transfer encoding of its parts. Over real SMTP,
HTTP and the outbox maildir, on SQLite and PostgreSQL."""

from __future__ import annotations

import email
import email.policy
import re
import secrets
import urllib.request
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from conftest import Client, Mailbox, body_html, body_text, wait_until
from mails import message, reply
from readers import READER, SUBSCRIBE, digest_send, subscribed
from sqlalchemy import select

from bench.seed import seed_published
from mailflow.app import App
from mailflow.config import Settings
from mailflow.digest.shared import SharedDigest
from mailflow.notify.compose import flatten
from mailflow.store.models import FocalPoint, Participant, Subscriber

OTHER = "other@example.org"
# The headers only the reader's own copy has: theirs, or the maildir's.
PERSONAL = {"to", "message-id", "list-unsubscribe", "delivered-to", "return-path"}


def secret_of(app: App, address: str) -> str:
    with app.database.reading() as session:
        found = session.scalar(select(Subscriber.secret).where(Subscriber.email == address))
    assert found is not None
    return found


def has_left(app: App, address: str) -> bool:
    with app.database.reading() as session:
        left = session.scalar(select(Subscriber.left_at).where(Subscriber.email == address))
    return left is not None


def digest_bytes(settings: Settings, address: str) -> bytes:
    """The one digest delivered to ``address``, as the maildir holds it.
    Waited for: the running service's outbox thread may have leased it
    before `digest send` drained, and be writing it still."""

    def delivered() -> list[bytes]:
        found = []
        for path in sorted((settings.outbound.maildir / "new").iterdir()):
            raw = path.read_bytes()
            parsed = email.message_from_bytes(raw, policy=email.policy.default)
            if parsed["Delivered-To"] == address and parsed["Feedback-ID"] == "digest:mailflow":
                found.append(raw)
        return found

    found = wait_until(delivered, 15, f"the digest to {address}")
    assert len(found) == 1, f"{len(found)} digests to {address}"
    return found[0]


def without_secret(raw: bytes, secret: str) -> tuple[list[tuple[str, str]], bytes]:
    """The header fields and the body of ``raw`` as any reader's copy
    would have them: the reader's secret replaced, quoted-printable's soft
    line breaks joined (where a line breaks depends on length only, so the
    secret may be cut in two, at the same place in every copy)."""
    head, _, body = raw.partition(b"\n\n")  # a maildir file: lines end in LF
    unfolded = re.sub(rb"\n(?=[ \t])", b"", head).decode("ascii")
    fields = [
        (name.lower(), value.strip().replace(secret, "SECRET"))
        for name, _, value in (line.partition(":") for line in unfolded.split("\n"))
    ]
    joined = body.replace(b"=\n", b"").replace(secret.encode(), b"SECRET")
    return fields, joined


def test_readers_of_one_digest_get_the_same_bytes_but_their_own_unsubscribe_parts(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    subscribed(client, outbox, READER)
    subscribed(client, outbox, OTHER)
    seed_published(app, 3, title=lambda n: f"Seed capital for micro entrepreneurs, part {n}")
    digest_send(settings)
    mine, theirs = digest_bytes(settings, READER), digest_bytes(settings, OTHER)
    my_secret, their_secret = secret_of(app, READER), secret_of(app, OTHER)

    my_fields, my_body = without_secret(mine, my_secret)
    their_fields, their_body = without_secret(theirs, their_secret)
    assert my_body == their_body  # the body, byte for byte, but for the secret
    assert [name for name, _ in my_fields] == [name for name, _ in their_fields]
    same = [(name, value) for name, value in my_fields if name not in PERSONAL]
    assert same == [(name, value) for name, value in their_fields if name not in PERSONAL]
    assert dict(my_fields)["list-unsubscribe"] == dict(their_fields)["list-unsubscribe"]
    assert dict(my_fields)["message-id"] != dict(their_fields)["message-id"]
    assert their_secret.encode() not in mine and my_secret.encode() not in theirs

    # Each copy's own unsubscribe parts remove its reader, and nobody else:
    # the one-click link of one, then the address in the other's text.
    copy = email.message_from_bytes(theirs, policy=email.policy.default)
    one_click = re.findall(r"<(http[^>]+)>", str(copy["List-Unsubscribe"]))[0]
    local_link = one_click.replace(settings.site.base_url.rstrip("/"), base_of(settings))
    request = urllib.request.Request(local_link, data=b"List-Unsubscribe=One-Click")
    with urllib.request.urlopen(request, timeout=10) as page:
        assert b"You are unsubscribed" in page.read()
    assert has_left(app, OTHER) and not has_left(app, READER)

    mine_read = email.message_from_bytes(mine, policy=email.policy.default)
    leave = body_text(mine_read).split("To stop, send any email to:")[1].split()[0]
    assert f'href="mailto:{leave}?subject=unsubscribe"' in body_html(mine_read)
    client.send(message(READER, leave, "unsubscribe", ""))
    wait_until(lambda: has_left(app, READER), what="the unsubscription by its address")


def base_of(settings: Settings) -> str:
    return f"http://127.0.0.1:{settings.archive.http_port}"


def subscribed_reading(client: Client, outbox: Mailbox, address: str, language: str) -> None:
    """Subscribe with a Language: line, which sets what they read."""
    client.send(message(address, SUBSCRIBE, "subscribe", f"Language: {language}\n"))
    client.send(reply(outbox.wait_for(1, address)[-1], address))
    outbox.wait_for(2, address)


def test_readers_of_another_language_get_another_digest(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    subscribed_reading(client, outbox, "ana@example.org", "Español")
    subscribed_reading(client, outbox, "rosa@example.org", "Español")
    subscribed(client, outbox, READER)
    seed_published(app, 2)
    digest_send(settings)

    spanish = [
        email.message_from_bytes(digest_bytes(settings, address), policy=email.policy.default)
        for address in ("ana@example.org", "rosa@example.org")
    ]
    english = email.message_from_bytes(digest_bytes(settings, READER), policy=email.policy.default)
    assert [m["Content-Language"] for m in spanish] == ["es", "es"]
    assert english["Content-Language"] == "en"
    assert spanish[0]["Subject"] == spanish[1]["Subject"] != english["Subject"]
    assert "Hello," in body_text(english)
    assert "Hello," not in body_text(spanish[0])
    assert body_text(spanish[0]).replace(secret_of(app, "ana@example.org"), "") == body_text(
        spanish[1]
    ).replace(secret_of(app, "rosa@example.org"), "")


def test_readers_the_shared_digest_cannot_be_written_for_get_theirs_all_the_same(
    app: App, settings: Settings
) -> None:
    """An address beyond ASCII (an SMTPUTF8 email) is composed on its own,
    in the same fan-out as the readers who share."""
    joined = datetime.now(UTC) - timedelta(days=1)
    with app.database.transaction() as session:
        for address in ("josé@ejemplo.cl", READER):
            session.add(
                Subscriber(
                    email=address,
                    secret=secrets.token_hex(16),
                    created_at=joined,
                    confirmed_at=joined,
                    digest_from=joined,
                )
            )
    seed_published(app, 2)
    digest_send(settings)
    for address in ("josé@ejemplo.cl", READER):
        copy = email.message_from_bytes(
            digest_bytes(settings, address), policy=email.policy.default
        )
        assert copy["To"] == address
        assert copy["Subject"] == "New in the archive: 2 cases"
        assert f"unsubscribe+{secret_of(app, address)}@" in body_text(copy)


# The text part's encoding follows what it says: short ASCII lines, short
# lines beyond ASCII, long lines, and a language of many bytes a letter.
ENCODINGS = [
    ("Tea", "en", "7bit"),
    ("Café de Olla", "en", "8bit"),
    (
        "Seed capital for micro entrepreneurs in the provinces of the north",
        "en",
        "quoted-printable",
    ),
    ("中小企业合作社的数字支付与农村电子商务培训计划", "zh-Hans", "base64"),
]


@pytest.mark.parametrize(("title", "language", "encoding"), ENCODINGS)
def test_a_shared_copy_reads_as_one_composed_for_its_reader_alone(
    app: App, title: str, language: str, encoding: str
) -> None:
    seed_published(app, 3, title=lambda n: f"{title} {n}")
    digests, outbox = app.timed.digests, app.workflow.outbox
    now = datetime.now(UTC)
    with app.database.reading() as session:
        news = digests.news_between(session, now - timedelta(days=1), now)
    address, secret = "reader.one+digests@example.org", secrets.token_hex(16)

    def compose(to: str, its_secret: str) -> EmailMessage:
        return outbox.compose(digests.digest(to, its_secret, news), language)

    shared = SharedDigest.compose(compose, app.workflow.router.domain)
    written = shared.write(address, secret)
    copy = email.message_from_bytes(written.raw, policy=email.policy.default)
    alone = email.message_from_bytes(flatten(compose(address, secret)), policy=email.policy.default)

    assert b"stand-in" not in written.raw
    assert copy["Message-ID"] == written.message_id and copy["Subject"] == shared.subject
    assert fields(copy) == fields(alone)
    copy_parts, alone_parts = list(copy.iter_parts()), list(alone.iter_parts())
    assert copy_parts[0]["Content-Transfer-Encoding"] == encoding  # the text part
    assert [fields(p) for p in copy_parts] == [fields(p) for p in alone_parts]
    for part, its_own in zip(copy_parts, alone_parts, strict=True):
        assert part.get_payload(decode=True) == its_own.get_payload(decode=True)
        assert f"unsubscribe+{secret}@" in part.get_content()


def fields(message: EmailMessage) -> list[tuple[str, str]]:
    """Every header field, but for those each composition makes anew (its
    time, its Message-ID, its MIME boundary)."""
    kept = []
    for name, value in message.items():
        if name.lower() in ("date", "message-id"):
            continue
        if name.lower() == "content-type":
            value = re.sub(r';\s*boundary="[^"]*"', "", str(value))
        kept.append((name, str(value)))
    return kept


LANGUAGES = '[site]\nlanguage = "ms"\n\n[admin]\nlanguage = "ko"\n\n' + "".join(
    f'[economies.{code}]\nlanguage = "{tag}"\n\n'
    for code, tag in (("CL", "es"), ("TH", "th"), ("VN", "vi"), ("ID", "id"))
)


@pytest.mark.parametrize("config_text", [LANGUAGES])
def test_the_languages_of_a_batch_follow_the_order_of_spec_3a(app: App) -> None:
    """One question for a batch, each reader by SPEC 3a's order:
    a Language: line, else the economy a participant is known by, else the
    one a focal point serves, else the site's; staff read the admin's."""
    now = datetime.now(UTC)
    with app.database.transaction() as session:
        session.add_all(
            [
                Participant(email="chose@example.org", language="ja", economy="CL", created_at=now),
                Participant(email="chile@example.org", economy="CL", created_at=now),
                Participant(email="served@example.org", created_at=now),
            ]
        )
        for email_, economy, state in (
            ("served@example.org", "TH", "confirmed"),
            ("focal@example.org", "VN", "invited"),
            ("focal@example.org", "ID", "confirmed"),
            ("gone@example.org", "VN", "removed"),
        ):
            session.add(
                FocalPoint(
                    economy=economy,
                    email=email_,
                    state=state,
                    added_by="test",
                    added_at=now,
                    changed_at=now,
                )
            )
    addresses = [
        "chose@example.org",
        "Chile@Example.org",
        "served@example.org",
        "focal@example.org",
        "gone@example.org",
        "admin@mailflow.localhost",
        "nobody@example.org",
    ]
    readers = app.workflow.outbox.readers
    with app.database.reading() as session:
        assert readers.of_all(session, addresses) == {
            "chose@example.org": "ja",  # their Language: line
            "Chile@Example.org": "es",  # the economy they are known by
            "served@example.org": "th",  # the economy they serve
            "focal@example.org": "vi",  # the first they serve, confirmed or not
            "gone@example.org": "ms",  # removed: the site's
            "admin@mailflow.localhost": "ko",  # staff: the admin's
            "nobody@example.org": "ms",
        }
        assert [readers.of(session, address) for address in addresses[:2]] == ["ja", "es"]
