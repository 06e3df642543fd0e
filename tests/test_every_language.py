"""Every shipped language end to end (SPEC section 3a, issue 20): a help
request with a ``Language:`` line is answered in that language, its form
labelled in it; that form, filled in with the language's own names for the
kind, economy and priority area, is a complete submission, confirmed and
acknowledged in that language, while the administrator reads English.

On SQLite only: what differs between the languages is words, not storage
(tests/test_words.py runs a loop in two languages on both databases)."""

from __future__ import annotations

import pytest
from conftest import Client, Mailbox, body_text
from flows import ADMIN
from mails import address, filled_form, message, reply, submission

from mailflow.catalogs import SHIPPED


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("tag", SHIPPED)
def test_help_and_a_submission_in_each_language(tag: str, client: Client, outbox: Mailbox) -> None:
    """Language: <tag> to help@ brings that language's form; filled in with
    its labels and values it is complete: confirmed, then acknowledged, in
    that language; the administrator's review email is in English."""
    sender = f"person.{tag.lower()}@example.org"
    client.send(message(sender, address("help"), "help", f"Language: {tag}\n"))
    answer = outbox.wait_for_mail("help", sender)
    assert answer["Content-Language"] == tag
    guide = "/guide/" if tag == "en" else f"/guide/{tag.lower()}/"
    assert guide in body_text(answer)  # the guide in the reader's language
    form = filled_form(body_text(answer), tag)

    client.send(submission(sender=f"Luz <{sender}>", subject=f"Capital ({tag})", body=form))
    confirm = outbox.wait_for_mail("submission_confirm", sender)
    assert confirm["Content-Language"] == tag
    client.send(reply(confirm, sender))
    acknowledged = outbox.wait_for_mail("submission_ack", sender)
    assert acknowledged["Content-Language"] == tag
    assert "BP-" not in acknowledged["Subject"] and "EX-2026-0001" in acknowledged["Subject"]
    assert outbox.wait_for_mail("admin_review", ADMIN)["Content-Language"] == "en"
