"""Comments on published cases (SPEC section 6), over real SMTP on SQLite
and PostgreSQL: a participant writes to the case page's comment address
from an ordinary mail client; the administrator approves; the comment is on
the page (name and economy, never the address, never the quoted text), in
the next digest, and the case's author hears of it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import Client, Mailbox, body_text, headline, wait_until
from flows import ANA, FOCAL, click, published, state
from mails import message, reply, submission
from sqlalchemy import func, select

from mailflow.app import App
from mailflow.casefile import case_file, format_case
from mailflow.cli import main
from mailflow.config import Settings
from mailflow.store.models import Case

BOB = "bob@example.org"
ADMIN = "admin@mailflow.localhost"

GMAIL_REPLY = """Thank you for sharing this. In Peru we tried seed capital too,
and the technical assistance in the first year made the difference.

Bob

On Mon, 3 Nov 2026 at 10:02, APEC MSE Best Practices <
noreply@mailflow.localhost> wrote:

> Seed capital gives micro entrepreneurs a non-reimbursable first funding
> with technical assistance.
"""


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'


def registered(client: Client, outbox: Mailbox, address: str, form: str) -> None:
    """Register with one email and one reply, as a person would."""
    before = len(outbox.to(address))
    client.send(message(address, "register@mailflow.localhost", "Register", form))
    client.send(reply(outbox.wait_for(before + 1, address)[-1], address))
    outbox.wait_for(before + 2, address)


def comment(client: Client, case_id: str, body: str, sender: str = BOB) -> None:
    client.send(
        message(f"Bob Lee <{sender}>", f"comment+{case_id}@mailflow.localhost", "Re: case", body)
    )


def comments_of(app: App) -> list[Case]:
    with app.database.transaction() as session:
        return list(session.scalars(select(Case).where(Case.kind == "comment")))


@pytest.fixture
def published_case(client: Client, outbox: Mailbox, app: App) -> Iterator[str]:
    case_id = published(client, outbox, app)
    registered(client, outbox, BOB, "Name: Bob Lee\nEconomy: Peru\nOrganization: Coop\n")
    yield case_id


def test_an_approved_comment_is_on_the_page_in_the_digest_and_the_author_hears(
    client: Client, outbox: Mailbox, app: App, settings: Settings, published_case: str
) -> None:
    client.send(message("reader@example.org", "subscribe@mailflow.localhost", "subscribe", ""))
    client.send(reply(outbox.wait_for(1, "reader@example.org")[-1], "reader@example.org"))
    outbox.wait_for(2, "reader@example.org")

    comment(client, published_case, GMAIL_REPLY)
    received = outbox.wait_for(3, BOB)[-1]
    assert "check" in body_text(received).lower()
    review = wait_until(
        lambda: [m for m in outbox.to(ADMIN) if "comment" in headline(m).lower()],
        what="the administrator's review email",
    )[-1]
    assert "technical assistance in the first year" in body_text(review)
    click(client, review, "Approve", ADMIN)

    assert state(app, "CM-2026-0001") == "published"
    page = settings.archive.output_dir / "cases" / published_case / "index.html"
    wait_until(lambda: "Bob Lee" in page.read_text(), what="the comment on the page")
    html = page.read_text()
    assert "Bob Lee, Peru" in html
    assert "made the difference" in html
    assert "non-reimbursable first funding\n> " not in html and "wrote:" not in html
    assert BOB not in html and "bob@" not in html
    wait_until(
        lambda: any("comment" in headline(m).lower() for m in outbox.to(ANA)),
        what="the case's author to hear of the comment",
    )
    published_mail = outbox.wait_for(4, BOB)[-1]
    assert published_case in body_text(published_mail)

    assert main(["digest", "send", "--config", str(settings.source)]) == 0
    digest = [m for m in outbox.to("reader@example.org") if "New in" in headline(m)][-1]
    assert "1 comment" in headline(digest)
    assert "Bob Lee (Peru)" in body_text(digest)

    with app.database.transaction() as session:
        text = format_case(case_file(session, "CM-2026-0001", app.workflow.economies))
    assert f"About: {published_case}" in text
    assert "admin_review -> published" in text
    assert "Peru we tried seed capital" in text and "wrote:" not in text


@pytest.mark.parametrize("config_text", ["[comments]\nmoderation = false\n"])
def test_without_moderation_a_comment_is_on_the_page_at_once(
    client: Client, outbox: Mailbox, app: App, settings: Settings, config_text: str
) -> None:
    case_id = published(client, outbox, app, economy="Japan")  # the admin endorses for Japan
    registered(client, outbox, BOB, "Name: Bob Lee\nEconomy: Peru\nOrganization: Coop\n")
    comment(client, case_id, "Useful for our cooperative.")

    assert state(app, "CM-2026-0001") == "published"
    page = settings.archive.output_dir / "cases" / case_id / "index.html"
    wait_until(lambda: "Useful for our cooperative" in page.read_text(), what="the comment")
    with app.database.transaction() as session:
        text = format_case(case_file(session, "CM-2026-0001", app.workflow.economies))
    assert "approved" in text and "moderation is off" in text


def test_an_unregistered_commenter_confirms_first(
    client: Client, outbox: Mailbox, app: App
) -> None:
    case_id = published(client, outbox, app)
    comment(client, case_id, "A first opinion.", sender="new@example.org")
    confirm = outbox.wait_for(1, "new@example.org")[-1]
    assert "confirm" in headline(confirm).lower()
    assert state(app, "CM-2026-0001") == "pending_confirmation"
    admin_emails = len(outbox.to(ADMIN))

    client.send(reply(confirm, "new@example.org"))
    assert state(app, "CM-2026-0001") == "admin_review"
    outbox.wait_for(admin_emails + 1, ADMIN)


def test_comments_on_unknown_or_unpublished_cases_or_without_text_are_refused(
    client: Client, outbox: Mailbox, app: App, published_case: str
) -> None:
    client.send(submission(subject="Another practice"))  # from Ana, registered by now
    assert state(app, "BP-2026-0002") == "admin_review"
    sent = len(outbox.to(BOB))
    answers = []
    for case_id, body in (
        ("BP-2026-0999", "Hello"),
        ("BP-2026-0002", "Hello"),
        (published_case, "> only a quote\n> of the case\n"),
        ("", "No case ID"),
    ):
        address = (
            f"comment+{case_id}@mailflow.localhost" if case_id else "comment@mailflow.localhost"
        )
        client.send(message(BOB, address, "Comment", body))
        answers.append(body_text(outbox.wait_for(sent + len(answers) + 1, BOB)[-1]))
    assert "BP-2026-0999" in answers[0]
    assert "published" in answers[1]
    assert "quoted" in answers[2]
    assert "comment+BP-2026-0001@" in answers[3]  # how the address looks
    assert comments_of(app) == []


def test_the_administrator_can_take_a_comment_off_the_page(
    client: Client, outbox: Mailbox, app: App, settings: Settings, published_case: str
) -> None:
    comment(client, published_case, "Please remove me later.")
    assert state(app, "CM-2026-0001") == "admin_review"
    assert main(["act", "CM-2026-0001", "approve", "--config", str(settings.source)]) == 0
    page = settings.archive.output_dir / "cases" / published_case / "index.html"
    wait_until(lambda: "Please remove me later" in page.read_text(), what="the comment")

    assert main(["act", "CM-2026-0001", "unpublish", "--config", str(settings.source)]) == 0
    wait_until(lambda: "Please remove me later" not in page.read_text(), what="it to go")
    assert state(app, "CM-2026-0001") == "unpublished"


def test_cases_lists_comments_by_kind(
    client: Client,
    app: App,
    settings: Settings,
    published_case: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    comment(client, published_case, "Listed.")
    state(app, "CM-2026-0001")
    capsys.readouterr()
    assert main(["cases", "--kind", "comment", "--config", str(settings.source)]) == 0
    listed = capsys.readouterr().out
    rows = [line.split()[0] for line in listed.splitlines()[1:]]
    assert rows == ["CM-2026-0001"]
    with app.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Case)) == 2
