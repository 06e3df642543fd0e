"""Nobody waits on a silent person (SPEC sections 4 and 8): reminders,
escalation, word to the author, expiry and the daily summary, driven by
`mailflow tick --now` at chosen times, on SQLite and PostgreSQL; and the
timer inside `mailflow run` doing the same work."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import Client, Mailbox, body_text, headline, purpose, wait_until
from flows import ADMIN, ANA, FOCAL, click, links, state, submitted
from mails import message, reply, submission
from sqlalchemy import select, update

from mailflow.app import App, Service, build
from mailflow.cli import main
from mailflow.config import Settings, load_settings
from mailflow.store.models import Case, CaseEvent, Participant, Token
from mailflow.vocab import Kind
from mailflow.workflow.states import State

DAY = timedelta(days=1)


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'


def tick(settings: Settings, at: datetime) -> None:
    assert main(["tick", "--now", at.isoformat(), "--config", str(settings.source)]) == 0


def since(app: App, case_id: str = "BP-2026-0001") -> datetime:
    with app.database.transaction() as session:
        case = session.scalar(select(Case).where(Case.public_id == case_id))
        assert case is not None
        return case.state_since


def history(app: App, case_id: str = "BP-2026-0001") -> list[str]:
    with app.database.transaction() as session:
        case = session.scalar(select(Case).where(Case.public_id == case_id))
        assert case is not None
        return [
            e.event
            for e in session.scalars(
                select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.id)
            )
        ]


def at_focal_point(client: Client, outbox: Mailbox, app: App) -> datetime:
    """A case approved by the administrator; returns when it reached the focal point."""
    click(client, submitted(client, outbox), "Approve", ADMIN)
    outbox.wait_for(1, FOCAL)
    assert state(app) == "focal_review"
    return since(app)


def purposes(outbox: Mailbox, address: str) -> list[str]:
    return [purpose(m) for m in outbox.to(address)]


def silent_at_focal_point(
    app: App, titles: list[str], waited: timedelta, economy: str = "CL"
) -> None:
    """Cases that reached the focal point ``waited`` ago, made directly."""
    start = datetime.now(UTC) - waited
    with app.database.transaction() as session:
        author = Participant(
            email=ANA, name="Ana", economy="CL", created_at=start, confirmed_at=start
        )
        session.add(author)
        session.flush()
        for title in titles:
            case = app.workflow.engine.open_case(
                session,
                kind=Kind.BEST_PRACTICE,
                author=author,
                state=State.FOCAL_REVIEW,
                message=None,
                thread_id="",
            )
            case.kind, case.title, case.economy, case.area = "best_practice", title, economy, 1
    with app.database.transaction() as session:
        session.execute(update(Case).values(state_since=start))


def test_reminders_are_counted_and_spaced(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    start = at_focal_point(client, outbox, app)
    reminder = "Reminder: please endorse: Seed capital for micro entrepreneurs"

    tick(settings, start + 7 * DAY - timedelta(minutes=1))
    assert purposes(outbox, FOCAL).count(reminder) == 0
    tick(settings, start + 7 * DAY)
    tick(settings, start + 7 * DAY)  # the same moment again: nothing more
    assert purposes(outbox, FOCAL).count(reminder) == 1
    first = outbox.of("focal_review", FOCAL)[-1]
    assert "This case has waited 7 days for your decision (reminder 1)" in body_text(first)
    assert {"Endorse", "Request changes", "Reject"} <= set(links(first))

    tick(settings, start + 13 * DAY)
    assert purposes(outbox, FOCAL).count(reminder) == 1
    # Late by days (the service was down): one reminder, not two at once.
    tick(settings, start + 40 * DAY)
    tick(settings, start + 45 * DAY)  # spacing: a week after the last one at the soonest
    assert purposes(outbox, FOCAL).count(reminder) == 2
    tick(settings, start + 47 * DAY)
    tick(settings, start + 90 * DAY)  # at most [workflow].max_reminders = 3
    assert purposes(outbox, FOCAL).count(reminder) == 3
    assert history(app).count("reminded") == 3

    # A reminder's links act like the first email's.
    click(client, outbox.to(FOCAL)[-1], "Endorse", FOCAL)
    assert state(app) == "published"


def test_the_author_is_told_since_which_day_their_case_waits(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    start = at_focal_point(client, outbox, app)
    tick(settings, start + 14 * DAY)
    update = outbox.wait_for_mail("case_status", ANA)
    # The day through Babel: "since 5 December", no year, no leading zero.
    waiting = f"is waiting with the focal point of Chile since {start.day} {start:%B}"
    assert waiting in body_text(update)
    html = update.get_body(("html",))
    assert html is not None
    assert f"</strong> since {start.day} {start:%B}" in str(html.get_content())


def test_escalation_lets_the_administrator_endorse_on_behalf(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    start = at_focal_point(client, outbox, app)
    tick(settings, start + 7 * DAY)
    tick(settings, start + 14 * DAY)
    status = outbox.to(ANA)[-1]
    assert purpose(status) == "Where your case stands"
    assert (
        f"with the focal point of Chile since {start.day} {start:%B}; we reminded them twice"
        in body_text(status)
    )

    def escalations() -> list[EmailMessage]:
        return [m for m in outbox.to(ADMIN) if "No answer from the focal point" in headline(m)]

    tick(settings, start + 21 * DAY - timedelta(seconds=1))
    assert escalations() == []
    tick(settings, start + 21 * DAY)
    tick(settings, start + 22 * DAY)
    escalation = escalations()
    assert len(escalation) == 1
    assert "waited 21 days for the focal point of Chile" in body_text(escalation[0])
    assert "Endorse on behalf of Chile" in links(escalation[0])
    assert len([m for m in outbox.to(ANA) if "Where your case stands" in headline(m)]) == 1

    click(
        client, escalation[0], "Endorse on behalf of Chile", ADMIN, "The focal point is on leave."
    )
    assert state(app) == "published"
    with app.database.transaction() as session:
        endorsed = session.scalars(select(CaseEvent).where(CaseEvent.event == "endorsed")).one()
        assert endorsed.actor == ADMIN
        assert endorsed.note.startswith("endorsed by the administrator for Chile")
    page = settings.archive.output_dir / "cases" / "BP-2026-0001" / "index.html"
    wait_until(page.exists, what="the published page")
    assert "behalf" not in page.read_text()
    assert (
        "Endorsed by the administrator for Chile (no answer from the focal point in 21 days)"
        in page.read_text()
    )


def test_an_unconfirmed_submission_expires_and_the_sender_is_told_once(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    client.send(submission())
    confirm = outbox.wait_for(1, ANA)[-1]
    bob = "bob@example.org"
    client.send(
        message(
            bob, "register@mailflow.localhost", "Hi", "Name: Bob\nEconomy: Peru\nOrganization: Coop"
        )
    )
    outbox.wait_for(1, bob)
    # Both asked 15 days ago: the running service reads the real clock, so
    # the past is moved rather than the present.
    with app.database.transaction() as session:
        for token in session.scalars(select(Token)):
            token.issued_at, token.expires_at = (
                token.issued_at - 15 * DAY,
                token.expires_at - 15 * DAY,
            )
        for case in session.scalars(select(Case)):
            case.state_since -= 15 * DAY
    now = datetime.now(UTC)

    tick(settings, now - DAY - timedelta(minutes=1))
    assert state(app) == "pending_confirmation"
    tick(settings, now)
    tick(settings, now + DAY)
    assert state(app) == "expired"
    told = outbox.to(ANA)[1:]
    assert [purpose(m) for m in told] == ["Your submission was not kept"]
    assert "did not hear back within 14 days" in body_text(told[0])
    assert [m["Subject"] for m in outbox.to(bob)[1:]] == ["Your registration was not completed"]

    # A confirmation after that changes nothing and is explained.
    client.send(reply(confirm, ANA))
    refusal = outbox.wait_for(3, ANA)[-1]
    assert "expired" in body_text(refusal).lower()
    assert state(app) == "expired"
    with app.database.transaction() as session:
        ana = session.scalar(select(Participant).where(Participant.email == ANA))
        assert ana is not None and ana.confirmed_at is None


def test_the_daily_summary_lists_what_waits_with_links(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    now = datetime.now(UTC)
    eight = now.replace(hour=8, minute=0, second=0, microsecond=0)
    eight -= DAY if eight > now else timedelta(0)  # the last 08:00 before now
    tick(settings, eight)  # nothing waits: nothing sent
    assert outbox.to(ADMIN) == []

    review = submitted(client, outbox)
    unroutable = message("x@example.net", "someone@elsewhere.example", "Lost", "hello")
    lost = settings.source.parent / "lost.eml"
    lost.write_bytes(bytes(unroutable))
    main(
        [
            "ingest",
            str(lost),
            "--recipient",
            "someone@elsewhere.example",
            "--config",
            str(settings.source),
        ]
    )

    tick(settings, eight + 23 * timedelta(hours=1))  # not yet
    tick(settings, eight + DAY)
    tick(settings, eight + DAY)
    summaries = [m for m in outbox.to(ADMIN) if m["Subject"].startswith("Daily summary")]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["Subject"] == "Daily summary: 1 waiting, 1 for you to decide"
    text = body_text(summary)
    assert "[BP-2026-0001] Seed capital for micro entrepreneurs" in text
    assert "for you (the administrator)." in text
    assert "from x@example.net: Lost" in text
    assert purpose(review) not in text

    click(client, summary, "Approve", ADMIN)
    assert state(app) == "focal_review"


def test_two_ticks_at_once_send_nothing_twice(
    app: App, settings: Settings, outbox: Mailbox
) -> None:
    """Ten cases silent at the focal point for three weeks; two `mailflow
    tick` processes for the same moment, started together."""
    silent_at_focal_point(app, [f"Case {number}" for number in range(10)], 22 * DAY)
    now = datetime.now(UTC).isoformat()
    command = [
        sys.executable,
        "-m",
        "mailflow",
        "tick",
        "--now",
        now,
        "--config",
        str(settings.source),
    ]
    runs = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)
    ]
    for run in runs:
        _, error = run.communicate(timeout=120)
        assert run.returncode == 0, error.decode()[-2000:]
    reminders = [m for m in outbox.to(FOCAL) if "Reminder" in headline(m)]
    escalations = [m for m in outbox.to(ADMIN) if "No answer" in headline(m)]
    updates = [m for m in outbox.to(ANA) if "Where your case stands" in headline(m)]
    assert len(reminders) == 10 and len(escalations) == 10 and len(updates) == 10
    assert len({m["Subject"] for m in reminders}) == 10


def test_the_timer_inside_run_does_the_same_work(
    app: App, settings: Settings, outbox: Mailbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    silent_at_focal_point(app, ["Old case"], 8 * DAY)
    ticks: list[object] = []
    real_tick = app.timed.tick

    def counted_tick() -> object:
        report = real_tick()
        ticks.append(report)
        return report

    monkeypatch.setattr(app.timed, "tick", counted_tick)
    service = Service(app, tick_seconds=0.2)
    service.start()
    try:
        reminder = outbox.wait_for(1, FOCAL)[-1]
        assert purpose(reminder) == "Reminder: please endorse: Old case"
        wait_until(lambda: history(app).count("reminded") == 1)
        seen = len(ticks)
        wait_until(lambda: len(ticks) >= seen + 3, what="three more ticks")
        assert history(app).count("reminded") == 1  # several more ticks: still one reminder
        assert len(outbox.to(FOCAL)) == 1
    finally:
        service.stop()


def test_a_case_on_hold_for_want_of_a_focal_point_reaches_the_administrator(
    write_config: Callable[..., Path], database_url: str
) -> None:
    """`no_focal_point = "hold"`: no reminders to anyone, then the escalation."""
    settings = load_settings(
        write_config('[workflow]\nno_focal_point = "hold"\n', database_url), environ={}
    )
    app = build(settings)
    try:
        silent_at_focal_point(app, ["Waiting in Peru"], 22 * DAY, economy="PE")
        outbox = Mailbox(settings.outbound.maildir)
        tick(settings, datetime.now(UTC))
        (escalation,) = [m for m in outbox.messages() if "No answer" in headline(m)]
        assert escalation["Delivered-To"] == ADMIN
        assert "Peru has no focal point, so this case has waited 22 days on hold" in body_text(
            escalation
        )
        assert "Endorse on behalf of Peru" in links(escalation)
        assert [m["Delivered-To"] for m in outbox.messages() if "Reminder" in headline(m)] == []
    finally:
        app.database.dispose()
