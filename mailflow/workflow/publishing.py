"""Putting a case on the archive and taking it off again.

Publishing gives the case its fixed places in the archive's lists (see
``Publication``) and queues a ``SiteChange`` in the same transaction; the
archive writer rewrites the pages afterwards, so a crash in between only
delays them. ``unpublish`` and ``republish`` are the administrator's, from
``mailflow act``; what they cause is each flow's (a comment leaves its
case's page and comes back).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow.errors import ActionRefused
from mailflow.store.models import Case, Publication, SiteChange
from mailflow.workflow import steps
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
    """The pages showing this case must be written again (for a funded
    internship, the guide: one funded place fewer is left)."""
    session.add(SiteChange(case_id=case.id, created_at=workflow.clock.now()))


def take_off(session: Session, case: Case, workflow: Workflow) -> None:
    """Called once the case is ``unpublished``: its pages go, its places stay."""
    publication = session.get(Publication, case.id)
    assert publication is not None
    publication.withdrawn_at = workflow.clock.now()
    changed(session, case, workflow)


def unpublish(session: Session, case: Case, workflow: Workflow, *, actor: str, reason: str) -> str:
    _require(case, State.PUBLISHED, "unpublish")
    steps.move(session, case, workflow, Event.UNPUBLISHED, actor=actor, reason=reason)
    return f"{case.public_id}: unpublished by {actor}"


def republish(session: Session, case: Case, workflow: Workflow, *, actor: str, reason: str) -> str:
    _require(case, State.UNPUBLISHED, "publish")
    steps.move(session, case, workflow, Event.REPUBLISHED, actor=actor, reason=reason)
    return f"{case.public_id}: published again by {actor}"


def _require(case: Case, state: State, word: str) -> None:
    if case.state != state:
        raise ActionRefused(f"{case.public_id} is {case.state}: '{word}' needs a {state} case")


SHELL_ACTIONS = {"unpublish": unpublish, "publish": republish}
