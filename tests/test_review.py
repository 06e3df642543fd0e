"""Reviewing by email (SPEC section 4), end to end over real SMTP: people
click the mailto links of the review emails (parsed with urllib, exactly as
a mail client would) or simply reply, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.message import EmailMessage
from urllib.parse import unquote, urlsplit

import pytest
from conftest import Client, Mailbox, body_html, body_text, headline, purpose
from flows import ADMIN, ANA, FOCAL, FOCAL2, click, links, state, submitted
from mails import message, reply, submission
from sqlalchemy import select

from mailflow.app import App
from mailflow.cli import main


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}", "{FOCAL2}"]\n'


def test_submit_approve_endorse_publish_by_clicking(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """The whole loop with links; the second focal point is told who was first."""
    review = submitted(client, outbox)
    assert {"Approve", "Request changes", "Reject"} <= set(links(review))
    assert "mailto:actions+" in body_text(review)  # the links are in the text part too
    assert review["Reply-To"].startswith("actions+")
    click(client, review, "Approve", ADMIN, "Clear and complete.")
    endorse = outbox.wait_for_mail("focal_review", FOCAL)
    endorse2 = outbox.wait_for_mail("focal_review", FOCAL2)
    assert purpose(endorse) == "Please endorse: Seed capital for micro entrepreneurs"
    approved = outbox.wait_for_mail("case_approved", ANA)
    assert purpose(approved) == "Approved by the administrator"
    assert "Note from the administrator: Clear and complete." in body_text(approved)  # the reason
    done = outbox.wait_for_mail("decision_done", ADMIN)
    assert purpose(done) == "BP-2026-0001 is approved"
    assert "now goes to the focal point of Chile" in body_text(done)
    assert 'We sent your note to the author: "Clear and complete."' in body_text(done)
    assert state(app) == "focal_review"

    click(client, endorse, "Endorse", FOCAL)
    published = outbox.wait_for_mail("case_published", ANA)
    assert purpose(published) == "Your case is published"
    assert state(app) == "published"
    # The focal point who endorsed hears what it did; the other one, that
    # nothing more is needed; the administrator, that it is published.
    endorsed = outbox.wait_for_mail("decision_done", FOCAL)
    assert purpose(endorsed) == "BP-2026-0001 is published"
    assert "/cases/BP-2026-0001/" in body_text(endorsed)
    assert 'href="http://127.0.0.1:8080/cases/BP-2026-0001/"' in body_html(endorsed)
    assert endorsed["Reply-To"] == "help@mailflow.localhost"  # a question reaches a person
    closed = outbox.wait_for_mail("review_closed", FOCAL2)
    assert f"{FOCAL} endorsed BP-2026-0001" in " ".join(body_text(closed).split())
    assert "Published" in purpose(outbox.wait_for_mail("admin_case_update", ADMIN))

    click(client, endorse2, "Endorse", FOCAL2)
    late = outbox.wait_for_mail("token_refused", FOCAL2)
    assert purpose(late) == "Your message changed nothing"
    assert f"{FOCAL} already acted first (endorsed" in body_text(late)
    assert "mailto:" not in body_text(late)
    assert state(app) == "published"
    # One conversation: every email about the case has the same subject.
    subjects = {str(m["Subject"]) for m in outbox.messages() if "BP-2026-0001" in str(m["Subject"])}
    assert subjects == {"[BP-2026-0001] Seed capital for micro entrepreneurs"}
    assert len([m for m in outbox.messages() if m["Subject"] in subjects]) >= 10


def test_changes_requested_by_plain_reply_then_revised(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """A reply starting with "changes": the reason reaches the author, whose
    reply revises the case back to the administrator, who sees what changed."""
    review = submitted(client, outbox)
    client.send(reply(review, ADMIN, "changes Please shorten the summary."))
    asked = outbox.wait_for_mail("changes_requested", ANA)
    assert purpose(asked) == "Please change your submission"
    assert "Please shorten the summary." in body_text(asked)
    assert state(app) == "changes_requested"

    client.send(reply(asked, ANA, "Summary: Seed capital with mentoring."))
    again = outbox.wait_for_mail("admin_review", ADMIN, count=2)
    assert "Changed: summary." in body_text(again)
    assert state(app) == "admin_review"


def test_rejection_at_the_focal_stage_tells_author_and_administrator(
    client: Client, outbox: Mailbox, app: App
) -> None:
    review = submitted(client, outbox)
    click(client, review, "Approve", ADMIN)
    click(
        client, outbox.wait_for_mail("focal_review", FOCAL), "Reject", FOCAL, "Not a real practice."
    )
    rejected = outbox.wait_for_mail("case_rejected", ANA)
    assert purpose(rejected) == "Your case was not accepted"
    assert "Not a real practice." in body_text(rejected)
    assert state(app) == "rejected"


@pytest.mark.parametrize("attack", ["wrong sender", "forged", "flipped", "replay"])
def test_attacks_change_nothing_and_spend_nothing(
    client: Client, outbox: Mailbox, app: App, attack: str
) -> None:
    """A link used by someone else, a made-up or altered token, or a replay:
    refused with one explanation; the rightful owner's link still works."""
    review = submitted(client, outbox)
    url = links(review)["Approve"]
    token = re.search(r"actions\+([a-z2-7]+)@", url)[1]  # type: ignore[index]
    if attack == "wrong sender":
        click(client, review, "Approve", "eve@example.org")
    elif attack == "forged":
        client.send(message(ADMIN, f"actions+{'a' * 32}@mailflow.localhost", "Approve", ""))
    elif attack == "flipped":
        flipped = token[:-1] + ("a" if token[-1] != "a" else "b")
        client.send(message(ADMIN, f"actions+{flipped}@mailflow.localhost", "Approve", ""))
    else:
        click(client, review, "Reject", ADMIN)
        assert state(app) == "rejected"
        click(client, review, "Reject", ADMIN)  # the same link again
    refused = outbox.wait_for_mail(
        "token_refused", "eve@example.org" if attack == "wrong sender" else ADMIN
    )
    assert "Your message changed nothing" in headline(refused)
    if attack != "replay":
        assert state(app) == "admin_review"
        click(client, review, "Approve", ADMIN)
        outbox.wait_for(1, FOCAL)
        assert state(app) == "focal_review"
    else:
        assert state(app) == "rejected"


