"""The guide at /guide/ (SPEC section 5): how a newcomer takes part, with
this configuration's addresses and limits and the funded internship
places left; and the link to it in every email that lists what to fix.
Real SMTP into the running service and pages from its web server, on
SQLite and PostgreSQL."""

from __future__ import annotations

import re
from email.message import EmailMessage

import pytest
from conftest import Client, Mailbox, body_html, body_text, wait_until
from flows import ADMIN, FOCAL, click, links, published, state
from mails import address, message, reply, submission
from test_archive import fetch, parse_html

from mailflow.app import App
from mailflow.cli import main
from mailflow.config import Settings
from mailflow.vocab import AREAS

ROSA = "rosa@example.org"  # from Peru: travel-eligible
GUIDE = "http://127.0.0.1:8080/guide/"  # [site].base_url's default


@pytest.fixture
def config_text() -> str:
    return (
        f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n\n'
        "[internships]\nfunded_cap = 2\n\n"
        "[limits]\nmax_attachment_bytes = 5242880\n"
    )


def guide_text(settings: Settings) -> str:
    """The guide as a reader sees it: the text of its main part, on one line."""
    content, headers = fetch(settings, "guide/")
    assert headers.get_content_type() == "text/html"
    main_part = parse_html(content).find(".//main")
    return " ".join("".join(main_part.itertext()).split())


def test_the_guide_tells_a_newcomer_how_to_take_part(service: object, settings: Settings) -> None:
    """What a best practice and an experience are, the six areas each with
    its line and a link to its page, the second contact, the document's
    formats and this configuration's size limit, the form, how review
    works, the addresses to write to, and the funded places left."""
    page = settings.archive.output_dir / "guide" / "index.html"
    wait_until(page.exists, what="the guide")
    text = guide_text(settings)
    assert "A policy, programme or initiative that has proven successful" in text
    assert "successful or not, whose lessons are worth sharing" in text
    for area in AREAS:
        assert re.search(rf"{area.name}: [A-Z][^.]+\.", text), area.name
    hrefs = re.findall(r'<a href="\.\./areas/([a-z-]+)/">', page.read_text())
    assert hrefs == [area.slug for area in AREAS]
    assert "Second contact Optional: another person who knows the case" in text
    assert "One file: PDF, DOCX, DOC, ODT, RTF or TXT, at most 5 MB." in text
    assert "Priority area: 1 Organization: Your organization" in text  # the help email's form
    assert "The administrator checks" in text and "The focal point of your economy" in text
    assert "Changes requested" in text and "Withdrawn" in text
    for local in ("submit", "status", "internship", "help", "register"):
        assert address(local) in text
    assert "comment+BP-2026-0001@mailflow.localhost" in text
    assert "2 of 2 funded places are left." in text
    assert "Papua New Guinea" in text and "Japan" not in text  # the travel-eligible only

    index, _ = fetch(settings, "index.html")
    assert b'<a href="guide/">How to take part</a>' in index  # the navigation
    assert index.count(b'href="guide/"') == 2  # and the footer


def test_a_funded_acceptance_rewrites_the_guide_with_one_place_fewer(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    """Accepting a funded internship takes a place: the running service
    rewrites the guide, and a full rebuild gives the same page."""
    guide = settings.archive.output_dir / "guide" / "index.html"
    case_id = published(client, outbox, app)
    assert "2 of 2 funded places are left." in guide_text(settings)

    application = "Name: Rosa Diaz\nEconomy: Peru\nMotivation: I run a bakery.\n"
    client.send(
        message(
            ROSA,
            address("internship"),
            f"Internship application: {case_id}",
            f"Case: {case_id}\n{application}Preferred dates: March 2027\n",
        )
    )
    client.send(reply(outbox.wait_for(1, ROSA)[-1], ROSA))  # confirms her address
    click(client, _mail_with(outbox, ADMIN, "Approve", "IN-2026-0001"), "Approve", ADMIN)
    click(client, _mail_with(outbox, FOCAL, "Accept", "IN-2026-0001"), "Accept", FOCAL)
    assert state(app, "IN-2026-0001") == "accepted"

    wait_until(lambda: "1 of 2</strong> funded place is left." in guide.read_text(), what="guide")
    assert "1 of 2 funded place is left." in guide_text(settings)
    rewritten = guide.read_bytes()
    assert main(["archive", "build", "--config", str(settings.source)]) == 0
    assert guide.read_bytes() == rewritten


def _mail_with(outbox: Mailbox, to: str, button: str, about: str = "") -> EmailMessage:
    """The newest email to ``to`` with this button, about this case."""

    def found() -> EmailMessage | None:
        for mail in reversed(outbox.to(to)):
            if button in links(mail) and about in body_text(mail):
                return mail
        return None

    return wait_until(found, what=f"an email to {to} with {button}")  # type: ignore[no-any-return]


@pytest.mark.parametrize("where", ["submit", "register", "internship"])
def test_every_email_listing_what_to_fix_links_to_the_guide(
    client: Client, outbox: Mailbox, where: str
) -> None:
    """The list of problems ends with the guide's address, in the text part
    and as a link in the HTML part: an incomplete submission, registration
    or internship application (the first and last once the sender
    confirmed their address). It is the guide in the reader's language
    (tests/test_every_language.py for the others)."""
    sender = "ana@example.org"
    if where == "register":
        client.send(message(sender, address("register"), "Register", "Economy: Atlantis\n"))
    else:
        if where == "submit":
            client.send(submission(f"Ana Perez <{sender}>", attachment=None))
        else:
            client.send(message(sender, address("internship"), "Internship", "Economy: Chile\n"))
        client.send(reply(outbox.wait_for(1, sender)[-1], sender))  # confirms the address

    def what_to_fix() -> EmailMessage | None:
        found = [m for m in outbox.to(sender) if "is missing" in body_text(m)]
        return found[-1] if found else None

    mail = wait_until(what_to_fix, what="the email listing what to fix")
    guide = GUIDE
    assert mail["Content-Language"] == "en"
    text = " ".join(body_text(mail).split())
    assert f"What each field means, with examples: {guide}" in text.split(" --")[0]
    assert f'<a href="{guide}">{guide}</a>' in body_html(mail)


def test_the_help_email_links_to_the_guide(client: Client, outbox: Mailbox) -> None:
    """The help email's form leads to the guide; its example address is
    text in the HTML part, not a tag that hides it."""
    client.send(message("ana@example.org", address("help"), "help", ""))
    [answer] = outbox.wait_for(1, "ana@example.org")
    assert GUIDE in body_text(answer)
    html = body_html(answer)
    assert f'<a href="{GUIDE}">{GUIDE}</a>' in html
    assert "Second contact: Full Name &lt;name@example.org&gt;" in html
