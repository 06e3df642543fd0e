"""Putting a case on the archive and taking it off again.

Publishing gives the case its fixed places in the archive's lists (see
``Publication``) and queues a ``SiteChange`` in the same transaction; the
archive writer rewrites the pages afterwards, so a crash in between only
delays them. ``unpublish`` and ``republish`` are the administrator's, from
``mailflow act``; for a comment they take it off its case's page and put
it back.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.errors import ActionRefused
from mailflow.notify.outbox import Outgoing
from mailflow.store.models import Case, Publication, SiteChange
from mailflow.vocab import Kind
from mailflow.workflow.context import Workflow
from mailflow.workflow.engine import next_number
from mailflow.workflow.states import Event, State


def publish(session: Session, case: Case, workflow: Workflow) -> None:
    """Called once the case is ``published``: a case published again keeps
    its first places, so its pages and links stay where they were."""
    publication = session.get(Publication, case.id)
    if publication is None:
        assert case.area is not None and case.economy is not None
        session.add(
            Publication(
                case_id=case.id,
                seq=next_number(session, "archive"),
                area=case.area,
                area_seq=next_number(session, f"archive:area:{case.area}"),
                economy=case.economy,
                economy_seq=next_number(session, f"archive:economy:{case.economy}"),
                published_at=workflow.clock.now(),
            )
        )
    else:
        publication.withdrawn_at = None
    changed(session, case, workflow)


def changed(session: Session, case: Case, workflow: Workflow) -> None:
    """The pages showing this case must be written again."""
    session.add(SiteChange(case_id=case.id, created_at=workflow.clock.now()))


def unpublish(session: Session, case: Case, workflow: Workflow, *, actor: str, reason: str) -> str:
    _require(case, State.PUBLISHED, "unpublish")
    workflow.engine.transition(session, case, Event.UNPUBLISHED, actor=actor, note=reason)
    if case.kind == Kind.COMMENT and case.about is not None:
        changed(session, case.about, workflow)  # the comment leaves its case's page
        return f"{case.public_id}: removed from the page of {case.about.public_id} by {actor}"
    publication = session.get(Publication, case.id)
    assert publication is not None
    publication.withdrawn_at = workflow.clock.now()
    changed(session, case, workflow)
    workflow.send(
        session,
        Outgoing(
            "case_unpublished",
            case.author.email,
            {"reason": reason},
            case=case,
            reply_to=workflow.admins[0],  # a question goes to a person
        ),
    )
    return f"{case.public_id}: unpublished by {actor}"


def republish(session: Session, case: Case, workflow: Workflow, *, actor: str, reason: str) -> str:
    _require(case, State.UNPUBLISHED, "publish")
    workflow.engine.transition(session, case, Event.REPUBLISHED, actor=actor, note=reason)
    if case.kind == Kind.COMMENT and case.about is not None:
        changed(session, case.about, workflow)
        return f"{case.public_id}: back on the page of {case.about.public_id}"
    publish(session, case, workflow)
    workflow.send(
        session,
        Outgoing("case_published", case.author.email, {"reason": reason}, case=case),
    )
    return f"{case.public_id}: published again by {actor}"


def _require(case: Case, state: State, word: str) -> None:
    if case.state != state:
        raise ActionRefused(f"{case.public_id} is {case.state}: '{word}' needs a {state} case")


SHELL_ACTIONS = {"unpublish": unpublish, "publish": republish}