def test_no_focal_point_goes_to_the_administrator(
    client: Client, outbox: Mailbox, app: App, capsys: pytest.CaptureFixture[str]
) -> None:
    """Peru has no focal point: after approval (here from the shell with
    `mailflow act`) the administrator is asked to endorse in its place,
    and the history says so."""
    submitted(client, outbox, economy="Peru")
    assert main(["act", "BP-2026-0001", "approve", "--config", str(app.settings.source)]) == 0
    endorse = outbox.wait_for_mail("focal_review", ADMIN)
    assert "Peru has no focal point" in body_text(endorse)
    click(client, endorse, "Endorse", ADMIN)
    assert state(app) == "published"
    capsys.readouterr()
    assert main(["case", "BP-2026-0001", "--config", str(app.settings.source)]) == 0
    assert "endorsed by the administrator for Peru" in capsys.readouterr().out


def test_the_author_withdraws_by_replying(client: Client, outbox: Mailbox, app: App) -> None:
    submitted(client, outbox)
    ack = outbox.to(ANA)[-1]
    assert "We received your submission" in headline(ack)
    client.send(reply(ack, ANA, "withdraw"))
    assert purpose(outbox.wait_for_mail("case_withdrawn", ANA)) == "Your case is withdrawn"
    assert state(app) == "withdrawn"


