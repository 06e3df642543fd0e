"""The language editor stage (SPEC section 4), end to end over real SMTP on
SQLite and PostgreSQL: with ``"editor"`` in ``[workflow].stages`` a case
approved by the administrator goes to the language editors, who approve
it, ask for changes, or reply with a corrected document or summary, which
becomes the case's new version before the case moves on."""

from __future__ import annotations

from email.message import EmailMessage

import pytest
from conftest import Client, Mailbox, body_text, headline, purpose, wait_until
from flows import ADMIN, ANA, FOCAL, click, links, state, submitted
from mails import PDF, reply

from mailflow.app import App
from mailflow.casefile import case_file, format_case

EDITOR = "editor@example.org"
EDITOR_STAGE = (
    '[workflow]\nstages = ["admin", "editor", "focal_point"]\n'
    f'[editors]\naddresses = ["{EDITOR}"]\n'
)


@pytest.fixture
def config_text() -> str:
    return EDITOR_STAGE + f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'


def at_the_editor(client: Client, outbox: Mailbox, app: App) -> EmailMessage:
    """A submission the administrator approved; returns the editor's email."""
    click(client, submitted(client, outbox), "Approve", ADMIN)
    review = outbox.wait_for(1, EDITOR)[-1]
    assert state(app) == "editor_review"
    return review


def mail_about(outbox: Mailbox, address: str, words: str) -> EmailMessage:
    """The email to ``address`` whose subject holds ``words``, once written."""

    def found() -> EmailMessage | None:
        return next((m for m in outbox.to(address) if words in headline(m)), None)

    return wait_until(found, what=f"an email to {address} about {words!r}")  # type: ignore[no-any-return]


def history(app: App) -> str:
    with app.database.transaction() as session:
        return format_case(case_file(session, "BP-2026-0001", app.workflow.economies))


def test_an_editor_approves_and_the_focal_point_is_asked(
    client: Client, outbox: Mailbox, app: App
) -> None:
    review = at_the_editor(client, outbox, app)
    assert purpose(review) == "Please check the English: Seed capital for micro entrepreneurs"
    assert set(links(review)) - {"help@mailflow.localhost"} == {"Approve", "Request changes"}
    approved = mail_about(outbox, ANA, "Approved by the administrator")
    assert "a language editor reads it" in body_text(approved)
    click(client, review, "Approve", EDITOR)
    outbox.wait_for(1, FOCAL)
    assert state(app) == "focal_review"
    assert "editor_review -> focal_review" in history(app)


def test_a_corrected_summary_by_reply_becomes_the_new_version(
    client: Client, outbox: Mailbox, app: App
) -> None:
    review = at_the_editor(client, outbox, app)
    client.send(
        reply(review, EDITOR, "Summary: Seed capital gives micro entrepreneurs a first grant.\n")
    )
    endorse = outbox.wait_for(1, FOCAL)[-1]
    assert state(app) == "focal_review"
    assert "a first grant" in body_text(endorse)  # the focal point reads the new version
    told = mail_about(outbox, ANA, "A language editor corrected your case")
    assert "the summary" in body_text(told) and "a first grant" in body_text(told)
    # A question about the correction reaches a person: the case's reply
    # address forwards it to the administrators (the case cannot change now).
    assert told["Reply-To"].startswith("actions+")
    text = history(app)
    assert "corrected" in text and "the summary was: Seed capital gives micro" in text
    assert "editor_review -> focal_review" in text


def test_a_corrected_document_by_reply_is_kept_beside_the_first(
    client: Client, outbox: Mailbox, app: App
) -> None:
    review = at_the_editor(client, outbox, app)
    corrected = PDF.replace(b"%%EOF", b"% corrected\n%%EOF")
    client.send(reply(review, EDITOR, "", ("seed capital v2.pdf", corrected, "application/pdf")))
    endorse = outbox.wait_for(1, FOCAL)[-1]
    attached = [part.get_filename() for part in endorse.iter_attachments()]
    assert attached == ["seed_capital_v2.pdf"]
    told = mail_about(outbox, ANA, "A language editor corrected your case")
    assert "the document" in body_text(told) and "earlier document is kept" in body_text(told)
    text = history(app)
    assert "Document: seed_capital_v2.pdf" in text
    assert "Earlier document: seed_capital.pdf" in text


def test_an_editor_asking_for_changes_returns_the_case_to_its_author(
    client: Client, outbox: Mailbox, app: App
) -> None:
    review = at_the_editor(client, outbox, app)
    client.send(reply(review, EDITOR, "changes Please write shorter sentences."))
    assert state(app) == "changes_requested"
    asked = mail_about(outbox, ANA, "change")
    assert "Please write shorter sentences." in body_text(asked)


@pytest.mark.parametrize(
    "config_text",
    [f'[editors]\naddresses = ["{EDITOR}"]\n[economies.CL]\nfocal_points = ["{FOCAL}"]\n'],
)
def test_the_default_stages_send_nothing_to_editors(
    client: Client, outbox: Mailbox, app: App, config_text: str
) -> None:
    click(client, submitted(client, outbox), "Approve", ADMIN)
    outbox.wait_for(1, FOCAL)
    assert state(app) == "focal_review"
    assert outbox.to(EDITOR) == []


def test_a_contact_card_attached_by_the_mail_client_is_not_a_correction(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Only a real document is a corrected version: a reply with a vCard
    and no action word is not understood, and the case's document stays."""
    review = at_the_editor(client, outbox, app)
    card = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Ed Editor\r\nEND:VCARD\r\n"
    client.send(
        reply(review, EDITOR, "Looks fine to me, thanks!", ("Ed Editor.vcf", card, "text/vcard"))
    )
    mail_about(outbox, EDITOR, "We did not understand your reply")
    assert state(app) == "editor_review"
    assert "Earlier document" not in history(app)


@pytest.mark.parametrize(
    "config_text",
    [
        EDITOR_STAGE
        + f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n[limits]\nmax_attachment_bytes = 2048\n'
    ],
)
def test_a_corrected_document_too_large_moves_nothing_and_the_editor_hears_why(
    client: Client, outbox: Mailbox, app: App, config_text: str
) -> None:
    review = at_the_editor(client, outbox, app)
    big = PDF.replace(b"%%EOF", b"%" + b"x" * 4096 + b"\n%%EOF")
    client.send(reply(review, EDITOR, "approve", ("seed capital v2.pdf", big, "application/pdf")))
    told = mail_about(outbox, EDITOR, "Your correction was not taken")
    assert "seed_capital_v2.pdf is larger than" in body_text(told)
    assert state(app) == "editor_review" and outbox.to(FOCAL) == []
    client.send(reply(review, EDITOR, "approve"))  # the review email still works
    outbox.wait_for(1, FOCAL)
