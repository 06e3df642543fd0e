"""What a kind of case is, as data: one ``Flow`` per kind, registered once
in ``Flows``.

A flow names its kinds and ID prefixes, its reviewer stages in order (each
with the actions its reviewers have and the email that asks them), the
state a case reaches after the last stage, the effects of each event (in
the spirit of Mailman's chains: what a transition causes is declared next
to it, and ``steps.move`` applies it), and the few hooks in which kinds
really differ (what is still missing, what an author's reply brings, the
values their emails show). The transition table is derived from the
stages, so a stage added to ``[workflow].stages`` is a new entry here, not
a search through the handlers.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from mailflow.store.models import Case
from mailflow.vocab import Kind
from mailflow.words import pgettext
from mailflow.workflow.states import Event, State

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from mailflow.triage import Incoming
    from mailflow.workflow.context import Workflow
    from mailflow.workflow.fields import Problem


@dataclass(frozen=True)
class Action:
    """A reviewer's decision: the word a reply starts with (and the token's
    action); the templates name and colour its button."""

    word: str
    event: Event
    positive: bool = False  # moves the case on: "yes" to any review email means it


APPROVE = Action(pgettext("action", "approve"), Event.APPROVED, positive=True)
ENDORSE = Action(pgettext("action", "endorse"), Event.ENDORSED, positive=True)
ACCEPT = Action(pgettext("action", "accept"), Event.ACCEPTED, positive=True)
CHANGES = Action(pgettext("action", "changes"), Event.CHANGES_REQUESTED)
REJECT = Action(pgettext("action", "reject"), Event.REJECTED)
ALL_ACTIONS = (APPROVE, ENDORSE, ACCEPT, CHANGES, REJECT)


class Reviewers(StrEnum):
    ADMINS = "admins"  # [admin].addresses
    EDITORS = "editors"  # [editors].addresses
    FOCAL_POINTS = "focal_points"  # of the deciding economy; reminded, then escalated


@dataclass(frozen=True)
class Stage:
    """One round of review: who decides, with which actions, asked by
    which email (``templates/mail/<template>``)."""

    name: str  # as [workflow].stages names it
    state: State
    reviewers: Reviewers
    actions: tuple[Action, ...]
    template: str

    @property
    def decision(self) -> Action:
        """The action that moves the case on."""
        return next(a for a in self.actions if a.positive)

    @property
    def focal(self) -> bool:
        """Focal points decide: reminders, escalation, and the
        administrators deciding in their place."""
        return self.reviewers is Reviewers.FOCAL_POINTS

    def action(self, word: str) -> Action | None:
        return next((a for a in self.actions if a.word == word), None)


@dataclass(frozen=True)
class Step:
    """One transition as its effects see it."""

    session: Session
    case: Case
    workflow: Workflow
    event: Event
    actor: str
    from_state: State
    to_state: State
    reason: str = ""
    incoming: Incoming | None = None
    changed: tuple[str, ...] = ()
    just_registered: bool = False
    problems: tuple[Problem, ...] = ()  # what the message that caused it got wrong
    # Who has heard of this step already, so that nobody is told twice.
    told: set[str] = field(default_factory=set)

    @property
    def by_admin(self) -> bool:
        return self.actor in self.workflow.admins


class Taken(NamedTuple):
    """What a reply changed (field names, for the history and the
    reviewers) and what in it was wrong."""

    changed: list[str]
    problems: list[Problem]


Effect = Callable[[Step], None]
# An effect runs after an event in any state, or after the event in one
# state only: the same keys as the transition table's.
EffectKey = Event | tuple[State, Event]


@dataclass(frozen=True)
class Flow:
    name: str  # emails about its cases get it as ``flow``
    kinds: tuple[Kind, ...]
    stages: tuple[Stage, ...]
    done: State  # reached by the last stage's decision (or at once, with no stage)
    effects: Mapping[EffectKey, tuple[Effect, ...]]
    missing: Callable[[Case, Workflow], list[Problem]]
    # What the author's reply brings, applied to the case (None: a case of
    # this kind cannot be changed by reply); ``steps.revise`` goes on.
    take: Callable[[Session, Case, Incoming, Workflow], Taken] | None
    context: Callable[[Case, Workflow], dict[str, Any]]
    incomplete_mail: str = ""  # lists what ``missing`` found, once per message
    revisable: bool = True  # changes can be asked for, and answered
    publishes: bool = False  # ``done`` is on the archive, and may be taken off
    transitions: Mapping[tuple[State, Event], State] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "transitions", _transitions(self))

    def next_state(self, state: State, event: Event) -> State | None:
        return self.transitions.get((State(state), event))

    def stage(self, state: State | str) -> Stage | None:
        return next((s for s in self.stages if s.state == state), None)

    def actions_at(self, state: State | str) -> tuple[Action, ...]:
        stage = self.stage(state)
        return stage.actions if stage else ()

    def effects_of(self, state: State, event: Event) -> tuple[Effect, ...]:
        """What ``event`` in ``state`` causes: the effects of the event
        anywhere, then those of the event in that state."""
        return (*self.effects.get(event, ()), *self.effects.get((State(state), event), ()))


def _transitions(flow: Flow) -> dict[tuple[State, Event], State]:
    """Every flow confirms, completes, then passes its stages in order; a
    reviewer may reject (and, where the flow allows, ask for changes, after
    which the revised case starts again at the first stage)."""
    S, E = State, Event
    first = flow.stages[0].state if flow.stages else flow.done
    table = {
        (S.PENDING_CONFIRMATION, E.CONFIRMED): S.INCOMPLETE,
        (S.PENDING_CONFIRMATION, E.EXPIRED): S.EXPIRED,
        (S.INCOMPLETE, E.COMPLETED): first,
    }
    following = [*(s.state for s in flow.stages), flow.done][1:]
    for stage, after in zip(flow.stages, following, strict=True):
        for action in stage.actions:
            if action.positive:
                table[stage.state, action.event] = after
            elif action is REJECT:
                table[stage.state, action.event] = S.REJECTED
            elif action is CHANGES:
                table[stage.state, action.event] = S.CHANGES_REQUESTED
    if flow.revisable:
        table[S.CHANGES_REQUESTED, E.REVISED] = first
    if flow.publishes:
        table[S.PUBLISHED, E.UNPUBLISHED] = S.UNPUBLISHED
        table[S.UNPUBLISHED, E.REPUBLISHED] = S.PUBLISHED
    before_the_end = {s for (s, _) in table} - {S.PUBLISHED, S.UNPUBLISHED}
    for state in before_the_end:
        table[state, E.WITHDRAWN] = S.WITHDRAWN
    return table


class Flows:
    """The registry: every kind of case and the flow it follows."""

    def __init__(self, flows: Iterable[Flow]) -> None:
        self._flows = tuple(flows)
        self._by_kind = {kind: flow for flow in self._flows for kind in flow.kinds}

    def __iter__(self) -> Iterator[Flow]:
        return iter(self._flows)

    def of(self, case: Case) -> Flow:
        """A submission whose kind is not known yet is a submission."""
        return self._by_kind[Kind(case.kind) if case.kind else Kind.BEST_PRACTICE]

    def focal_states(self) -> tuple[State, ...]:
        """The states in which focal points decide, across all flows."""
        return tuple(dict.fromkeys(s.state for f in self for s in f.stages if s.focal))

    def review_states(self) -> tuple[State, ...]:
        return tuple(dict.fromkeys(s.state for f in self for s in f.stages))
