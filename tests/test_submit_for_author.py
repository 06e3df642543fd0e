"""Submitting for someone else (SPEC section 3): an administrator's
submission with an ``Author:`` line, and `mailflow import FILE.csv` for a
batch of existing material. Each case waits for its author's yes, by the
real SMTP server and the real command line, on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import Client, Mailbox, body_html, body_text, purpose
from flows import click, emails, links, processed, state
from mails import FORM, PDF, address, message, reply, submission
from sqlalchemy import func, select

from mailflow.app import App
from mailflow.cli import main
from mailflow.config import Settings
from mailflow.store.models import Case, CaseEvent, InboundMessage, Participant

ADMIN = "admin@mailflow.localhost"
ROSA = "rosa@example.org"
ANA = "ana@example.org"
FOR_ROSA = FORM + "Author: Rosa Díaz <rosa@example.org>\n"


def case_row(app: App, public_id: str = "BP-2026-0001") -> tuple[str, str, str]:
    """(author's address, author's name, who the history says submitted it)."""
    with app.database.transaction() as session:
        case = session.scalar(select(Case).where(Case.public_id == public_id))
        assert case is not None
        submitted = next(e for e in case.events if e.event == "submitted")
        return case.author.email, case.author.name, submitted.actor


def test_an_administrator_submits_for_an_author_who_agrees_first(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """The case is the author's; they get one email asking their yes, the
    administrator hears that it waits for it, nothing is reviewed before,
    and their click sends it to the administrator's review."""
    client.send(submission(sender=f"Admin <{ADMIN}>", body=FOR_ROSA))
    ask = outbox.wait_for_mail("submission_confirm", ROSA)
    ack = outbox.wait_for_mail("submitted_for_author", ADMIN)
    assert ask["Subject"] == ack["Subject"] == "[BP-2026-0001] Seed capital for micro entrepreneurs"
    assert purpose(ask) == "Please agree to publish this under your name"
    text = body_text(ask)
    assert "Hello Rosa Díaz," in text and ADMIN in text
    assert "Nothing is published under your name without your yes." in text
    assert "subject=Agree%20BP-2026-0001" in links(ask)["I agree"]
    assert purpose(ack) == "Waiting for the author to agree"
    assert "Nothing is reviewed or published before they agree." in body_text(ack)
    assert case_row(app) == (ROSA, "Rosa Díaz", ADMIN)
    assert state(app) == "pending_confirmation"
    assert not outbox.of("admin_review")

    click(client, ask, "I agree", ROSA)
    review = outbox.wait_for_mail("admin_review", ADMIN)
    assert "Seed capital" in body_text(review)
    assert state(app) == "admin_review"
    assert purpose(outbox.wait_for_mail("submission_ack", ROSA)).startswith("We received")
    with app.database.transaction() as session:
        rosa = session.scalar(select(Participant).where(Participant.email == ROSA))
        assert rosa is not None and rosa.confirmed_at is not None  # her reply registered her


