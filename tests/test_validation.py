"""How a case was validated (SPEC sections 4, 5 and 6): each way to the
archive (endorsed by the focal point, by the administrator for an economy
without one, by the administrator after the focal point's silence) ends
with its sentence on the case page and in the report, which counts the
publications of each economy by it; cases endorsed before the change get
it from their history. With `[workflow].admin_endorses = false` the
administrators never endorse in a focal point's place. Real SMTP into the
running service, `mailflow tick --now` for time, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest
from alembic import command
from conftest import Client, Mailbox, body_text, wait_until
from flows import ADMIN, ANA, FOCAL, click, links, state
from mails import FORM, submission
from sqlalchemy import select

from mailflow.app import App, build
from mailflow.cli import main
from mailflow.clock import FixedClock
from mailflow.config import Settings
from mailflow.store.models import Case, Participant
from mailflow.vocab import Kind
from mailflow.workflow import publishing
from mailflow.workflow.states import Event, State

FOCAL_CL = f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'
NO_STAND_IN = "[workflow]\nadmin_endorses = false\n"
BO, CY = "bo@example.org", "cy@example.org"
DAY = timedelta(days=1)
SILENT_CHILE = "Endorsed by the administrator for Chile (no answer from the focal point in 21 days)"


def newest(outbox: Mailbox, address: str, button: str = "", text: str = "") -> EmailMessage:
    """The newest email to ``address`` with the button ``button`` (if given)
    whose text says ``text``."""

    def found() -> EmailMessage | None:
        return next(
            (
                m
                for m in reversed(outbox.to(address))
                if text in body_text(m) and (not button or button in links(m))
            ),
            None,
        )

    return wait_until(found, what=f"an email to {address} with {button!r} and {text!r}")  # type: ignore[no-any-return]


def submit(
    client: Client,
    outbox: Mailbox,
    title: str,
    sender: str = ANA,
    economy: str = "Chile",
    organization: str = "SERCOTEC",
) -> EmailMessage:
    """A first submission from ``sender``, confirmed with the button; returns
    the administrator's review email."""
    form = FORM.replace("Chile", economy).replace("SERCOTEC", organization)
    client.send(submission(sender=sender, subject=title, body=form))
    confirm = newest(outbox, sender, "Confirm my address")
    click(client, confirm, "Confirm my address", sender)
    return newest(outbox, ADMIN, "Approve", f"Title: {title}")


def since(app: App, case_id: str) -> datetime:
    with app.database.transaction() as session:
        case = session.scalar(select(Case).where(Case.public_id == case_id))
        assert case is not None
        return case.state_since


def tick(settings: Settings, at: datetime) -> None:
    assert main(["tick", "--now", at.isoformat(), "--config", str(settings.source)]) == 0


def page(settings: Settings, case_id: str) -> str:
    path = settings.archive.output_dir / "cases" / case_id / "index.html"
    return wait_until(lambda: path.exists() and path.read_text(), what=f"the page of {case_id}")  # type: ignore[no-any-return]


def report(settings: Settings, capsys: pytest.CaptureFixture[str], *options: str) -> str:
    capsys.readouterr()
    assert main(["report", *options, "--config", str(settings.source)]) == 0
    return capsys.readouterr().out


def shown(settings: Settings, capsys: pytest.CaptureFixture[str], case_id: str, words: str) -> None:
    """The case page and the report's list of publications say ``words``."""
    assert f'<dd class="validation">{words}</dd>' in page(settings, case_id)
    row = re.compile(rf"^{case_id} .* {re.escape(words)}$", re.MULTILINE)
    assert row.search(report(settings, capsys)), words


def endorse_buttons(outbox: Mailbox) -> list[str]:
    """Every button of every email the administrator got that decides in
    a focal point's place."""
    return [
        label
        for mail in outbox.to(ADMIN)
        for label in links(mail)
        if label.startswith(("Endorse", "Accept"))
    ]


