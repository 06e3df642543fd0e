"""The internship hand-over and the late ``Economy:`` (SPEC section 6,
issue 19), over real SMTP on SQLite and PostgreSQL.

On acceptance the host economy's focal point (none: the administrator)
gets the applicant's contact and the task of introducing them, with the
applicant as Reply-To; the applicant hears who will write to them. A
participant registered through a comment has no economy: the application
asks for it once, and any later message with an ``Economy:`` line
completes it."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from conftest import Client, Mailbox, body_html, body_text, wait_until
from flows import ADMIN, ANA, FOCAL, click, published, state
from mails import message, reply
from sqlalchemy import select
from test_internships import FORM, INTERNSHIP, KEN, ROSA, apply, registered

from mailflow.app import App
from mailflow.casefile import case_file, format_case
from mailflow.store.models import Case, Participant

BOB = "bob@example.org"
HANDOVER = "Your task: introduce the applicant"


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'


def mail_to(outbox: Mailbox, address: str, *words: str) -> EmailMessage:
    """The newest email to ``address`` whose text says all of ``words``."""

    def found() -> EmailMessage | None:
        matching = [m for m in outbox.to(address) if all(w in body_text(m) for w in words)]
        return matching[-1] if matching else None

    return wait_until(found, what=f"an email to {address} saying {words}")  # type: ignore[no-any-return]


def accepted(client: Client, outbox: Mailbox, app: App, host: str, application: str) -> None:
    """Approved by the administrator, accepted by ``host`` (the focal point,
    or the administrator where the host economy has none)."""
    review = mail_to(outbox, ADMIN, application, "Motivation")
    click(client, review, "Approve", ADMIN)
    assert state(app, application) == "host_review"
    asked = mail_to(outbox, host, application, "If you accept, we tell the applicant")
    click(client, asked, "Accept", host, "Welcome.")
    assert state(app, application) == "accepted"


def test_the_host_focal_point_is_asked_to_introduce_the_applicant(
    client: Client, outbox: Mailbox, app: App
) -> None:
    case_id = published(client, outbox, app)
    registered(client, outbox, ROSA, "Rosa Diaz <b>", "Peru")
    apply(client, ROSA, case_id, FORM.format(case_id=case_id))
    accepted(client, outbox, app, FOCAL, "IN-2026-0001")

    handover = mail_to(outbox, FOCAL, HANDOVER)
    text = body_text(handover)
    assert handover["Reply-To"] == ROSA
    assert reply(handover, FOCAL)["To"] == ROSA  # pressing Reply reaches the applicant
    for shown in (ROSA, "Rosa Diaz", "Coop", "Peru", case_id, "SERCOTEC", ANA):
        assert shown in text, shown
    assert "I run a bakery" in text and "March 2027" in text
    assert "Funding: Funded" in text
    assert "has no focal point" not in text
    assert "Rosa Diaz &lt;b&gt;" in body_html(handover)
    assert not [m for m in outbox.to(ADMIN) if HANDOVER in body_text(m)]

    news = mail_to(outbox, ROSA, "was accepted")
    said = " ".join(body_text(news).split())
    assert f"the focal point of Chile ({FOCAL}) will write to you" in said
    assert "If nobody has written to you by" in said
    assert news["Reply-To"] == ADMIN  # "reply to this email: it reaches the administrator"
    with app.database.transaction() as session:
        history = format_case(case_file(session, "IN-2026-0001", app.workflow.economies))
    assert "handed_over" in history and FOCAL in history


def test_without_a_focal_point_the_administrator_introduces_the_applicant(
    client: Client, outbox: Mailbox, app: App
) -> None:
    case_id = published(client, outbox, app, economy="Peru")  # Peru has no focal point here
    registered(client, outbox, KEN, "Ken Sato", "Japan")
    apply(client, KEN, case_id, FORM.format(case_id=case_id))
    accepted(client, outbox, app, ADMIN, "IN-2026-0001")

    handover = mail_to(outbox, ADMIN, HANDOVER)
    text = " ".join(body_text(handover).split())
    assert "Peru has no focal point, so this task comes to you as the administrator" in text
    assert handover["Reply-To"] == KEN
    assert KEN in text and "Ken Sato" in text and "Self-funded" in text
    news = mail_to(outbox, KEN, "was accepted")
    assert f"the administrator ({ADMIN}) will write to you" in " ".join(body_text(news).split())


@pytest.fixture
def commenter(client: Client, outbox: Mailbox, app: App) -> str:
    """A published case, and Bob, registered by confirming a comment on it:
    he has no economy."""
    case_id = published(client, outbox, app)
    client.send(message(BOB, f"comment+{case_id}@mailflow.localhost", "Re: case", "Useful."))
    client.send(reply(outbox.wait_for(1, BOB)[-1], BOB))  # confirms the address
    mail_to(outbox, BOB, "Thank you for your comment")
    return case_id


def asked_for_economy(outbox: Mailbox) -> EmailMessage:
    return mail_to(outbox, BOB, "IN-2026-0001", "Economy: is missing")


def review_of(outbox: Mailbox, application: str) -> EmailMessage:
    return mail_to(outbox, ADMIN, application, "Motivation")


def economies_of(app: App, application: str) -> tuple[str, str | None]:
    with app.database.transaction() as session:
        person = session.scalars(select(Participant).where(Participant.email == BOB)).one()
        case = session.scalars(select(Case).where(Case.public_id == application)).one()
        return person.economy, case.economy


def test_a_new_message_naming_no_case_gives_the_missing_economy(
    client: Client, outbox: Mailbox, app: App, commenter: str
) -> None:
    apply(client, BOB, commenter, FORM.format(case_id=commenter))
    asked_for_economy(outbox)
    client.send(message(BOB, INTERNSHIP, "My economy", "Economy: singapore\n"))
    assert state(app, "IN-2026-0001") == "admin_review"
    assert "Economy: Singapore" in body_text(review_of(outbox, "IN-2026-0001"))
    assert economies_of(app, "IN-2026-0001") == ("SG", "SG")
    with app.database.transaction() as session:
        assert session.scalars(select(Case).where(Case.kind == "internship")).all()[1:] == []


def test_applying_again_for_the_same_case_completes_the_waiting_application(
    client: Client, outbox: Mailbox, app: App, commenter: str
) -> None:
    apply(client, BOB, commenter, FORM.format(case_id=commenter))
    asked_for_economy(outbox)
    apply(client, BOB, commenter, FORM.format(case_id=commenter) + "Economy: Singapore\n")
    assert state(app, "IN-2026-0001") == "admin_review"
    review_of(outbox, "IN-2026-0001")
    with app.database.transaction() as session:
        assert session.scalars(select(Case).where(Case.kind == "internship")).all()[1:] == []


def test_the_economy_given_to_register_completes_the_application(
    client: Client, outbox: Mailbox, app: App, commenter: str
) -> None:
    apply(client, BOB, commenter, FORM.format(case_id=commenter))
    asked_for_economy(outbox)
    client.send(message(BOB, "register@mailflow.localhost", "Register", "Economy: Singapore\n"))
    assert state(app, "IN-2026-0001") == "admin_review"
    review_of(outbox, "IN-2026-0001")
    assert economies_of(app, "IN-2026-0001") == ("SG", "SG")


def test_a_second_round_for_the_economy_ends_and_never_comes_back(
    client: Client, outbox: Mailbox, app: App, commenter: str
) -> None:
    """An economy we cannot recognise is asked for again, once; the next
    reply completes the application; a later application does not ask."""
    apply(client, BOB, commenter, FORM.format(case_id=commenter))
    client.send(reply(asked_for_economy(outbox), BOB, "Economy: Atlantis"))
    again = mail_to(outbox, BOB, "IN-2026-0001", "Atlantis")
    assert state(app, "IN-2026-0001") == "incomplete"
    client.send(reply(again, BOB, "Economy: Singapore"))
    assert state(app, "IN-2026-0001") == "admin_review"
    review_of(outbox, "IN-2026-0001")

    apply(client, BOB, commenter, FORM.format(case_id=commenter))
    assert state(app, "IN-2026-0002") == "admin_review"
    assert "Economy: Singapore" in body_text(review_of(outbox, "IN-2026-0002"))
    asking = [m for m in outbox.to(BOB) if "Economy: is missing" in body_text(m)]
    assert len(asking) == 1


def test_a_different_economy_later_leaves_the_registered_one_and_is_shown(
    client: Client, outbox: Mailbox, app: App, commenter: str
) -> None:
    """Bob's economy, once known, is his: a later application naming
    another keeps it for the application only, and the administrator, who
    approves it, sees both."""
    apply(client, BOB, commenter, FORM.format(case_id=commenter) + "Economy: Singapore\n")
    assert state(app, "IN-2026-0001") == "admin_review"
    apply(client, BOB, commenter, FORM.format(case_id=commenter) + "Economy: Peru\n")
    assert state(app, "IN-2026-0002") == "admin_review"
    text = body_text(review_of(outbox, "IN-2026-0002"))
    assert "Economy: Peru (registered as Singapore)" in text
    assert economies_of(app, "IN-2026-0002") == ("SG", "PE")
