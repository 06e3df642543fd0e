"""Out-of-office replies to review emails (SPEC section 4): never answered,
but their sender is away, and the case moves on at once."""

from __future__ import annotations

import pytest
from conftest import Client, Mailbox, body_html, body_text, purpose
from flows import ADMIN, FOCAL, click, state, submitted
from mails import message
from sqlalchemy import select

from mailflow.app import App
from mailflow.store.models import Absence, CaseEvent


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'


def at_the_focal_point(client: Client, outbox: Mailbox, app: App) -> None:
    click(client, submitted(client, outbox), "Approve", ADMIN)
    assert state(app) == "focal_review"


def auto_reply(review, sender: str, subject: str, body: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    """What a mail server's out-of-office sends back to a review email."""
    reply = message(sender, str(review["Reply-To"]), subject, body, headers=headers)
    reply["In-Reply-To"] = review["Message-ID"]
    return reply


SHAPES = {
    # Outlook / Exchange: RFC 3834's header, and its own.
    "exchange": (
        "Automatic reply: {subject}",
        {"Auto-Submitted": "auto-replied", "X-Auto-Response-Suppress": "All"},
    ),
    # Gmail's vacation responder: the original subject, RFC 3834's header.
    "gmail": ("Re: {subject}", {"Auto-Submitted": "auto-replied"}),
    # vacation(1) on a Unix mail server.
    "vacation": ("away from my mail", {"Precedence": "junk"}),
    # A client that says nothing but its subject.
    "subject only": ("Out of Office: {subject}", {}),
}


@pytest.mark.parametrize("shape", SHAPES)
def test_an_out_of_office_reply_moves_the_case_at_once_and_is_not_answered(
    client: Client, outbox: Mailbox, app: App, shape: str
) -> None:
    at_the_focal_point(client, outbox, app)
    review = outbox.wait_for_mail("focal_review", FOCAL)
    subject, headers = SHAPES[shape]
    text = "I am out of the office until 10 January 2027 with limited access to email."
    client.send(auto_reply(review, FOCAL, subject.format(subject=review["Subject"]), text, headers))
    # The administrator has it at once, told why, with the buttons to decide.
    instead = outbox.wait_for_mail("focal_review", ADMIN)
    said = " ".join(body_text(instead).split())
    assert f"is away: {FOCAL} until 10 January 2027 (from an out-of-office reply)" in said
    assert "please decide in the focal point's place" in said
    assert "Endorse" in body_html(instead)
    with app.database.transaction() as session:
        absence = session.get(Absence, FOCAL)
        assert absence is not None and f"{absence.until:%Y-%m-%d}" == "2027-01-10"
        events = [e.event for e in session.scalars(select(CaseEvent))]
        assert "away" in events
    assert outbox.of("focal_review", FOCAL) == [review]  # nothing else, no answer
    assert [m for m in outbox.to(FOCAL) if m is not review] == []
    # The administrator's endorsement publishes it.
    click(client, instead, "Endorse on behalf of Chile", ADMIN)
    assert state(app) == "published"


def test_a_person_who_replies_is_not_marked_away(client: Client, outbox: Mailbox, app: App) -> None:
    at_the_focal_point(client, outbox, app)
    review = outbox.wait_for_mail("focal_review", FOCAL)
    client.send(
        auto_reply(review, FOCAL, f"Re: {review['Subject']}", "I am out next week, sorry.", {})
    )
    outbox.wait_for_mail("reply_not_understood", FOCAL)
    with app.database.transaction() as session:
        assert session.get(Absence, FOCAL) is None
    assert outbox.of("focal_review", ADMIN) == []
    assert state(app) == "focal_review"


def test_without_a_date_the_focal_point_is_away_for_away_days(
    client: Client, outbox: Mailbox, app: App
) -> None:
    at_the_focal_point(client, outbox, app)
    review = outbox.wait_for_mail("focal_review", FOCAL)
    client.send(
        auto_reply(review, FOCAL, "Out of office", "On leave.", {"Auto-Submitted": "auto-replied"})
    )
    instead = outbox.wait_for_mail("focal_review", ADMIN)
    assert purpose(instead).startswith("Please endorse")
    with app.database.transaction() as session:
        absence = session.get(Absence, FOCAL)
        assert absence is not None
        assert 6.9 < (absence.until - absence.noted_at).total_seconds() / 86400 <= 7


@pytest.mark.parametrize(
    "config_text",
    [f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n[workflow]\nadmin_endorses = false\n'],
)
def test_without_admin_endorsement_the_administrator_hears_why_it_waits(
    client: Client, outbox: Mailbox, app: App
) -> None:
    at_the_focal_point(client, outbox, app)
    review = outbox.wait_for_mail("focal_review", FOCAL)
    headers = {"Auto-Submitted": "auto-replied"}
    client.send(auto_reply(review, FOCAL, "Automatic reply", "Away until 2027-01-10.", headers))
    told = outbox.wait_for_mail("admin_case_update", ADMIN)
    assert purpose(told).startswith("Waiting: the focal point is away")
    assert "Every focal point of Chile is away" in " ".join(body_text(told).split())
    assert outbox.of("focal_review", ADMIN) == []
    assert state(app) == "focal_review"