def test_dmarc_failure_reported_by_our_front_mta_refuses_silently(
    write_config,
    database_url: str,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """With [security].authserv_id set, an action whose Authentication-Results
    from that server say dmarc=fail is refused, unanswered (it may be
    forged); the same header from anyone else is ignored."""
    from mails import address

    from mailflow.app import build
    from mailflow.config import load_settings

    settings = load_settings(
        write_config('[security]\nauthserv_id = "mx.example.net"\n', database_url), environ={}
    )
    app = build(settings)
    try:
        outbox = Mailbox(settings.outbound.maildir)
        ingest = tmp_path / "in.eml"

        def deliver(mail: EmailMessage) -> None:
            ingest.write_bytes(bytes(mail))
            assert main(["ingest", str(ingest), "--config", str(settings.source)]) == 0

        deliver(submission())
        deliver(reply(outbox.to(ANA)[-1], ANA))
        review = outbox.to(ADMIN)[-1]
        url = urlsplit(links(review)["Approve"])
        forged = message(ADMIN, unquote(url.path), "Approve", "")
        forged["Authentication-Results"] = (
            "mx.example.net; dmarc=fail header.from=mailflow.localhost"
        )
        deliver(forged)
        assert len(outbox.to(ADMIN)) == 1  # no explanation to a forged address
        assert state(app) == "admin_review"

        fine = message(ADMIN, unquote(url.path), "Approve", "")
        fine["Authentication-Results"] = "evil.example.org; dmarc=fail"  # not our MTA: ignored
        deliver(fine)
        assert state(app) == "focal_review"
        assert address("submit") not in [str(m["Delivered-To"]) for m in outbox.messages()]
    finally:
        app.database.dispose()


def test_two_focal_points_endorsing_at_once_make_one_transition(
    write_config,
    database_url: str,
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    """Two endorsements processed in parallel threads: exactly one moves the
    case; the other, retried, is told who was first."""
    import threading

    from mailflow.app import build
    from mailflow.config import load_settings
    from mailflow.spool import Envelope
    from mailflow.store.models import CaseEvent

    settings = load_settings(
        write_config(f'[economies.CL]\nfocal_points = ["{FOCAL}", "{FOCAL2}"]\n', database_url),
        environ={},
    )
    app = build(settings)
    try:
        outbox = Mailbox(settings.outbound.maildir)
        path = tmp_path / "in.eml"
        for mail in (submission(),):
            path.write_bytes(bytes(mail))
            assert main(["ingest", str(path), "--config", str(settings.source)]) == 0
        path.write_bytes(bytes(reply(outbox.to(ANA)[-1], ANA)))
        assert main(["ingest", str(path), "--config", str(settings.source)]) == 0
        assert main(["act", "BP-2026-0001", "approve", "--config", str(settings.source)]) == 0

        stems = []
        for person in (FOCAL, FOCAL2):
            url = urlsplit(links(outbox.to(person)[-1])["Endorse"])
            click = message(person, unquote(url.path), "Endorse", "")
            envelope = Envelope(person, (unquote(url.path),), datetime.now(UTC), "smtp")
            stems.append(app.spool.put(envelope, bytes(click)))
        entries = [app.spool.claim_by_id(stem) for stem in stems]
        barrier = threading.Barrier(2)

        def process(entry) -> None:  # type: ignore[no-untyped-def]
            barrier.wait()
            app.runner.process(entry)

        threads = [threading.Thread(target=process, args=(e,)) for e in entries]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        app.runner.run_pending()  # the loser, if it was released for a retry
        app.drain_outbox()
        with app.database.transaction() as session:
            endorsed = session.scalars(select(CaseEvent).where(CaseEvent.event == "endorsed")).all()
            assert len(endorsed) == 1
            winner = endorsed[0].actor
        assert state(app) == "published"
        loser = FOCAL2 if winner == FOCAL else FOCAL
        [told] = outbox.of("token_refused", loser)
        assert "Your message changed nothing" in headline(told)
        assert f"{winner} already acted first" in body_text(told)
    finally:
        app.database.dispose()
