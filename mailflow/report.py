"""`mailflow report`: what happened in a period and where it got stuck.

Counts are SQL aggregates. Stage times come from the history, read as a
stream of (case, time, from, to) rows in order: only durations are kept,
never the cases. Read-only; the formats are text, markdown, JSON and CSV.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import Session

from mailflow.economies import Economies
from mailflow.notify.render import TEMPLATES
from mailflow.store.models import Case, CaseEvent, Participant, Publication, Subscriber, TimedStep
from mailflow.vocab import AREAS, Kind

# The stages people wait in, and how the report names them.
STAGES = {
    "pending_confirmation": "waiting for the author to confirm",
    "incomplete": "waiting for missing information",
    "admin_review": "with the administrator",
    "focal_review": "with the focal point",
    "changes_requested": "with the author for changes",
}


# Participation figures beyond submissions, and how the report names them.
ENGAGEMENT = {
    "comments_published": "Comments published (written in the period)",
    "internship_applications": "Internship applications",
    "internships_funded": "Internships accepted, funded",
    "internships_self_funded": "Internships accepted, self-funded",
}


@dataclass
class StageTime:
    stage: str
    finished: int
    median_days: float | None
    p90_days: float | None


@dataclass
class FocalPoints:
    economy: str
    has_focal_point: bool
    cases: int
    reminders: int
    escalations: int
    median_days: float | None


@dataclass
class Report:
    since: str
    until: str
    submitted: int
    by_state: dict[str, int]
    by_economy: dict[str, int]
    by_area: dict[str, int]
    by_kind: dict[str, int]
    published: list[dict[str, str]]
    stages: list[StageTime]
    focal_points: list[FocalPoints]
    participation: dict[str, Any] = field(default_factory=dict)


def build_report(
    session: Session, economies: Economies, since: datetime, until: datetime
) -> Report:
    def counted(column: Any) -> dict[Any, int]:
        query = _in_period(select(column, func.count()), since, until).group_by(column)
        return {key: number for key, number in session.execute(query)}

    names = {e.code: e.name for e in economies}
    durations = _stage_durations(session, since, until)
    return Report(
        since=since.isoformat(),
        until=until.isoformat(),
        submitted=sum(counted(Case.state).values()),
        by_state=_sorted(counted(Case.state)),
        by_economy=_sorted(
            {names.get(k, k or "unknown"): v for k, v in counted(Case.economy).items()}
        ),
        by_area=_sorted(
            {AREAS[k - 1].name if k else "unknown": v for k, v in counted(Case.area).items()}
        ),
        by_kind=_sorted(
            {Kind(k).label if k else "unknown": v for k, v in counted(Case.kind).items()}
        ),
        published=_published(session, names, since, until),
        stages=[
            StageTime(label, len(days), _median(days), _p90(days))
            for stage, label in STAGES.items()
            for days in [[d for _, d in durations.get(stage, [])]]
        ],
        focal_points=_focal_points(session, economies, durations, since, until),
        participation={
            **_participation(session, names, since, until),
            **_engagement(session, since, until),
        },
    )


SUBMISSION_KINDS = (Kind.BEST_PRACTICE, Kind.EXPERIENCE)


def _in_period(query: Select[Any], since: datetime, until: datetime) -> Select[Any]:
    """Submissions (not comments or applications) opened in the period."""
    return query.where(
        Case.created_at >= since,
        Case.created_at < until,
        or_(Case.kind.is_(None), Case.kind.in_(SUBMISSION_KINDS)),
    )


def _engagement(session: Session, since: datetime, until: datetime) -> dict[str, int]:
    """Comments and internship applications opened in the period."""

    def count(kind: Kind, *where: Any) -> int:
        query = select(func.count()).where(
            Case.kind == kind, Case.created_at >= since, Case.created_at < until, *where
        )
        return int(session.scalar(query) or 0)

    return {
        "comments_published": count(Kind.COMMENT, Case.state == "published"),
        "internship_applications": count(
            Kind.INTERNSHIP, Case.state.not_in(("pending_confirmation", "expired"))
        ),
        "internships_funded": count(Kind.INTERNSHIP, Case.funding == "funded"),
        "internships_self_funded": count(Kind.INTERNSHIP, Case.funding == "self_funded"),
    }


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _published(
    session: Session, names: dict[str, str], since: datetime, until: datetime
) -> list[dict[str, str]]:
    rows = session.execute(
        select(Case.public_id, Case.title, Publication.economy, Publication.area)
        .join(Publication, Publication.case_id == Case.id)
        .where(
            Publication.withdrawn_at.is_(None),
            Publication.published_at >= since,
            Publication.published_at < until,
        )
        .order_by(Publication.seq)
    )
    return [
        {"id": i, "title": t, "economy": names.get(e, e), "area": AREAS[a - 1].name}
        for i, t, e, a in rows
    ]


def _stage_durations(
    session: Session, since: datetime, until: datetime
) -> dict[str, list[tuple[int, float]]]:
    """Stage -> (case id, days spent) for every stay that ended in the period."""
    events = session.execute(
        select(CaseEvent.case_id, CaseEvent.at, CaseEvent.from_state, CaseEvent.to_state)
        .where(CaseEvent.to_state.is_not(None), CaseEvent.at < until)
        .order_by(CaseEvent.case_id, CaseEvent.id)
        .execution_options(yield_per=1000)
    )
    stays: dict[str, list[tuple[int, float]]] = {}
    entered: tuple[int, str | None, datetime] | None = None
    for case_id, at, from_state, to_state in events:
        left = entered and entered[0] == case_id and entered[1] and from_state == entered[1]
        if left and entered and entered[1] and at >= since:
            stays.setdefault(entered[1], []).append(
                (case_id, (at - entered[2]).total_seconds() / 86400)
            )
        entered = (case_id, to_state, at)
    return stays


def _focal_points(
    session: Session,
    economies: Economies,
    durations: dict[str, list[tuple[int, float]]],
    since: datetime,
    until: datetime,
) -> list[FocalPoints]:
    economy_of = dict(
        session.execute(
            select(Case.id, Case.economy).where(
                Case.id.in_(
                    select(CaseEvent.case_id).where(
                        CaseEvent.to_state == "focal_review",
                        CaseEvent.at >= since,
                        CaseEvent.at < until,
                    )
                )
            )
        ).all()
    )
    steps = session.execute(
        select(TimedStep.subject, TimedStep.kind, func.count())
        .where(
            TimedStep.kind.in_(("reminder", "escalation")),
            TimedStep.done_at >= since,
            TimedStep.done_at < until,
        )
        .group_by(TimedStep.subject, TimedStep.kind)
    )
    reminders: dict[str, int] = {}
    escalations: dict[str, int] = {}
    for subject, kind, number in steps:
        economy = economy_of.get(int(subject.removeprefix("case:")))
        if economy:
            target = reminders if kind == "reminder" else escalations
            target[economy] = target.get(economy, 0) + number
    answered: dict[str, list[float]] = {}
    for case_id, days in durations.get("focal_review", []):
        economy = economy_of.get(case_id)
        if economy:
            answered.setdefault(economy, []).append(days)
    cases: dict[str, int] = {}
    for economy in economy_of.values():
        if economy:
            cases[economy] = cases.get(economy, 0) + 1
    return [
        FocalPoints(
            economy=e.name,
            has_focal_point=bool(e.focal_points),
            cases=cases.get(e.code, 0),
            reminders=reminders.get(e.code, 0),
            escalations=escalations.get(e.code, 0),
            median_days=_median(answered.get(e.code, [])),
        )
        for e in economies
    ]


def _participation(
    session: Session, names: dict[str, str], since: datetime, until: datetime
) -> dict[str, Any]:
    registered = session.execute(
        select(Participant.economy, func.count())
        .where(Participant.confirmed_at.is_not(None), Participant.confirmed_at < until)
        .group_by(Participant.economy)
    )
    contributors = session.scalar(
        _in_period(select(func.count(func.distinct(Case.author_id))), since, until).where(
            Case.state.not_in(("pending_confirmation", "expired"))
        )
    )
    subscribers = session.scalar(
        select(func.count()).where(
            Subscriber.confirmed_at.is_not(None),
            Subscriber.left_at.is_(None),
            Subscriber.suspended_at.is_(None),
        )
    )
    return {
        "registered_by_economy": _sorted({names.get(k, k or "unknown"): v for k, v in registered}),
        "contributors": contributors or 0,
        "subscribers": subscribers or 0,
    }


def _median(days: list[float]) -> float | None:
    return round(statistics.median(days), 1) if days else None


def _p90(days: list[float]) -> float | None:
    if not days:
        return None
    ordered = sorted(days)
    return round(ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))], 1)


# -- formats ---------------------------------------------------------------------


def as_json(report: Report) -> str:
    return json.dumps(asdict(report), indent=2, ensure_ascii=False)


def as_csv(report: Report) -> str:
    """One row per figure: section, key, value (a spreadsheet's pivot food)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["section", "key", "value"])
    writer.writerow(["period", "since", report.since])
    writer.writerow(["period", "until", report.until])
    writer.writerow(["submitted", "total", report.submitted])
    for section in ("by_state", "by_economy", "by_area", "by_kind"):
        for key, value in getattr(report, section).items():
            writer.writerow([section, key, value])
    for case in report.published:
        writer.writerow(["published", case["id"], f"{case['title']} ({case['economy']})"])
    for stage in report.stages:
        writer.writerow(["stage_median_days", stage.stage, stage.median_days])
        writer.writerow(["stage_p90_days", stage.stage, stage.p90_days])
    for focal in report.focal_points:
        writer.writerow(["focal_reminders", focal.economy, focal.reminders])
        writer.writerow(["focal_escalations", focal.economy, focal.escalations])
        writer.writerow(["focal_median_days", focal.economy, focal.median_days])
    for key, value in report.participation["registered_by_economy"].items():
        writer.writerow(["registered", key, value])
    writer.writerow(["participation", "contributors", report.participation["contributors"]])
    for key in ENGAGEMENT:
        writer.writerow(["participation", key, report.participation[key]])
    return out.getvalue()


def as_text(report: Report, markdown: bool = False) -> str:
    lines: list[str] = []

    def heading(text: str) -> None:
        lines.extend(["", f"## {text}" if markdown else text.upper(), ""])

    def table(header: list[str], rows: list[list[Any]]) -> None:
        cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
        if markdown:
            lines.append("| " + " | ".join(header) + " |")
            lines.append("|" + "|".join(" --- " for _ in header) + "|")
            lines.extend("| " + " | ".join(row) + " |" for row in cells)
            return
        widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
        for row in [header, *cells]:
            lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())

    title = f"mailflow report, {report.since[:10]} to {report.until[:10]}"
    lines.append(f"# {title}" if markdown else title)
    lines.append(
        f"{report.submitted} {'submission' if report.submitted == 1 else 'submissions'} "
        "in the period."
    )
    for section, label in (
        ("by_state", "State"),
        ("by_kind", "Kind"),
        ("by_area", "Priority area"),
        ("by_economy", "Economy"),
    ):
        heading(f"By {label.lower()}")
        table([label, "Cases"], [[k, v] for k, v in getattr(report, section).items()])
    heading("Published (outcomes)")
    table(
        ["Case", "Title", "Economy", "Area"],
        [[c["id"], c["title"], c["economy"], c["area"]] for c in report.published],
    )
    heading("Time in each stage (days, stays that ended in the period)")
    table(
        ["Stage", "Stays", "Median", "90th percentile"],
        [[s.stage, s.finished, s.median_days, s.p90_days] for s in report.stages],
    )
    heading("Focal points")
    table(
        ["Economy", "Focal point", "Cases", "Reminders", "Escalations", "Median days"],
        [
            [
                f.economy,
                "yes" if f.has_focal_point else "NONE",
                f.cases,
                f.reminders,
                f.escalations,
                f.median_days,
            ]
            for f in report.focal_points
        ],
    )
    heading("Participation")
    table(
        ["Economy", "Registered participants"],
        [[k, v] for k, v in report.participation["registered_by_economy"].items()],
    )
    lines.append("")
    lines.append(f"Contributors in the period: {report.participation['contributors']}")
    lines.append(f"Subscribers now: {report.participation['subscribers']}")
    for key, label in ENGAGEMENT.items():
        lines.append(f"{label}: {report.participation[key]}")
    return "\n".join(lines) + "\n"


def as_html(report: Report) -> str:
    """One page with bar charts drawn here as inline SVG: no script, no
    external file, printable; every text from the database escaped."""
    environment = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined
    )
    charts = {
        "state": _bars(report.by_state),
        "area": _bars(report.by_area),
        "economy": _bars(report.by_economy),
        "stages": _bars(
            {s.stage: s.median_days for s in report.stages if s.median_days is not None}
        ),
    }
    return environment.get_template("report/report.html.j2").render(report=report, charts=charts)


def _bars(values: dict[str, Any], longest: int = 330) -> list[dict[str, Any]]:
    top = max([float(v) for v in values.values()] or [0]) or 1
    return [
        {"label": label, "value": value, "width": round(float(value) / top * longest, 1)}
        for label, value in values.items()
    ]