def test_a_registered_author_still_agrees_to_each_case(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Registered long ago is not a yes to this text: the case waits for
    the author's agreement; her own confirmation elsewhere does not release it."""
    client.send(submission(sender=f"Rosa Díaz <{ROSA}>", subject="Her own case"))
    client.send(reply(outbox.wait_for_mail("submission_confirm", ROSA), ROSA, "yes"))
    outbox.wait_for_mail("admin_review", ADMIN)

    client.send(submission(sender=ADMIN, subject="Export coaching", body=FOR_ROSA))
    ask = outbox.wait_for_mail("submission_confirm", ROSA, count=2)
    assert ask["Subject"] == "[BP-2026-0002] Export coaching"
    assert purpose(ask) == "Please agree to publish this under your name"
    assert state(app, "BP-2026-0002") == "pending_confirmation"
    assert len(outbox.of("admin_review", ADMIN)) == 1
    client.send(message(ROSA, address("status"), "status", ""))
    waiting = body_text(outbox.wait_for_mail("status", ROSA))
    assert "for you to agree to its publication under your name" in waiting

    client.send(reply(ask, ROSA, "Yes"))  # a plain reply agrees too
    outbox.wait_for_mail("admin_review", ADMIN, count=2)
    assert state(app, "BP-2026-0002") == "admin_review"


def test_a_case_its_author_never_agrees_to_expires_and_its_sender_hears(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    """No yes within [workflow].confirm_days: the case expires at the next
    tick, nothing is reviewed, the administrator who sent it is told once,
    and a late click on the author's link changes nothing."""
    client.send(submission(sender=f"Admin <{ADMIN}>", body=FOR_ROSA))
    ask = outbox.wait_for_mail("submission_confirm", ROSA)
    outbox.wait_for_mail("submitted_for_author", ADMIN)
    later = (datetime.now(UTC) + timedelta(days=15)).isoformat()
    for _ in range(2):  # the second tick finds nothing more to do
        assert main(["tick", "--now", later, "--config", str(settings.source)]) == 0
    assert state(app) == "expired"
    (told,) = outbox.of("consent_expired", ADMIN)
    assert told["Subject"] == ask["Subject"]
    assert purpose(told) == "The author did not agree in time"
    assert "Nothing was reviewed or published." in body_text(told)
    assert "Nothing was reviewed or published." in body_html(told)
    assert not outbox.of("consent_expired", ROSA) and not outbox.of("admin_review")

    click(client, ask, "I agree", ROSA)
    outbox.wait_for_mail("token_refused", ROSA)
    assert state(app) == "expired" and not outbox.of("admin_review")


def test_an_author_line_from_anyone_else_opens_nothing(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """Only an administrator submits for someone else: anyone else is told
    so, with what to do; nothing is opened and the named person hears nothing.
    An Author: line naming the sender, or only a name, is simply their own
    submission."""
    client.send(submission(body=FOR_ROSA))
    refused = outbox.wait_for_mail("author_refused", ANA)
    assert refused["Subject"] == "Only an administrator can submit for someone else"
    assert "send it again without the Author: line" in body_text(refused)
    processed(app, 1)
    assert not outbox.to(ROSA)
    with app.database.transaction() as session:
        assert session.scalar(select(func.count(Case.id))) == 0

    client.send(submission(body=FORM + "Author: Ana Perez <ana@example.org>\n"))
    outbox.wait_for_mail("submission_confirm", ANA)
    assert case_row(app) == (ANA, "Ana Perez", ANA)
    client.send(submission(subject="Second", body=FORM + "Author: Ana Perez\n"))
    outbox.wait_for_mail("submission_confirm", ANA, count=2)
    assert case_row(app, "BP-2026-0002") == (ANA, "Ana Perez", ANA)
    assert len(outbox.of("author_refused", ANA)) == 1


def test_an_administrators_unreadable_author_line_is_refused(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """An Author: line without an address opens nothing and says how to write it."""
    client.send(submission(sender=ADMIN, body=FORM + "Author: Rosa Díaz\n"))
    refused = outbox.wait_for_mail("author_refused", ADMIN)
    assert refused["Subject"] == "We could not read the Author: line"
    assert "Author: Full Name &lt;name@example.org&gt;" in body_html(refused)
    processed(app, 1)
    assert emails(app) == [(ADMIN, "author_refused")]


# -- mailflow import -------------------------------------------------------------------

HEADER = [
    "Title",
    "Kind",
    "Economy",
    "Priority area",
    "Organization",
    "Summary",
    "Second contact",
    "Document",
    "Author",
]
GOOD = [
    "Seed capital",
    "Best practice",
    "Chile",
    "1",
    "SERCOTEC",
    "Seed capital for first funding.",
    "",
    "docs/seed.pdf",
    "Rosa Díaz <rosa@example.org>",
]


def write_csv(folder: Path, rows: list[list[str]]) -> Path:
    (folder / "docs").mkdir(exist_ok=True)
    (folder / "docs" / "seed.pdf").write_bytes(PDF)
    (folder / "docs" / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    (folder / "docs" / "export.pdf").write_bytes(PDF + b"% export\n")
    path = folder / "material.csv"
    with path.open("w", newline="", encoding="utf-8") as file:
        csv.writer(file).writerows([HEADER, *rows])
    return path


def run_import(settings: Settings, path: Path, *options: str) -> int:
    return main(["import", str(path), *options, "--config", str(settings.source)])


def rows(app: App) -> tuple[int, int]:
    """How many cases and incoming messages the database holds."""
    with app.database.transaction() as session:
        cases = session.scalar(select(func.count(Case.id))) or 0
        messages = session.scalar(select(func.count(InboundMessage.id))) or 0
        return cases, messages


@pytest.fixture
def material(tmp_path: Path) -> Path:
    export = [
        "Export coaching",
        "ex",
        "Viet Nam",
        "Management and Marketing",
        "VCCI",
        "Coaching for exporters.\n\nEconomy: more exports, more jobs.",
        "",
        "docs/export.pdf",
        "Minh Tran <minh@example.org>",
    ]
    bad_economy = [*GOOD[:2], "Chle", *GOOD[3:]]
    bad_economy[0] = "Third"
    no_file = [*GOOD[:7], "docs/missing.pdf", GOOD[8]]
    no_file[0] = "Fourth"
    png = [*GOOD[:7], "docs/photo.png", "Someone <not an address>"]
    png[0] = "Fifth"
    return write_csv(tmp_path, [GOOD, export, bad_economy, no_file, png])


def test_import_opens_good_rows_for_consent_and_names_each_bad_one(
    app: App,
    settings: Settings,
    material: Path,
    outbox: Mailbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Good rows become cases waiting for their authors, who each get the
    request; each bad row gets one line with its line number, the column
    and what is wrong; the exit code says that some were bad."""
    assert run_import(settings, material) == 1
    out, err = capsys.readouterr()
    assert "line 2: BP-2026-0001 opened; waits for rosa@example.org to agree" in out
    assert "line 3: EX-2026-0002 opened; waits for minh@example.org to agree" in out
    bad = err.splitlines()  # the export row's summary spans lines 3 to 5
    assert len(bad) == 3
    assert bad[0] == (f"{material}:6: Economy: 'Chle' is not recognised (did you mean Chile?)")
    assert bad[1] == f"{material}:7: Document: no such file: {material.parent}/docs/missing.pdf"
    assert bad[2] == (
        f"{material}:8: Document: docs/photo.png is not a PDF, DOCX, DOC, ODT, RTF or TXT file; "
        "Author: 'Someone <not an address>' is not recognised "
        "(write it as Full Name <name@example.org>)"
    )
    assert "2 case(s) opened, each waiting for its author; 0 imported before (skipped)" in out

    with app.database.transaction() as session:
        cases = {c.public_id: c for c in session.scalars(select(Case))}
        assert {c.state for c in cases.values()} == {"pending_confirmation"}
        export = cases["EX-2026-0002"]
        assert (export.economy, export.area, export.author.name) == ("VN", 3, "Minh Tran")
        assert export.summary == "Coaching for exporters.\n\nEconomy: more exports, more jobs."
        assert export.document is not None and export.document.filename == "export.pdf"
        actors = {e.actor for c in cases.values() for e in c.events}
        assert actors == {ADMIN}
    ask = outbox.wait_for_mail("submission_confirm", "minh@example.org")
    assert ask["Subject"] == "[EX-2026-0002] Export coaching"
    assert purpose(ask) == "Please agree to publish this under your name"
    assert not outbox.of("submitted_for_author")  # the shell saw each row already


def test_an_imported_case_goes_on_when_its_author_agrees(
    client: Client,
    app: App,
    settings: Settings,
    tmp_path: Path,
    outbox: Mailbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The author's yes to an imported case sends it to review, like any."""
    assert run_import(settings, write_csv(tmp_path, [GOOD])) == 0
    ask = outbox.wait_for_mail("submission_confirm", ROSA)
    click(client, ask, "I agree", ROSA)
    outbox.wait_for_mail("admin_review", ADMIN)
    assert state(app) == "admin_review"


def test_a_dry_run_writes_nothing_and_a_second_run_doubles_nothing(
    app: App,
    settings: Settings,
    material: Path,
    outbox: Mailbox,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--dry-run checks every row and writes nothing; running the import
    twice skips the rows it imported, saying so."""
    assert run_import(settings, material, "--dry-run") == 1
    out, err = capsys.readouterr()
    assert "line 2: good; would ask rosa@example.org to agree" in out
    assert "2 case(s) would be opened" in out and "Nothing was written." in out
    assert len(err.splitlines()) == 3
    assert rows(app) == (0, 0)
    assert not outbox.messages()

    assert run_import(settings, material) == 1
    assert rows(app) == (2, 2)
    capsys.readouterr()
    assert run_import(settings, material) == 1
    out, _ = capsys.readouterr()
    assert "line 2: skipped, imported before as BP-2026-0001" in out
    assert "line 3: skipped, imported before as EX-2026-0002" in out
    assert "0 case(s) opened, each waiting for its author; 2 imported before" in out
    assert rows(app) == (2, 2)
    assert len(outbox.of("submission_confirm", ROSA)) == 1
    with app.database.transaction() as session:
        imported = session.scalar(
            select(func.count(CaseEvent.id)).where(CaseEvent.event == "imported")
        )
        assert imported == 2
