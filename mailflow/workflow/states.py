"""The states of a case and the one table of allowed transitions (SPEC
section 4). Pure data: the engine is the only code that applies it."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    PENDING_CONFIRMATION = "pending_confirmation"
    INCOMPLETE = "incomplete"
    ADMIN_REVIEW = "admin_review"
    FOCAL_REVIEW = "focal_review"
    CHANGES_REQUESTED = "changes_requested"
    PUBLISHED = "published"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"
    UNPUBLISHED = "unpublished"  # taken off the archive by the administrator
    EXPIRED = "expired"  # the sender never confirmed their address


class Event(StrEnum):
    CONFIRMED = "confirmed"  # the author confirmed their address
    COMPLETED = "completed"  # the last missing piece arrived
    REVISED = "revised"  # the author answered a request for changes
    APPROVED = "approved"  # administrator
    ENDORSED = "endorsed"  # focal point (or administrator on their behalf)
    CHANGES_REQUESTED = "changes_requested"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # the author
    UNPUBLISHED = "unpublished"  # administrator, from the shell
    REPUBLISHED = "republished"  # administrator, undoing an unpublish
    EXPIRED = "expired"  # time: [workflow].confirm_days without a confirmation


S, E = State, Event

TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.PENDING_CONFIRMATION, E.CONFIRMED): S.INCOMPLETE,
    (S.INCOMPLETE, E.COMPLETED): S.ADMIN_REVIEW,
    (S.ADMIN_REVIEW, E.APPROVED): S.FOCAL_REVIEW,
    (S.FOCAL_REVIEW, E.ENDORSED): S.PUBLISHED,
    (S.ADMIN_REVIEW, E.CHANGES_REQUESTED): S.CHANGES_REQUESTED,
    (S.FOCAL_REVIEW, E.CHANGES_REQUESTED): S.CHANGES_REQUESTED,
    (S.CHANGES_REQUESTED, E.REVISED): S.ADMIN_REVIEW,
    (S.ADMIN_REVIEW, E.REJECTED): S.REJECTED,
    (S.FOCAL_REVIEW, E.REJECTED): S.REJECTED,
    (S.PUBLISHED, E.UNPUBLISHED): S.UNPUBLISHED,
    (S.UNPUBLISHED, E.REPUBLISHED): S.PUBLISHED,
    (S.PENDING_CONFIRMATION, E.EXPIRED): S.EXPIRED,
    **{
        (state, E.WITHDRAWN): S.WITHDRAWN
        for state in (
            S.PENDING_CONFIRMATION,
            S.INCOMPLETE,
            S.ADMIN_REVIEW,
            S.FOCAL_REVIEW,
            S.CHANGES_REQUESTED,
        )
    },
}

# States in which the author may still change what they sent.
EDITABLE = frozenset({S.PENDING_CONFIRMATION, S.INCOMPLETE, S.CHANGES_REQUESTED})


def next_state(state: State, event: Event) -> State | None:
    return TRANSITIONS.get((state, event))
