"""An out-of-office reply from one of two focal points: the other one has
the case already, so it stays with them; when both are away, the
administrator has it at once (SPEC section 4)."""

from __future__ import annotations

import pytest
from conftest import Client, Mailbox, body_text
from flows import ADMIN, FOCAL, FOCAL2, click, state, submitted
from test_away import auto_reply

from mailflow.app import App

OUT = "I am out of the office until 10 January 2027."


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}", "{FOCAL2}"]\n'


def test_the_other_focal_point_keeps_it_until_both_are_away(
    client: Client, outbox: Mailbox, app: App
) -> None:
    click(client, submitted(client, outbox), "Approve", ADMIN)
    first = outbox.wait_for_mail("focal_review", FOCAL)
    second = outbox.wait_for_mail("focal_review", FOCAL2)
    headers = {"Auto-Submitted": "auto-replied"}
    client.send(auto_reply(first, FOCAL, "Automatic reply", OUT, headers))
    client.send(auto_reply(second, FOCAL2, "Automatic reply", OUT, headers))
    instead = outbox.wait_for_mail("focal_review", ADMIN)
    said = " ".join(body_text(instead).split())
    assert f"{FOCAL} until 10 January 2027" in said and f"{FOCAL2} until 10 January 2027" in said
    assert len(outbox.of("focal_review", ADMIN)) == 1  # not when only the first was away
    assert state(app) == "focal_review"
