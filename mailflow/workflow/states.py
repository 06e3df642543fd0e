"""The states of a case and the tables of allowed transitions, one per
kind of case (SPEC sections 4 and 6): submissions (best practices and
experiences), comments and internship applications. Pure data: the engine
is the only code that applies it."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    PENDING_CONFIRMATION = "pending_confirmation"
    INCOMPLETE = "incomplete"
    ADMIN_REVIEW = "admin_review"
    FOCAL_REVIEW = "focal_review"
    HOST_REVIEW = "host_review"  # an internship, with the host economy's focal points
    ACCEPTED = "accepted"  # an internship
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
    ACCEPTED = "accepted"  # an internship, by a focal point of the host economy
    CHANGES_REQUESTED = "changes_requested"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # the author
    UNPUBLISHED = "unpublished"  # administrator, from the shell
    REPUBLISHED = "republished"  # administrator, undoing an unpublish
    EXPIRED = "expired"  # time: [workflow].confirm_days without a confirmation


S, E = State, Event


def _withdrawable(*states: State) -> dict[tuple[State, Event], State]:
    return {(state, E.WITHDRAWN): S.WITHDRAWN for state in states}


SUBMISSION_TRANSITIONS: dict[tuple[State, Event], State] = {
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
    **_withdrawable(
        S.PENDING_CONFIRMATION,
        S.INCOMPLETE,
        S.ADMIN_REVIEW,
        S.FOCAL_REVIEW,
        S.CHANGES_REQUESTED,
    ),
}

# A comment is moderated (or, with moderation off, approved by mailflow at
# once) and then shown on its case's page until the administrator removes it.
COMMENT_TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.PENDING_CONFIRMATION, E.CONFIRMED): S.ADMIN_REVIEW,
    (S.ADMIN_REVIEW, E.APPROVED): S.PUBLISHED,
    (S.ADMIN_REVIEW, E.REJECTED): S.REJECTED,
    (S.PUBLISHED, E.UNPUBLISHED): S.UNPUBLISHED,
    (S.UNPUBLISHED, E.REPUBLISHED): S.PUBLISHED,
    (S.PENDING_CONFIRMATION, E.EXPIRED): S.EXPIRED,
    **_withdrawable(S.PENDING_CONFIRMATION, S.ADMIN_REVIEW),
}

INTERNSHIP_TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.PENDING_CONFIRMATION, E.CONFIRMED): S.INCOMPLETE,
    (S.INCOMPLETE, E.COMPLETED): S.ADMIN_REVIEW,
    (S.ADMIN_REVIEW, E.APPROVED): S.HOST_REVIEW,
    (S.ADMIN_REVIEW, E.REJECTED): S.REJECTED,
    (S.HOST_REVIEW, E.ACCEPTED): S.ACCEPTED,
    (S.HOST_REVIEW, E.REJECTED): S.REJECTED,
    (S.PENDING_CONFIRMATION, E.EXPIRED): S.EXPIRED,
    **_withdrawable(S.PENDING_CONFIRMATION, S.INCOMPLETE, S.ADMIN_REVIEW, S.HOST_REVIEW),
}

TRANSITIONS_OF_KIND: dict[str, dict[tuple[State, Event], State]] = {
    "comment": COMMENT_TRANSITIONS,
    "internship": INTERNSHIP_TRANSITIONS,
}

# States in which the author may still change what they sent.
EDITABLE = frozenset({S.PENDING_CONFIRMATION, S.INCOMPLETE, S.CHANGES_REQUESTED})


def next_state(state: State, event: Event, kind: str | None = None) -> State | None:
    """Where ``event`` takes a case of ``kind`` (None or a submission kind:
    the submission table) from ``state``, or None if it cannot happen."""
    return TRANSITIONS_OF_KIND.get(kind or "", SUBMISSION_TRANSITIONS).get((state, event))
