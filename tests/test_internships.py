"""Internship applications (SPEC section 6), over real SMTP on SQLite and
PostgreSQL: a participant applies from the case page's link; missing
pieces are asked for once; the administrator approves; the focal point of
the host economy accepts; funded or self-funded, with the reason; the
case's author hears; the cap on funded places holds under concurrency."""

from __future__ import annotations

import contextlib
import io
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Client, Mailbox, body_text, headline, wait_until
from flows import ANA, FOCAL, click, links, published, state
from mails import message, reply, submission
from sqlalchemy import select

from mailflow.app import App
from mailflow.casefile import case_file, format_case
from mailflow.cli import main
from mailflow.config import Settings
from mailflow.errors import ActionRefused
from mailflow.store.models import Case, Participant
from mailflow.workflow import decisions
from mailflow.workflow.states import State

ROSA, KEN = "rosa@example.org", "ken@example.org"  # from Peru (eligible), Japan (not)
ADMIN = "admin@mailflow.localhost"
INTERNSHIP = "internship@mailflow.localhost"


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n\n[internships]\nfunded_cap = 1\n'


def registered(client: Client, outbox: Mailbox, address: str, name: str, economy: str) -> None:
    before = len(outbox.to(address))
    form = f"Name: {name}\nEconomy: {economy}\nOrganization: Coop\n"
    client.send(message(address, "register@mailflow.localhost", "Register", form))
    client.send(reply(outbox.wait_for(before + 1, address)[-1], address))
    outbox.wait_for(before + 2, address)


def apply(client: Client, sender: str, case_id: str, body: str) -> None:
    """What the case page's "Apply for an internship" link fills in."""
    client.send(message(sender, INTERNSHIP, f"Internship application: {case_id}", body))


FORM = (
    "Case: {case_id}\n"
    "Motivation: I run a bakery and want to learn it.\n"
    "Preferred dates: March 2027\n"
)


@pytest.fixture
def case_id(client: Client, outbox: Mailbox, app: App) -> str:
    found = published(client, outbox, app)
    registered(client, outbox, ROSA, "Rosa Diaz", "Peru")
    registered(client, outbox, KEN, "Ken Sato", "Japan")
    return found


def accepted_by_focal_point(
    client: Client, outbox: Mailbox, app: App, applicant: str, application: str
) -> str:
    """Through the administrator and the host's focal point; the applicant's
    last email."""
    review = wait_until(lambda: _last_about(outbox, ADMIN, application), what="the review")
    click(client, review, "Approve", ADMIN)  # type: ignore[arg-type]
    assert state(app, application) == "host_review"
    host = wait_until(lambda: _last_about(outbox, FOCAL, application), what="the host's email")
    click(client, host, "Accept", FOCAL, "Welcome, we can host you.")  # type: ignore[arg-type]
    assert state(app, application) == "accepted"
    return str(wait_until(lambda: _last_about(outbox, applicant, "accepted ("), what="the news"))


def report_json(settings: Settings) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", "--format", "json", "--config", str(settings.source)]) == 0
    return out.getvalue()


def _last_about(outbox: Mailbox, address: str, word: str) -> object:
    found = [m for m in outbox.to(address) if word in headline(m)]
    return found[-1] if found else None


def test_an_application_is_accepted_funded_and_the_cases_author_hears(
    client: Client, outbox: Mailbox, app: App, settings: Settings, case_id: str
) -> None:
    apply(client, ROSA, case_id, FORM.format(case_id=case_id))
    received = outbox.wait_for(3, ROSA)[-1]
    assert "IN-2026-0001" in headline(received)

    accepted_by_focal_point(client, outbox, app, ROSA, "IN-2026-0001")
    mail = _last_about(outbox, ROSA, "accepted (")
    assert "Funded" in headline(mail)  # type: ignore[index]
    assert "Peru is eligible for travel funding" in body_text(mail)  # type: ignore[arg-type]
    news = wait_until(lambda: _last_about(outbox, ANA, "nternship"), what="the author's news")
    assert "Rosa Diaz" in body_text(news)  # type: ignore[arg-type]

    with app.database.transaction() as session:
        text = format_case(case_file(session, "IN-2026-0001", app.workflow.economies))
        parent = format_case(case_file(session, case_id, app.workflow.economies))
    assert "State: accepted" in text and "Funding: funded" in text
    assert f"About: {case_id}" in text and "Preferred dates: March 2027" in text
    assert "host_review -> accepted" in text and "funding" in text
    assert "IN-2026-0001" in parent
    report = json.loads(report_json(settings))
    assert report["participation"]["internships_funded"] == 1
    assert report["by_kind"] == {"Best practice": 1}  # submissions only


