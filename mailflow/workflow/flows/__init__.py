"""Every kind of case and its flow, built once from the settings: the
submission flow's stages come from ``[workflow].stages``, the comment
flow's from ``[comments].moderation``. A new kind of case is a module here
and one line below."""

from __future__ import annotations

from mailflow.config import Settings
from mailflow.workflow.flow import Flows
from mailflow.workflow.flows import comment, internship, submission


def build_flows(settings: Settings) -> Flows:
    return Flows(
        (
            submission.build(list(settings.workflow.stages)),
            comment.build(settings.comments.moderation),
            internship.build(),
        )
    )
