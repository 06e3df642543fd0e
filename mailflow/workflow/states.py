"""The states a case can be in and the events that move it: the words the
engine, the flows and the history share. Pure data; which event takes a
case from which state to which is each flow's table (``flow.py``)."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    PENDING_CONFIRMATION = "pending_confirmation"
    INCOMPLETE = "incomplete"
    ADMIN_REVIEW = "admin_review"
    EDITOR_REVIEW = "editor_review"  # a language editor, when [workflow].stages names one
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
    APPROVED = "approved"  # administrator, or a language editor
    ENDORSED = "endorsed"  # focal point (or administrator on their behalf)
    ACCEPTED = "accepted"  # an internship, by a focal point of the host economy
    CHANGES_REQUESTED = "changes_requested"
    REJECTED = "rejected"
    WITHDRAWN = "withdrawn"  # the author
    UNPUBLISHED = "unpublished"  # administrator, from the shell
    REPUBLISHED = "republished"  # administrator, undoing an unpublish
    EXPIRED = "expired"  # time: [workflow].confirm_days without a confirmation


# States in which the author may still change what they sent.
EDITABLE = frozenset({State.PENDING_CONFIRMATION, State.INCOMPLETE, State.CHANGES_REQUESTED})

# States in which a case waits on somebody (the daily summary lists them).
WAITING = (
    State.PENDING_CONFIRMATION,
    State.INCOMPLETE,
    State.ADMIN_REVIEW,
    State.EDITOR_REVIEW,
    State.FOCAL_REVIEW,
    State.HOST_REVIEW,
    State.CHANGES_REQUESTED,
)
