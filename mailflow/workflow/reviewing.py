"""Asking reviewers (SPEC section 4): who reviews a stage, and the review
email each of them gets.

Every reviewer gets one email with one ``mailto:`` link per action of the
stage (each a single-use token bound to case, stage, action and person)
and a reply token in ``Reply-To``, so that a plain reply starting with an
action word works too. The templates name and colour the buttons and write
the prefilled reply; this module passes the action words and addresses.
``decisions.act`` applies what was decided.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session, object_session

from mailflow.notify.outbox import FileAttachment, Outgoing
from mailflow.routing import Route
from mailflow.store import queries, roster
from mailflow.store.models import Case
from mailflow.vocab import AREAS, Kind
from mailflow.workflow import document_links
from mailflow.workflow.context import Workflow
from mailflow.workflow.flow import Reviewers, Stage, Step


def enter_stage(step: Step, stage: Stage) -> None:
    """A case reached ``stage``: its reviewers get the review email. An
    economy without a focal point follows ``[workflow].no_focal_point``:
    its cases go to the administrators, or wait for one (also when
    ``[workflow].admin_endorses`` is false)."""
    session, case, workflow = step.session, step.case, step.workflow
    reviewers = reviewers_of(stage, case, workflow)
    if reviewers:
        request_review(
            session,
            case,
            workflow,
            reviewers,
            stage.template,
            {
                "changed": list(step.changed),
                "no_focal_point": not has_focal_point(case, workflow),
                **(standing_in(case, workflow, reviewers) if stage.focal else {"away": []}),
            },
        )
        return
    workflow.engine.record(
        session,
        case,
        "held",
        "mailflow",
        None,
        note=f"{economy_name(case, workflow)} has no focal point",
    )
    tell_admins(session, case, workflow, "held", "mailflow", "")


def reviewers_of(stage: Stage, case: Case, workflow: Workflow) -> list[str]:
    """Who is asked to decide at ``stage`` (none: the case is on hold)."""
    if stage.reviewers is Reviewers.ADMINS:
        return workflow.admins
    if stage.reviewers is Reviewers.EDITORS:
        return list(workflow.settings.editors.addresses)
    if has_focal_point(case, workflow):
        named = focal_points(case, workflow)
        away = away_focal_points(case, workflow)
        present = [person for person in named if person.lower() not in {a["email"] for a in away}]
        if present:
            return present
        deputy = present_deputy(case, workflow)
        if deputy:
            return [deputy]
        # All of them away, and no deputy: the administrators stand in, as
        # after an escalation.
        return workflow.admins if workflow.settings.workflow.admin_endorses else []
    return workflow.admins if admins_stand_in(workflow) else []


def may_decide(stage: Stage, case: Case, workflow: Workflow, person: str) -> bool:
    """Whether ``person`` decides at ``stage`` today: a review email
    outlives a change of the roster or of the config, the right to use it
    does not. Any focal point or the deputy of the economy may decide,
    away or not; the administrators always may (whether they may stand in
    for a focal point is ``decisions``' question)."""
    if stage.reviewers is Reviewers.EDITORS:
        allowed = list(workflow.settings.editors.addresses)
    elif stage.focal:
        session, code = object_session(case), deciding_economy(case)
        deputies = roster.confirmed(session, code, roster.DEPUTY) if session and code else []
        allowed = [*focal_points(case, workflow), *deputies]
    else:
        allowed = []
    return person.lower() in {a.lower() for a in [*allowed, *workflow.admins]}


def away_focal_points(case: Case, workflow: Workflow) -> list[dict[str, Any]]:
    """The economy's focal points who are away, with when they are back
    and how we know (``reason``: an out-of-office reply, or their own mail)."""
    session = object_session(case)
    assert session is not None
    back = queries.away(session, focal_points(case, workflow), workflow.clock.now())
    reasons = queries.away_reasons(session, list(back))
    return [
        {"email": email, "until": until, "reason": reasons.get(email, "")}
        for email, until in sorted(back.items())
    ]


def present_deputy(case: Case, workflow: Workflow) -> str:
    """The confirmed deputy of the deciding economy, unless away too."""
    session, code = object_session(case), deciding_economy(case)
    if session is None or not code:
        return ""
    deputies = roster.confirmed(session, code, roster.DEPUTY)
    away = queries.away(session, deputies, workflow.clock.now())
    return next((d for d in deputies if d.lower() not in away), "")


def standing_in(case: Case, workflow: Workflow, reviewers: list[str]) -> dict[str, Any]:
    """What a focal review email says about who is away and who stands in:
    the deputy is named when the case goes to them."""
    deputy = present_deputy(case, workflow)
    return {
        "away": away_focal_points(case, workflow),
        "deputy": deputy if deputy and reviewers == [deputy] else "",
    }


def catch_up(session: Session, case: Case, workflow: Workflow, stage: Stage) -> list[str]:
    """The roster changed (a focal point confirmed, was removed or went
    away): whoever reviews the case now and holds no review email for it
    yet gets one. Returns who was asked."""
    reviewers = reviewers_of(stage, case, workflow)
    holding = roster.asked(session, case)
    new = [person for person in reviewers if person.lower() not in holding]
    if new:
        request_review(
            session,
            case,
            workflow,
            new,
            stage.template,
            {
                "changed": [],
                "no_focal_point": not has_focal_point(case, workflow),
                **standing_in(case, workflow, reviewers),
            },
            on_behalf=not set(new) & set(focal_points(case, workflow)),
        )
    return new


def reroute(session: Session, case: Case, workflow: Workflow, stage: Stage) -> None:
    """A focal point turned out to be away: when no other focal point of
    the economy is present (they hold the review email already), the case
    goes at once to whoever stands in (the deputy, else the
    administrators), saying why, or waits, saying so."""
    if not reviewers_of(stage, case, workflow):
        tell_admins(session, case, workflow, "away", "mailflow", "")
        return
    catch_up(session, case, workflow, stage)


def admins_stand_in(workflow: Workflow) -> bool:
    """The administrators decide for an economy that has no focal point."""
    settings = workflow.settings.workflow
    return settings.no_focal_point == "admin" and settings.admin_endorses


def focal_points(case: Case, workflow: Workflow) -> list[str]:
    """The confirmed focal points of the economy that decides the case,
    from the roster: the one lookup the rest of the code makes."""
    session, code = object_session(case), deciding_economy(case)
    return roster.confirmed(session, code) if session is not None and code else []


def has_focal_point(case: Case, workflow: Workflow) -> bool:
    return bool(focal_points(case, workflow))


def request_review(
    session: Session,
    case: Case,
    workflow: Workflow,
    reviewers: list[str],
    template: str,
    context: dict[str, Any],
    *,
    on_behalf: bool = False,
) -> None:
    """One review email per reviewer, each with its own links; with
    ``on_behalf`` the administrators decide for the economy's focal point."""
    document = case.document
    linked = document is not None and document_links.too_large(document, workflow)
    attachments = (
        (
            FileAttachment(
                document.filename,
                document.content_type,
                document.content,
                stored_as=document.sha256,
            ),
        )
        if document and not linked
        else ()
    )
    for person in reviewers:
        reply = workflow.tokens.issue(session, "review", person, case=case)
        download = document_links.link_for(session, case, workflow, person) if linked else ""
        workflow.send(
            session,
            Outgoing(
                template,
                person,
                {
                    **case_values(case, workflow),
                    **context,
                    "links": links_for(session, case, workflow, person, on_behalf=on_behalf),
                    "document_link": download,
                },
                case=case,
                reply_to=workflow.action_address(reply),
                attachments=attachments,
            ),
        )


def links_for(
    session: Session, case: Case, workflow: Workflow, person: str, *, on_behalf: bool = False
) -> list[dict[str, str]]:
    """One single-use action address per action of the case's current
    stage; ``templates/mail/_actions.j2`` makes each a button."""
    stage = workflow.flows.of(case).stage(case.state)
    links = []
    for action in stage.actions if stage else ():
        token = workflow.tokens.issue(session, action.word, person, case=case)
        links.append(
            {
                "word": action.word,
                "address": workflow.action_address(token),
                "on_behalf": economy_name(case, workflow) if on_behalf and action.positive else "",
            }
        )
    return links


def case_values(case: Case, workflow: Workflow) -> dict[str, Any]:
    """The values every email about a case shows: the readable fields and
    what its kind's flow adds."""
    return {
        "kind": Kind(case.kind) if case.kind else None,
        "area": AREAS[case.area - 1] if case.area else None,
        "economy": workflow.economies.get(case.economy) if case.economy else None,
        "flow": workflow.flows.of(case).name,
        **workflow.flows.of(case).context(case, workflow),
    }


def deciding_economy(case: Case) -> str | None:
    """Whose focal points decide: an internship is hosted by the economy
    of the case it is about; a submission belongs to its author's."""
    if case.kind == Kind.INTERNSHIP:
        return case.about.economy if case.about else None
    return case.economy


def economy_name(case: Case, workflow: Workflow) -> str:
    """The name of the economy whose focal points decide, for the history
    and the buttons (a proper name: it needs no translation)."""
    code = deciding_economy(case)
    return workflow.economies.get(code).name if code else ""


def leave_stage(step: Step, stage: Stage) -> None:
    """A case left ``stage``: whoever decided hears what their decision
    did, and the stage's other reviewers, who hold review emails of their
    own, that nothing more is needed from them (the focal points too, when
    an administrator decided in their place)."""
    session, case, workflow = step.session, step.case, step.workflow
    decided = any(action.event is step.event for action in stage.actions)
    context = {
        **case_values(case, workflow),
        "event": str(step.event),
        "state": str(step.to_state),
        "actor": step.actor,
        "by_admin": step.by_admin,
        "reason": step.reason,
        "next": _next_reviewers(step),
        "deciding": economy_name(case, workflow),
    }
    if decided:
        workflow.send(
            session,
            Outgoing(
                "decision_done",
                step.actor,
                context,
                case=case,
                answering=step.incoming,
                reply_to=_questions(workflow),
                earned=True,
            ),
        )
        step.told.add(step.actor)
    for person in reviewers_of(stage, case, workflow):
        if person not in step.told:
            workflow.send(
                session,
                Outgoing(
                    "review_closed",
                    person,
                    context,
                    case=case,
                    reply_to=_questions(workflow),
                ),
            )
            step.told.add(person)


def _next_reviewers(step: Step) -> str:
    """Who decides next, as the confirmation names them: ``admins``,
    ``editors``, ``focal_points``, ``nobody`` (on hold), or "" when the
    case left review."""
    stage = step.workflow.flows.of(step.case).stage(step.to_state)
    if stage is None:
        return ""
    reviewers = reviewers_of(stage, step.case, step.workflow)
    if not reviewers:
        return "nobody"
    if stage.focal and not has_focal_point(step.case, step.workflow):
        return "admins"
    return str(stage.reviewers)


def _questions(workflow: Workflow) -> str:
    """Where a reply to a note about a decision goes: ``help@``, which
    passes a question on to the administrators and tells the person so."""
    return workflow.router.address(Route.HELP)


def tell_admins(
    session: Session,
    case: Case,
    workflow: Workflow,
    what: str,
    actor: str,
    reason: str,
    told: set[str] | None = None,
) -> None:
    """The administrators hear ``what`` happened; those in ``told`` have
    heard of it already."""
    context = {**case_values(case, workflow), "what": what, "actor": actor, "reason": reason}
    for admin in workflow.admins:
        if told is None or admin not in told:
            workflow.send(session, Outgoing("admin_case_update", admin, context, case=case))
