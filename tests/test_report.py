"""`mailflow report` against a seeded history with known answers, on
SQLite and PostgreSQL; every format parses."""

from __future__ import annotations

import ast
import csv
import io
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import html5lib
import pytest
from conftest import Mailbox, body_text
from selenium.webdriver.common.by import By
from sqlalchemy import select

from mailflow import report
from mailflow.app import App, build
from mailflow.cli import main
from mailflow.clock import FixedClock
from mailflow.config import Settings
from mailflow.store.models import Case, CaseEvent, Participant, Subscriber, TimedStep
from mailflow.vocab import Kind
from mailflow.workflow import publishing
from mailflow.workflow.states import Event, State

T0 = datetime(2026, 10, 1, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def history(settings: Settings) -> Iterator[App]:
    """Three cases whose stays are known to the day:
    1. Chile: confirm 1d, incomplete 1d, administrator 2d, focal point 4d, published;
    2. Peru: administrator 3d, changes 5d, administrator 1d, rejected;
    3. Chile: administrator 6d, then waiting at the focal point (2 reminders,
       1 escalation)."""
    clock = FixedClock(T0)
    app = build(settings, clock)
    engine, workflow = app.workflow.engine, app.workflow

    def step(case: Case, event: Event, days: float) -> None:
        clock.advance(days * DAY)
        engine.transition(session, case, event, actor="test")

    with app.database.transaction() as session:
        ana = Participant(email="ana@example.org", economy="CL", created_at=T0, confirmed_at=T0)
        bo = Participant(email="bo@example.org", economy="PE", created_at=T0, confirmed_at=T0)
        session.add_all([ana, bo])
        session.flush()

        def case(author: Participant, state: State, economy: str, area: int, kind: str) -> Case:
            opened = engine.open_case(
                session, kind=None, author=author, state=state, message=None, thread_id=""
            )
            opened.economy, opened.area, opened.kind = economy, area, kind
            opened.title = f"Case from {economy}"
            return opened

        first = case(ana, State.PENDING_CONFIRMATION, "CL", 1, "best_practice")
        second = case(bo, State.ADMIN_REVIEW, "PE", 2, "experience")
        step(first, Event.CONFIRMED, 1)  # day 1
        step(first, Event.COMPLETED, 1)  # day 2
        third = case(ana, State.ADMIN_REVIEW, "CL", 1, "best_practice")  # day 2
        step(second, Event.CHANGES_REQUESTED, 1)  # day 3: 3 days at the administrator
        step(first, Event.APPROVED, 1)  # day 4: 2 days
        step(third, Event.APPROVED, 4)  # day 8: 6 days
        step(first, Event.ENDORSED, 0)  # day 8: 4 days at the focal point
        publishing.publish(session, first, workflow)
        step(second, Event.REVISED, 0)  # day 8: 5 days with the author
        step(second, Event.REJECTED, 1)  # day 9: 1 day
        for kind, number in (("reminder", 1), ("reminder", 2), ("escalation", 0)):
            session.add(
                TimedStep(
                    subject=f"case:{third.id}",
                    kind=kind,
                    episode=third.state_since,
                    number=number,
                    done_at=clock.now(),
                )
            )
        session.add(
            Subscriber(
                email="reader@example.org",
                secret="a" * 32,
                created_at=T0,
                confirmed_at=T0,
                digest_from=T0,
            )
        )
    yield app
    app.database.dispose()


def run(settings: Settings, capsys: pytest.CaptureFixture[str], *options: str) -> str:
    period = ["--since", "2026-10-01", "--until", "2026-11-01"]
    assert main(["report", *period, *options, "--config", str(settings.source)]) == 0
    return capsys.readouterr().out


def test_each_figure_of_the_report(
    history: App, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    data = json.loads(run(settings, capsys, "--format", "json"))
    assert data["submitted"] == 3
    assert data["by_state"] == {"focal_review": 1, "published": 1, "rejected": 1}
    assert data["by_economy"] == {"Chile": 2, "Peru": 1}
    assert data["by_kind"] == {"Best practice": 2, "Experience": 1}
    assert data["by_area"] == {"Access to Financial Services": 2, "Access to Technology": 1}
    assert [c["id"] for c in data["published"]] == ["BP-2026-0001"]
    stages = {s["stage"]: s for s in data["stages"]}  # codes: the templates name them
    assert stages["admin_review"] == {
        "stage": "admin_review",
        "finished": 4,
        "median_days": 2.5,  # stays of 2, 3, 1 and 6 days
        "p90_days": 6.0,
    }
    assert stages["focal_review"]["median_days"] == 4.0
    assert stages["changes_requested"]["median_days"] == 5.0
    assert stages["pending_confirmation"]["median_days"] == 1.0
    assert stages["host_review"]["finished"] == 0  # every reviewer stage, even when empty
    chile = next(f for f in data["focal_points"] if f["economy"] == "Chile")
    assert chile == {
        "economy": "Chile",
        "has_focal_point": False,
        "cases": 2,
        "reminders": 2,
        "escalations": 1,
        "median_days": 4.0,
    }
    assert data["participation"] == {
        "registered_by_economy": {"Chile": 1, "Peru": 1},
        "contributors": 2,
        "subscribers": 1,
        # (comments and internships: tests/test_comments.py, test_internships.py)
        "comments_published": 0,
        "internship_applications": 0,
        "internships_funded": 0,
        "internships_self_funded": 0,
    }

    # A period that ends before anything happened has nothing in it.
    assert main(["report", "--until", "2026-09-01", "--format", "json",
                 "--config", str(settings.source)]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["submitted"] == 0
    assert main(["report", "--until", "2026-09-01", "--config", str(settings.source)]) == 0
    assert "0 submissions in the period." in capsys.readouterr().out  # empty tables too


def test_every_format_parses(
    history: App, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = list(csv.DictReader(io.StringIO(run(settings, capsys, "--format", "csv"))))
    assert {"section": "by_economy", "key": "Chile", "value": "2"} in rows
    assert {"section": "stage_median_days", "key": "admin_review", "value": "2.5"} in rows
    text = run(settings, capsys)
    assert text.startswith("mailflow report, 2026-10-01 to 2026-11-01\n3 submissions")
    assert "\nTIME IN EACH STAGE (DAYS, STAYS THAT ENDED IN THE PERIOD)\n" in text
    assert "BP-2026-0001  Case from CL" in text
    assert "Comments published (written in the period): 0\n" in text
    markdown = run(settings, capsys, "--format", "markdown")
    assert "| Stage | Stays | Median | 90th percentile |" in markdown
    assert "| with the administrator | 4 | 2.5 | 6.0 |" in markdown


def test_every_stage_where_a_case_waits_is_named(
    history: App, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every reviewer stage is in the report. An internship's host review is
    focal point work of the host economy; a stage this code does not know
    (the language editor's) is found in the history, and one the templates
    do not name either reads as its code."""
    clock, engine = history.workflow.clock, history.workflow.engine
    assert isinstance(clock, FixedClock)
    with history.database.transaction() as session:
        bo = session.scalars(select(Participant).where(Participant.email == "bo@example.org")).one()
        chilean = session.scalars(select(Case).where(Case.public_id == "BP-2026-0001")).one()
        internship = engine.open_case(
            session,
            kind=Kind.INTERNSHIP,
            author=bo,
            state=State.ADMIN_REVIEW,
            message=None,
            thread_id="",
        )
        internship.economy, internship.about_id = "PE", chilean.id
        clock.advance(DAY)
        engine.transition(session, internship, Event.APPROVED, actor="test")
        clock.advance(3 * DAY)  # 3 days with Chile's focal points, the hosts
        engine.transition(session, internship, Event.ACCEPTED, actor="test")
        edited = engine.open_case(
            session, kind=None, author=bo, state=State.ADMIN_REVIEW, message=None, thread_id=""
        )
        for days, left, entered in (
            (1, "admin_review", "editor_review"),
            (2, "editor_review", "legal_review"),
            (1, "legal_review", "published"),
        ):
            clock.advance(days * DAY)
            session.add(
                CaseEvent(
                    case_id=edited.id,
                    at=clock.now(),
                    actor="test",
                    event="test",
                    from_state=left,
                    to_state=entered,
                )
            )

    data = json.loads(run(settings, capsys, "--format", "json"))
    stages = {s["stage"]: (s["finished"], s["median_days"]) for s in data["stages"]}
    assert stages["host_review"] == (1, 3.0)
    assert stages["editor_review"] == (1, 2.0)
    assert stages["legal_review"] == (1, 1.0)
    assert "published" not in stages  # an outcome, not a stage
    chile = next(f for f in data["focal_points"] if f["economy"] == "Chile")
    assert (chile["cases"], chile["median_days"]) == (3, 3.5)  # 4 days endorsing, 3 hosting
    peru = next(f for f in data["focal_points"] if f["economy"] == "Peru")
    assert peru["cases"] == 0  # the applicant's economy does not decide

    text = run(settings, capsys)
    for line in (
        r"with the host economy's focal point +1 +3\.0 +3\.0",
        r"with the language editor +1 +2\.0 +2\.0",
        r"legal review +1 +1\.0 +1\.0",
    ):
        assert re.search(f"^{line}$", text, re.MULTILINE), line


def test_the_html_report_escapes_what_it_names() -> None:
    """The page names stages through the templates and escapes every label
    once, a stage code from the history as much as an economy's name."""
    validated = report.Validated("<i>Chile</i>", 1, {"no_focal_point": 1}, 1)
    figures = report.Report(
        since="2026-10-01T00:00:00+00:00",
        until="2026-11-01T00:00:00+00:00",
        submitted=1,
        by_state={},
        by_economy={"<i>Chile</i>": 1},
        by_area={},
        by_kind={},
        published=[
            {
                "id": "BP-2026-0001",
                "title": "<b>Seed</b>",
                "economy": "<i>Chile</i>",
                "area": "Access to Technology",
                "validation": "no_focal_point",
                "focal_silent_days": None,
            }
        ],
        validated=[validated],
        validated_total=report.Validated("", 1, {"no_focal_point": 1}, 1),
        stages=[
            report.StageTime("host_review", 1, 2.0, 2.0),
            report.StageTime("<b>odd_stage</b>", 1, 1.0, 1.0),
        ],
        focal_points=[],
        participation=dict.fromkeys(["contributors", "subscribers", *report.ENGAGEMENT], 0),
    )
    html = report.as_html(figures)
    html5lib.HTMLParser(strict=True).parse(html)
    assert ">&lt;i&gt;Chile&lt;/i&gt;</text>" in html
    assert ">with the host economy&#39;s focal point</text>" in html
    assert ">&lt;b&gt;odd stage&lt;/b&gt;</text>" in html
    assert (
        "<td>Endorsed by the administrator for &lt;i&gt;Chile&lt;/i&gt; (no focal point named)</td>"
        in html
    )


def test_no_sentence_is_built_in_python() -> None:
    """Every word of the report comes from templates/report: report.py holds
    no string of two or more words (a label such as "Median days", a
    sentence) other than its docstrings."""
    tree = ast.parse(Path(report.__file__).read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    sentences = [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
        and len(node.value.split()) >= 2
    ]
    assert sentences == []


def test_a_bad_date_is_named(settings: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", "--since", "yesterday", "--config", str(settings.source)]) == 1
    assert "--since 'yesterday' is not a date; write e.g. 2026-10-01" in capsys.readouterr().err


OVERSEER = "sme-wg@example.org"


@pytest.fixture
def config_text() -> str:
    return f'[report]\nrecipients = ["{OVERSEER}", "admin@mailflow.localhost"]\n'


def test_the_administrators_and_overseers_get_last_month_on_the_first(
    history: App, settings: Settings, outbox: Mailbox
) -> None:
    """[report].recipients get it with the administrators, once each; at
    [report].schedule (06:00 UTC on the 1st), not before."""
    config = ["--config", str(settings.source)]
    assert main(["tick", "--now", "2026-11-01T05:59:00+00:00", *config]) == 0
    assert not outbox.of("monthly_report")
    for _ in range(2):  # the same moment twice: one report
        assert main(["tick", "--now", "2026-11-01T06:00:00+00:00", *config]) == 0
    (monthly,) = outbox.of("monthly_report", "admin@mailflow.localhost")
    (overseen,) = outbox.of("monthly_report", OVERSEER)
    assert body_text(overseen) == body_text(monthly)
    assert monthly["Subject"] == "Monthly report: October 2026"
    text = body_text(monthly)
    assert "mailflow report, 2026-10-01 to 2026-11-01" in text and "3 submissions" in text
    assert "\nwith the administrator " in text  # the stages named by templates/report
    spreadsheet, page = list(overseen.iter_attachments())
    assert spreadsheet.get_filename() == "mailflow-report-2026-10.csv"
    rows = list(csv.DictReader(io.StringIO(spreadsheet.get_content())))
    assert {"section": "submitted", "key": "total", "value": "3"} in rows
    assert page.get_filename() == "mailflow-report-2026-10.html"
    assert page.get_content_type() == "text/html" and "<svg" in page.get_content()


@pytest.mark.browser
@pytest.mark.xdist_group("chromium")  # with the other browser tests
def test_the_html_report_renders_in_chromium(
    history: App, settings: Settings, capsys: pytest.CaptureFixture[str], browser: Any
) -> None:
    page = settings.source.parent / "report.html"
    run(settings, capsys, "--html", str(page))
    html = page.read_text()
    html5lib.HTMLParser(strict=True).parse(html)
    assert "<script" not in html
    browser.get(page.as_uri())
    assert browser.title == "mailflow report, 2026-10-01 to 2026-11-01"
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.chart")
    assert [c.get_attribute("aria-label") for c in charts] == [
        "Cases by state",
        "Cases by priority area",
        "Cases by economy",
        "Median days in each stage",
    ]
    bars = charts[2].find_elements(By.TAG_NAME, "rect")
    widths = [float(bar.get_attribute("width")) for bar in bars]
    assert widths == [330.0, 165.0]  # Chile 2, Peru 1
    assert all(bar.size["width"] > 0 for bar in bars)  # drawn, not just written
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