@pytest.mark.parametrize("config_text", [FOCAL_CL])
def test_each_way_to_the_archive_is_on_the_page_and_in_the_report(
    client: Client,
    outbox: Mailbox,
    app: App,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Chile's focal point endorses one case and stays silent on another,
    which the administrator endorses after the escalation; Peru has no
    focal point, so the administrator endorses its case. The report counts
    them per economy and in total, with the organizations that took part
    (SERCOTEC twice, written two ways, counts once)."""
    click(client, submit(client, outbox, "Seed capital"), "Approve", ADMIN)
    click(client, newest(outbox, FOCAL, "Endorse", "Title: Seed capital"), "Endorse", FOCAL)
    assert state(app, "BP-2026-0001") == "published"

    click(client, submit(client, outbox, "Market days", BO, "Peru", "PromPerú"), "Approve", ADMIN)
    click(client, newest(outbox, ADMIN, "Endorse", "Title: Market days"), "Endorse", ADMIN)
    assert state(app, "BP-2026-0002") == "published"

    review = submit(client, outbox, "Export clinics", CY, organization=" sercotec  ")
    click(client, review, "Approve", ADMIN)
    newest(outbox, FOCAL, "Endorse", "Title: Export clinics")
    tick(settings, since(app, "BP-2026-0003") + 21 * DAY)
    escalation = newest(outbox, ADMIN, "Endorse on behalf of Chile", "Title: Export clinics")
    assert f"If you endorse, the case page will say: {SILENT_CHILE}." in body_text(escalation)
    click(client, escalation, "Endorse on behalf of Chile", ADMIN, "The focal point is away.")
    assert state(app, "BP-2026-0003") == "published"

    shown(settings, capsys, "BP-2026-0001", "Endorsed by the focal point of Chile")
    shown(
        settings,
        capsys,
        "BP-2026-0002",
        "Endorsed by the administrator for Peru (no focal point named)",
    )
    shown(settings, capsys, "BP-2026-0003", SILENT_CHILE)

    data = json.loads(report(settings, capsys, "--format", "json"))
    assert data["validated"] == [
        {
            "economy": "Chile",
            "published": 2,
            "by_validation": {"focal_point": 1, "silent_focal_point": 1},
            "organizations": 1,
        },
        {
            "economy": "Peru",
            "published": 1,
            "by_validation": {"no_focal_point": 1},
            "organizations": 1,
        },
    ]
    assert data["validated_total"] == {
        "economy": "",
        "published": 3,
        "by_validation": {"focal_point": 1, "no_focal_point": 1, "silent_focal_point": 1},
        "organizations": 2,
    }
    text = report(settings, capsys)
    assert re.search(r"^Chile +2 +1 +0 +1 +1$", text, re.MULTILINE)
    assert re.search(r"^All economies +3 +1 +1 +1 +2$", text, re.MULTILINE)


def test_a_case_of_an_economy_without_focal_point(
    client: Client,
    outbox: Mailbox,
    app: App,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The default configuration names no focal point for Chile: the
    administrator endorses in its place, and the page and report say why."""
    click(client, submit(client, outbox, "Seed capital"), "Approve", ADMIN)
    endorse = newest(outbox, ADMIN, "Endorse", "Chile has no focal point")
    click(client, endorse, "Endorse", ADMIN)
    assert state(app) == "published"
    words = "Endorsed by the administrator for Chile (no focal point named)"
    shown(settings, capsys, "BP-2026-0001", words)
    assert "Each case page says who endorsed it" in page(settings, "BP-2026-0001")


@pytest.mark.parametrize("config_text", [NO_STAND_IN])
def test_without_admin_endorsement_a_case_without_focal_point_waits(
    client: Client,
    outbox: Mailbox,
    app: App,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`admin_endorses = false`: a case of an economy without a focal point
    waits as on hold; the administrator is told plainly, then again at the
    escalation, and no email (nor the daily summary) has an Endorse link.
    `mailflow act ... endorse` is refused: the case is not published."""
    click(client, submit(client, outbox, "Seed capital"), "Approve", ADMIN)
    held = newest(outbox, ADMIN, text="Chile has no focal point, so case BP-2026-0001 waits")
    assert 'name a focal point: send "add CL name@example.org"' in body_text(held)
    assert state(app) == "focal_review"

    start = since(app, "BP-2026-0001")
    tick(settings, start + 22 * DAY)
    tick(settings, start + 23 * DAY)  # the daily summary's hour has come meanwhile
    notice = newest(outbox, ADMIN, text="has waited 22 days on hold")
    assert "admin_endorses = false" in body_text(notice)
    summary = newest(outbox, ADMIN, text="waiting, oldest first")
    assert "BP-2026-0001" in body_text(summary)
    assert endorse_buttons(outbox) == []

    capsys.readouterr()
    act = ["act", "BP-2026-0001", "endorse", "--config", str(settings.source)]
    assert main(act) == 1
    assert "[workflow].admin_endorses = false" in capsys.readouterr().err
    assert state(app) == "focal_review"
    assert not (settings.archive.output_dir / "cases" / "BP-2026-0001").exists()
    assert main(["economies", "--config", str(settings.source)]) == 0
    assert re.search(r"^CL .* NONE: approved cases wait \(on hold\)", capsys.readouterr().out, re.M)


@pytest.mark.parametrize("config_text", [FOCAL_CL + NO_STAND_IN])
def test_without_admin_endorsement_the_escalation_only_tells(
    client: Client,
    outbox: Mailbox,
    app: App,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`admin_endorses = false`: after escalate_days the administrator hears
    that the focal point is silent and whom to write to, with no Endorse
    link; the focal point can still endorse."""
    click(client, submit(client, outbox, "Seed capital"), "Approve", ADMIN)
    review = newest(outbox, FOCAL, "Endorse", "Title: Seed capital")
    tick(settings, since(app, "BP-2026-0001") + 21 * DAY)
    notice = newest(outbox, ADMIN, text="has waited 21 days for the focal point of Chile")
    assert f"please write to the focal point: {FOCAL}" in body_text(notice)
    assert "we reminded them once" in body_text(notice)
    assert endorse_buttons(outbox) == []
    assert main(["act", "BP-2026-0001", "endorse", "--config", str(settings.source)]) == 1
    assert state(app) == "focal_review"

    click(client, review, "Endorse", FOCAL)
    assert state(app) == "published"
    shown(settings, capsys, "BP-2026-0001", "Endorsed by the focal point of Chile")


def test_cases_endorsed_before_get_it_from_their_history(settings: Settings) -> None:
    """The migration that adds how a case was validated reads it from the
    history of the cases already endorsed: who endorsed, and whether the
    stay at the focal point that the endorsement ended was escalated (and
    after how many days). The page of a case published before says it once
    the archive catches up, with no rebuild."""
    t0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
    clock = FixedClock(t0)
    app = build(settings, clock)
    engine = app.workflow.engine
    by_admin = "endorsed by the administrator for Chile"
    try:
        with app.database.transaction() as session:
            author = Participant(email=ANA, economy="CL", created_at=t0, confirmed_at=t0)
            session.add(author)
            session.flush()

            def at_focal_point() -> Case:
                case = engine.open_case(
                    session,
                    kind=Kind.BEST_PRACTICE,
                    author=author,
                    state=State.FOCAL_REVIEW,
                    message=None,
                    thread_id="",
                )
                case.economy, case.area = "CL", 1
                return case

            def endorse(case: Case, actor: str, note: str = "") -> None:
                engine.transition(session, case, Event.ENDORSED, actor=actor, note=note)

            def escalate(case: Case) -> None:
                engine.record(session, case, "escalated", "mailflow", None)

            on_the_archive = at_focal_point()
            on_the_archive.title, on_the_archive.summary = "Seed capital", "Money."
            endorse(on_the_archive, FOCAL)
            publishing.publish(session, on_the_archive, app.workflow)
            endorse(at_focal_point(), ADMIN, by_admin)
            silent = at_focal_point()
            clock.advance(22 * DAY)
            escalate(silent)
            clock.advance(3 * DAY)
            endorse(silent, ADMIN, f"{by_admin}: the focal point is away")
            # Escalated once, sent back for changes, then endorsed by the
            # administrator without an escalation in its last stay.
            again = at_focal_point()
            escalate(again)
            for event in (Event.CHANGES_REQUESTED, Event.REVISED, Event.APPROVED):
                engine.transition(session, again, event, actor=ADMIN)
            endorse(again, ADMIN, by_admin)
            # On hold for want of a focal point ("hold"), then escalated.
            held = at_focal_point()
            engine.record(session, held, "held", "mailflow", None)
            escalate(held)
            endorse(held, ADMIN, by_admin)

        app.site.build(app.database)
        path = settings.archive.output_dir / "cases" / on_the_archive.public_id / "index.html"
        assert "Endorsed by" not in path.read_text()

        config = app.database._alembic_config()
        with app.database.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "0006")
        assert main(["db", "upgrade", "--config", str(settings.source)]) == 0

        with app.database.transaction() as session:
            found = session.execute(
                select(Case.validation, Case.focal_silent_days).order_by(Case.id)
            ).all()
        assert [tuple(row) for row in found] == [
            ("focal_point", None),
            ("no_focal_point", None),
            ("silent_focal_point", 22),
            ("no_focal_point", None),
            ("no_focal_point", None),
        ]
        app.update_archive()
        assert '<dd class="validation">Endorsed by the focal point of Chile</dd>' in (
            path.read_text()
        )
    finally:
        app.database.dispose()