def test_missing_pieces_are_asked_for_once_and_a_reply_completes_them(
    client: Client, outbox: Mailbox, app: App, case_id: str
) -> None:
    apply(client, ROSA, case_id, "I would like to come.\n")
    incomplete = outbox.wait_for(3, ROSA)[-1]
    text = body_text(incomplete)
    assert "Motivation" in text and "Preferred dates" in text
    assert state(app, "IN-2026-0001") == "incomplete"

    client.send(
        reply(incomplete, ROSA, "Motivation: to learn seed capital.\nPreferred dates: May 2027\n")
    )
    assert state(app, "IN-2026-0001") == "admin_review"


def test_not_eligible_or_over_the_cap_is_self_funded_with_the_reason(
    client: Client, outbox: Mailbox, app: App, case_id: str
) -> None:
    apply(client, KEN, case_id, FORM.format(case_id=case_id))
    outbox.wait_for(3, KEN)
    accepted_by_focal_point(client, outbox, app, KEN, "IN-2026-0001")
    mail = _last_about(outbox, KEN, "accepted (")
    assert "Self-funded" in headline(mail)  # type: ignore[index]
    assert "Japan is not one of the economies" in body_text(mail)  # type: ignore[arg-type]

    # Rosa takes the one funded place; a second eligible applicant does not get one.
    for number, address in ((2, ROSA), (3, "tom@example.org")):
        if address != ROSA:
            registered(client, outbox, address, "Tom Cruz", "Mexico")
        apply(client, address, case_id, FORM.format(case_id=case_id))
        outbox.wait_for(3, address)
        accepted_by_focal_point(client, outbox, app, address, f"IN-2026-000{number}")
    assert "Funded" in headline(_last_about(outbox, ROSA, "accepted ("))  # type: ignore[arg-type]
    last = _last_about(outbox, "tom@example.org", "accepted (")
    assert "Self-funded" in headline(last)  # type: ignore[index]
    assert "All 1 funded places are already taken" in body_text(last)  # type: ignore[arg-type]


def test_applications_for_unknown_or_unpublished_cases_are_refused(
    client: Client, outbox: Mailbox, app: App, case_id: str
) -> None:
    client.send(submission(subject="Another practice"))  # from Ana, registered by now
    assert state(app, "BP-2026-0002") == "admin_review"
    sent = len(outbox.to(ROSA))
    answers = []
    for wrong in ("BP-2026-0999", "BP-2026-0002"):
        apply(client, ROSA, wrong, FORM.format(case_id=wrong))
        answers.append(body_text(outbox.wait_for(sent + len(answers) + 1, ROSA)[-1]))
    assert "BP-2026-0999" in answers[0]
    assert "published" in answers[1]
    with app.database.transaction() as session:
        assert session.scalars(select(Case).where(Case.kind == "internship")).all() == []


def test_the_applicant_can_withdraw(
    client: Client, outbox: Mailbox, app: App, case_id: str
) -> None:
    apply(client, ROSA, case_id, FORM.format(case_id=case_id))
    received = outbox.wait_for(3, ROSA)[-1]
    client.send(reply(received, ROSA, "withdraw"))
    assert state(app, "IN-2026-0001") == "withdrawn"


