"""`mailflow report`: what happened in a period and where it got stuck.

Counts are SQL aggregates; publications are counted by how they were
validated (``Case.validation``, see ``workflow/validation.py``). Stage
times come from the history, read as a stream of (case, time, from, to)
rows in order: only durations are kept, never the cases. Read-only; the
formats are text, markdown, JSON and CSV.

Python passes figures and codes (stage ``admin_review``, figure
``internships_funded``); every word a reader sees comes from
``templates/report/`` and must never be built here.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session, aliased

from mailflow.economies import Economies
from mailflow.notify.render import Renderer
from mailflow.store import roster
from mailflow.store.models import Case, CaseEvent, Participant, Publication, Subscriber, TimedStep
from mailflow.vocab import AREAS, Kind
from mailflow.workflow.flow import Flows
from mailflow.workflow.states import State
from mailflow.workflow.validation import Validation

_TEMPLATES = Renderer()  # one environment for every report; reads templates/report/

# Where a case ends. Every other state is a stage where it waits on someone;
# a stage found in the history but unknown here (a new reviewer stage) is
# reported too, so adding one needs no change in this module.
OUTCOMES = frozenset(
    {
        State.PUBLISHED,
        State.ACCEPTED,
        State.REJECTED,
        State.WITHDRAWN,
        State.UNPUBLISHED,
        State.EXPIRED,
    }
)

# How a publication was validated, in the order the report shows them.
VALIDATIONS = tuple(v.value for v in Validation)

# Participation figures beyond submissions, in the order they are shown.
ENGAGEMENT = (
    "comments_published",
    "internship_applications",
    "internships_funded",
    "internships_self_funded",
)


@dataclass
class StageTime:
    stage: str  # a state code: admin_review, host_review, ...
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
class Validated:
    """One economy's publications in the period by how they were validated
    (a code of ``VALIDATIONS``, or "unknown"), and the distinct organizations
    of its submissions in the period; ``economy`` "" is every economy."""

    economy: str
    published: int
    by_validation: dict[str, int]
    organizations: int


@dataclass
class Report:
    since: str
    until: str
    submitted: int
    by_state: dict[str, int]
    by_economy: dict[str, int]
    by_area: dict[str, int]
    by_kind: dict[str, int]
    published: list[dict[str, Any]]
    validated: list[Validated]
    validated_total: Validated
    stages: list[StageTime]
    focal_points: list[FocalPoints]
    participation: dict[str, Any] = field(default_factory=dict)


def build_report(
    session: Session, economies: Economies, flows: Flows, since: datetime, until: datetime
) -> Report:
    def counted(column: Any) -> dict[Any, int]:
        query = _in_period(select(column, func.count()), since, until).group_by(column)
        return {key: number for key, number in session.execute(query)}

    names = {e.code: e.name for e in economies}
    durations = _stage_durations(session, since, until)
    validated, validated_total = _validated(session, names, since, until)
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
        validated=validated,
        validated_total=validated_total,
        stages=[
            StageTime(stage, len(days), _median(days), _p90(days))
            for stage in _stages(durations)
            for days in [[d for _, d in durations.get(stage, [])]]
        ],
        focal_points=_focal_points(
            session, economies, flows.focal_states(), durations, since, until
        ),
        participation={
            **_participation(session, names, since, until),
            **_engagement(session, since, until),
        },
    )


SUBMISSION_KINDS = (Kind.BEST_PRACTICE, Kind.EXPERIENCE)


def _in_period(query: Select[Any], since: datetime, until: datetime) -> Select[Any]:
    """Submissions (not comments or applications) opened in the period."""
    return query.where(*_submitted_in(since, until))


def _submitted_in(since: datetime, until: datetime) -> tuple[Any, ...]:
    return (
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
        "comments_published": count(Kind.COMMENT, Case.state == State.PUBLISHED),
        "internship_applications": count(
            Kind.INTERNSHIP, Case.state.not_in((State.PENDING_CONFIRMATION, State.EXPIRED))
        ),
        "internships_funded": count(Kind.INTERNSHIP, Case.funding == "funded"),
        "internships_self_funded": count(Kind.INTERNSHIP, Case.funding == "self_funded"),
    }


def _sorted(counts: dict[str, int]) -> dict[str, int]:
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _published_in(since: datetime, until: datetime) -> tuple[Any, ...]:
    """Publications of the period still on the archive."""
    return (
        Publication.withdrawn_at.is_(None),
        Publication.published_at >= since,
        Publication.published_at < until,
    )


def _published(
    session: Session, names: dict[str, str], since: datetime, until: datetime
) -> list[dict[str, Any]]:
    rows = session.execute(
        select(
            Case.public_id,
            Case.title,
            Publication.economy,
            Publication.area,
            Case.validation,
            Case.focal_silent_days,
        )
        .join(Publication, Publication.case_id == Case.id)
        .where(*_published_in(since, until))
        .order_by(Publication.seq)
    )
    return [
        {
            "id": i,
            "title": t,
            "economy": names.get(e, e),
            "area": AREAS[a - 1].name,
            "validation": v,
            "focal_silent_days": d,
        }
        for i, t, e, a, v, d in rows
    ]


def _validated(
    session: Session, names: dict[str, str], since: datetime, until: datetime
) -> tuple[list[Validated], Validated]:
    """Per economy and in total: publications by how they were validated,
    and the organizations that contributed (told apart regardless of case
    and spacing)."""
    published: dict[str, dict[str, int]] = {}
    for economy, validation, number in session.execute(
        select(Publication.economy, Case.validation, func.count())
        .join(Case, Case.id == Publication.case_id)
        .where(*_published_in(since, until))
        .group_by(Publication.economy, Case.validation)
    ):
        counts = published.setdefault(economy, {})
        counts[validation or "unknown"] = number
    organizations: dict[str, set[str]] = {}
    for contributor_economy, organization in session.execute(
        select(Case.economy, Case.organization).where(
            *_submitted_in(since, until),
            Case.state.not_in((State.PENDING_CONFIRMATION, State.EXPIRED)),
            Case.economy.is_not(None),
            Case.organization != "",
        )
    ):
        organization_key = " ".join(organization.casefold().split())
        organizations.setdefault(str(contributor_economy), set()).add(organization_key)

    def figures(economy: str, counts: dict[str, int], contributed: set[str]) -> Validated:
        return Validated(economy, sum(counts.values()), counts, len(contributed))

    rows = [
        figures(names.get(code, code), published.get(code, {}), organizations.get(code, set()))
        for code in published.keys() | organizations.keys()
    ]
    total: dict[str, int] = {}
    for counts in published.values():
        for validation, number in counts.items():
            total[validation] = total.get(validation, 0) + number
    everyone = set().union(*organizations.values())
    return sorted(rows, key=lambda row: row.economy), figures("", total, everyone)


def _stages(durations: dict[str, list[tuple[int, float]]]) -> list[str]:
    """Every stage where a case waits, in the order of the workflow, then any
    other the history holds (e.g. a stage added after this code)."""
    known = [state.value for state in State if state not in OUTCOMES]
    seen = sorted(stage for stage in durations if stage not in OUTCOMES and stage not in known)
    return known + seen


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
    focal_states: tuple[State, ...],
    durations: dict[str, list[tuple[int, float]]],
    since: datetime,
    until: datetime,
) -> list[FocalPoints]:
    # Whose focal points decide (as review.deciding_economy): an internship's
    # host is the economy of the case it is about; a submission's is its own.
    about = aliased(Case)
    deciding = sql_case((Case.kind == Kind.INTERNSHIP, about.economy), else_=Case.economy)
    economy_of: dict[int, str | None] = dict(
        session.execute(
            select(Case.id, deciding)
            .outerjoin(about, Case.about_id == about.id)
            .where(
                Case.id.in_(
                    select(CaseEvent.case_id).where(
                        CaseEvent.to_state.in_(focal_states),
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
    for case_id, days in (stay for stage in focal_states for stay in durations.get(stage, [])):
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
            has_focal_point=bool(roster.confirmed(session, e.code)),
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
            Case.state.not_in((State.PENDING_CONFIRMATION, State.EXPIRED))
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
        writer.writerow(["published_validation", case["id"], case["validation"]])
    for row in [*report.validated, report.validated_total]:
        economy = row.economy or "total"
        writer.writerow(["validated_published", economy, row.published])
        for code in VALIDATIONS:
            writer.writerow([f"validated_{code}", economy, row.by_validation.get(code, 0)])
        writer.writerow(["organizations", economy, row.organizations])
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
    """The text (or markdown) report, also the body of the monthly email."""
    return _TEMPLATES.render(
        "report/report.txt.j2",
        report=report,
        validations=VALIDATIONS,
        engagement=ENGAGEMENT,
        markdown=markdown,
        columns=_columns,
    )


def _columns(header: Sequence[str], rows: Iterable[Sequence[Any]], markdown: bool) -> str:
    """A table laid out: columns padded to line up, or in markdown. Layout
    only: the header and every word in it come from the template."""
    cells = [[("-" if v is None else str(v)) for v in row] for row in rows]
    if markdown:
        return "\n".join(
            [
                "| " + " | ".join(header) + " |",
                "|" + "|".join(" --- " for _ in header) + "|",
                *("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in cells),
            ]
        )
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(header)]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [list(header), *cells]
    )


def as_html(report: Report) -> str:
    """One page with bar charts drawn here as inline SVG: no script, no
    external file, printable; every text from the database escaped."""
    charts = {
        "state": _bars(report.by_state),
        "area": _bars(report.by_area),
        "economy": _bars(report.by_economy),
        "stages": _bars(
            {s.stage: s.median_days for s in report.stages if s.median_days is not None}
        ),
    }
    return _TEMPLATES.render(
        "report/report.html.j2", report=report, charts=charts, validations=VALIDATIONS
    )


def _bars(values: dict[str, Any], longest: int = 330) -> list[dict[str, Any]]:
    top = max([float(v) for v in values.values()] or [0]) or 1
    return [
        {"label": label, "value": value, "width": round(float(value) / top * longest, 1)}
        for label, value in values.items()
    ]