def test_the_funded_cap_holds_when_acceptances_race(app: App, settings: Settings) -> None:
    """Eight applications in host review, accepted at the same moment from
    eight threads (each its own transaction): exactly the cap is funded."""
    cap = settings.internships.funded_cap
    ids = _applications_in_host_review(app, 8)
    barrier = threading.Barrier(len(ids))
    errors: list[BaseException] = []

    def accept(public_id: str) -> None:
        barrier.wait()
        try:
            with app.database.transaction() as session:
                case = session.scalar(select(Case).where(Case.public_id == public_id))
                assert case is not None
                decisions.act(session, case, app.workflow, word="accept", actor=FOCAL)
        except ActionRefused as exc:  # pragma: no cover - would be a bug
            errors.append(exc)

    threads = [threading.Thread(target=accept, args=(i,)) for i in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with app.database.transaction() as session:
        funding = session.scalars(select(Case.funding).where(Case.kind == "internship")).all()
    assert sorted(f or "" for f in funding) == ["funded"] * cap + ["self_funded"] * (8 - cap)


def _applications_in_host_review(app: App, count: int) -> list[str]:
    now = datetime.now(UTC)
    with app.database.transaction() as session:
        author = Participant(email=ANA, name="Ana", economy="CL", created_at=now, confirmed_at=now)
        session.add(author)
        session.flush()
        about = Case(
            public_id="BP-2026-0001",
            kind="best_practice",
            state=State.PUBLISHED,
            state_since=now,
            title="Seed capital",
            economy="CL",
            area=1,
            author_id=author.id,
            created_at=now,
        )
        session.add(about)
        session.flush()
        ids = []
        for number in range(1, count + 1):
            applicant = Participant(
                email=f"applicant{number}@example.org",
                name=f"Applicant {number}",
                economy="PE",
                created_at=now,
                confirmed_at=now,
            )
            session.add(applicant)
            session.flush()
            public_id = f"IN-2026-{number:04d}"
            session.add(
                Case(
                    public_id=public_id,
                    kind="internship",
                    state=State.HOST_REVIEW,
                    state_since=now,
                    title="Internship: Seed capital",
                    economy="PE",
                    author_id=applicant.id,
                    about_id=about.id,
                    summary="To learn.",
                    preferred_dates="2027",
                    created_at=now,
                )
            )
            ids.append(public_id)
    return ids


def test_an_unregistered_applicant_confirms_first(
    client: Client, outbox: Mailbox, app: App, case_id: str
) -> None:
    newcomer = "lin@example.org"
    apply(client, newcomer, case_id, FORM.format(case_id=case_id) + "Economy: Viet Nam\n")
    confirm = outbox.wait_for(1, newcomer)[-1]
    assert state(app, "IN-2026-0001") == "pending_confirmation"
    client.send(reply(confirm, newcomer))
    assert state(app, "IN-2026-0001") == "admin_review"


def test_a_silent_host_is_reminded_then_the_administrator_decides(
    client: Client, outbox: Mailbox, app: App, settings: Settings, case_id: str
) -> None:
    apply(client, ROSA, case_id, FORM.format(case_id=case_id))
    review = wait_until(lambda: _last_about(outbox, ADMIN, "IN-2026-0001"), what="the review")
    click(client, review, "Approve", ADMIN)  # type: ignore[arg-type]
    assert state(app, "IN-2026-0001") == "host_review"
    days = settings.workflow

    start = datetime.now(UTC)
    for at in (days.reminder_days, days.escalate_days):
        when = start + timedelta(days=at, hours=1)
        assert main(["tick", "--now", when.isoformat(), "--config", str(settings.source)]) == 0
    reminder = _last_about(outbox, FOCAL, "Reminder")
    assert reminder is not None and "IN-2026-0001" in headline(reminder)  # type: ignore[index]
    escalation = _last_about(outbox, ADMIN, "No answer from the focal point")
    assert escalation is not None
    assert "Accept on behalf of Chile" in links(escalation)  # type: ignore[arg-type]


def test_a_commenter_without_an_economy_completes_the_application_by_giving_it(
    client: Client, outbox: Mailbox, app: App, case_id: str
) -> None:
    """Registered through a comment, a participant has no economy: the
    application asks for it once, and a reply with only that line
    completes it (it used to ask again for ever)."""
    bob = "bob@example.org"
    client.send(message(bob, f"comment+{case_id}@mailflow.localhost", "Re: case", "Useful."))
    client.send(reply(outbox.wait_for(1, bob)[-1], bob))  # confirms the address
    wait_until(lambda: _last_about(outbox, bob, "comment"), what="the comment's acknowledgement")
    apply(client, bob, case_id, FORM.format(case_id=case_id))
    asked = wait_until(lambda: _last_about(outbox, bob, "please add"), what="what is missing")
    assert "Economy: is missing" in body_text(asked)  # type: ignore[arg-type]
    client.send(reply(asked, bob, "Economy: Singapore"))  # type: ignore[arg-type]
    assert state(app, "IN-2026-0001") == "admin_review"
    with app.database.transaction() as session:
        applicant = session.scalars(select(Participant).where(Participant.email == bob)).one()
        application = session.scalars(select(Case).where(Case.public_id == "IN-2026-0001")).one()
        assert applicant.economy == application.economy == "SG"
