"""The focal point roster (SPEC section 4): seeded from the config, then
managed by the administrators by mail to ``focal-points@`` and by
``mailflow focal-points``; a new focal point confirms with one click before
any review reaches them, and then gets the cases already waiting. A focal
point names a deputy and says when they are away, by mail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from conftest import Client, Mailbox, body_html, body_text
from flows import ADMIN, ANA, FOCAL, FOCAL2, click, emails, published, state, submitted
from mails import message, reply
from sqlalchemy import select
from test_internships import FORM, ROSA, apply, registered

from mailflow.app import App, build
from mailflow.cli import main
from mailflow.config import Settings, load_settings
from mailflow.scheduling.summary import send_daily_summary
from mailflow.store.models import Absence, FocalPoint, RosterChange

ROSTER = "focal-points@mailflow.localhost"
NEW = "nuevo.cl@example.org"
DEPUTY = "deputy.cl@example.org"


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'


def said(mail) -> str:  # type: ignore[no-untyped-def]
    return " ".join(body_text(mail).split())


def roster_rows(settings: Settings) -> dict[str, str]:
    """email -> state of the focal points of Chile."""
    app = build(settings)
    try:
        with app.database.transaction() as session:
            rows = session.scalars(select(FocalPoint).where(FocalPoint.economy == "CL"))
            return {row.email: row.state for row in rows}
    finally:
        app.database.dispose()


@pytest.mark.parametrize("config_text", [""])  # Chile has no focal point
def test_a_focal_point_added_by_mail_confirms_and_gets_the_case_already_waiting(
    client: Client, outbox: Mailbox
) -> None:
    # Chile has no focal point: the approved case goes to the administrator.
    click(client, submitted(client, outbox), "Approve", ADMIN)
    outbox.wait_for_mail("focal_review", ADMIN)
    client.send(message(ADMIN, ROSTER, "roster", f"add Chile {NEW}\n"))
    answer = outbox.wait_for_mail("roster", ADMIN)
    assert answer["Subject"] == "The focal points now"
    text = said(answer)
    assert f"add Chile {NEW} added; we asked {NEW} to confirm the role." in text
    assert f"Chile (CL): - {NEW}: waiting for them to confirm" in text
    assert "A new focal point gets an email to confirm the role" in text
    invitation = outbox.wait_for_mail("roster_invite", NEW)
    assert invitation["Subject"] == "Please confirm: focal point for Chile"
    assert "What a focal point does" in said(invitation)
    assert "Until you confirm, you get no cases." in said(invitation)
    # Unconfirmed: no review reaches them.
    assert outbox.of("focal_review", NEW) == []
    click(client, invitation, "Confirm", NEW)
    review = outbox.wait_for_mail("focal_review", NEW)
    assert "As the focal point, please decide" in said(review)
    thanks = outbox.wait_for_mail("roster_set", NEW)
    assert "1 case was already waiting" in said(thanks)
    told = outbox.wait_for_mail("roster", ADMIN, count=2)
    assert told["Subject"] == f"New focal point confirmed: {NEW}"
    assert f"Chile (CL): - {NEW}: confirmed" in said(told)
    click(client, review, "Endorse", NEW)
    outbox.wait_for_mail("case_published", ANA)


@pytest.mark.parametrize("config_text", [""])  # Chile has no focal point
def test_an_unconfirmed_focal_point_gets_nothing_and_the_command_lists_them(
    client: Client,
    outbox: Mailbox,
    app: App,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = ["--config", str(settings.source)]
    assert main(["focal-points", "add", "cl", NEW, *config]) == 0
    printed = capsys.readouterr().out
    assert f"{NEW} added for Chile; asked by email to confirm the role" in printed
    assert f"CL    Chile                        {NEW} waiting for confirmation" in printed
    assert f"CL  {NEW} added, by " in printed and "(command)" in printed
    outbox.wait_for_mail("roster_invite", NEW)
    click(client, submitted(client, outbox), "Approve", ADMIN)
    instead = outbox.wait_for_mail("focal_review", ADMIN)
    assert "Chile has no focal point" in said(instead)
    assert [template for to, template in emails_to(app, NEW)] == ["roster_invite"]
    assert main(["economies", *config]) == 0
    assert f"{NEW} waiting for confirmation" in capsys.readouterr().out
    # Added again while the invitation waits: asked again, and either link confirms.
    assert main(["focal-points", "add", "CL", NEW, *config]) == 0
    assert f"{NEW} has not confirmed for Chile yet; asked again by email" in capsys.readouterr().out
    again = outbox.wait_for_mail("roster_invite", NEW, count=2)
    client.send(reply(again, NEW, "Yes"))
    outbox.wait_for_mail("focal_review", NEW)


def emails_to(app: App, address: str) -> list[tuple[str, str]]:
    return [(to, template) for to, template in emails(app) if to == address]


def test_removed_by_command_the_cases_go_to_the_administrator(
    client: Client,
    outbox: Mailbox,
    settings: Settings,
    app: App,
    capsys: pytest.CaptureFixture[str],
) -> None:
    click(client, submitted(client, outbox), "Approve", ADMIN)
    old_review = outbox.wait_for_mail("focal_review", FOCAL)
    config = ["--config", str(settings.source)]
    assert main(["focal-points", "remove", "Chile", FOCAL, *config]) == 0
    printed = capsys.readouterr().out
    assert f"CL  {FOCAL} added, by config (config)" in printed
    assert f"CL  {FOCAL} removed, by " in printed
    instead = outbox.wait_for_mail("focal_review", ADMIN)
    assert "Chile has no focal point" in said(instead)
    # The removed focal point's review email no longer decides anything.
    click(client, old_review, "Endorse", FOCAL)
    refused = outbox.wait_for_mail("token_refused", FOCAL)
    assert "you no longer review this case" in said(refused)
    assert state(app) == "focal_review"
    click(client, instead, "Endorse on behalf of Chile", ADMIN)
    assert state(app) == "published"
    assert main(["economies", *config]) == 0
    assert "NONE: the administrator endorses in its place" in capsys.readouterr().out
    # Removing again: nothing to do, said so.
    assert main(["focal-points", "remove", "CL", FOCAL, *config]) == 1
    assert f"{FOCAL} is not a focal point of Chile" in capsys.readouterr().err


def test_an_unknown_economy_names_the_accepted_codes(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["focal-points", "add", "Chlie", NEW, "--config", str(settings.source)]) == 1
    error = capsys.readouterr().err
    assert "no economy 'Chlie' (did you mean Chile?); write one of the codes" in error
    assert "AU, BN, CA, CL, " in error


def test_seeded_from_config_and_changed_with_it(
    settings: Settings, write_config: Callable[..., Path], database_url: str
) -> None:
    assert roster_rows(settings) == {FOCAL: "confirmed"}
    # A change made by mail (here: the command) outlives a start with the same config.
    assert main(["focal-points", "add", "CL", NEW, "--config", str(settings.source)]) == 0
    assert roster_rows(settings) == {FOCAL: "confirmed", NEW: "invited"}
    changed = load_settings(
        write_config(f'[economies.CL]\nfocal_points = ["{FOCAL2}"]\n', database_url), environ={}
    )
    assert roster_rows(changed) == {FOCAL: "removed", FOCAL2: "confirmed", NEW: "invited"}
    app = build(changed)
    try:
        with app.database.transaction() as session:
            history = [
                (c.email, c.what, c.how)
                for c in session.scalars(select(RosterChange).order_by(RosterChange.id))
            ]
    finally:
        app.database.dispose()
    assert history == [
        (FOCAL, "added", "config"),
        (NEW, "added", "command"),
        (FOCAL2, "added", "config"),
        (FOCAL, "removed", "config"),
    ]


def test_a_non_administrator_cannot_change_the_roster_and_is_told_politely(
    client: Client, outbox: Mailbox, settings: Settings
) -> None:
    client.send(message(ANA, ROSTER, "please", f"add CL {ANA}\n"))
    note = outbox.wait_for_mail("roster_info", ANA)
    assert "Only an administrator can change the list" in said(note)
    assert "focal-points@mailflow.localhost is for the administrators" in said(note)
    forwarded = outbox.wait_for_mail("question_forwarded", ADMIN)
    assert forwarded["Reply-To"] == ANA
    assert outbox.of("roster_invite") == []
    assert roster_rows(settings) == {FOCAL: "confirmed"}


def test_a_deputy_stands_in_while_the_focal_point_is_away(
    client: Client, outbox: Mailbox, app: App
) -> None:
    client.send(message(FOCAL, ROSTER, "my deputy", f"Deputy: Dora <{DEPUTY}>\n"))
    done = outbox.wait_for_mail("roster_set", FOCAL)
    assert done["Subject"] == "Done: your deputy and absence"
    assert f"Your deputy is now {DEPUTY} (for Chile). We asked them to confirm." in said(done)
    invitation = outbox.wait_for_mail("roster_invite", DEPUTY)
    assert invitation["Subject"] == "Please confirm: deputy focal point for Chile"
    assert "only while the focal point is away" in said(invitation)
    click(client, invitation, "Confirm", DEPUTY)
    outbox.wait_for_mail("roster_set", DEPUTY)
    click(client, submitted(client, outbox), "Approve", ADMIN)
    outbox.wait_for_mail("focal_review", FOCAL)
    assert outbox.of("focal_review", DEPUTY) == []  # the focal point is present
    back = date.today() + timedelta(days=30)
    client.send(message(FOCAL, ROSTER, "holidays", f"Away until: {back.isoformat()}\n"))
    set_away = outbox.wait_for_mail("roster_set", FOCAL, count=2)
    assert f"You are away until {back.isoformat()}" in said(set_away)
    review = outbox.wait_for_mail("focal_review", DEPUTY)
    text = said(review)
    assert f"is away: {FOCAL} until {back.day} {back:%B %Y} (they told us)." in text
    assert "You are their deputy, so this case comes to you now" in text
    assert outbox.of("focal_review", ADMIN) == []
    with app.database.transaction() as session:
        absence = session.get(Absence, FOCAL)
        assert absence is not None and absence.until.date() == back
    click(client, review, "Endorse on behalf of Chile", DEPUTY)
    assert state(app) == "published"


def test_away_without_a_deputy_goes_to_the_administrator_and_back_ends_it(
    client: Client, outbox: Mailbox, app: App
) -> None:
    click(client, submitted(client, outbox), "Approve", ADMIN)
    outbox.wait_for_mail("focal_review", FOCAL)
    back = date.today() + timedelta(days=40)
    written = f"{back.day} {back:%B %Y}"  # as people write it
    client.send(message(FOCAL, ROSTER, "away", f"Away until: {written}\n"))
    outbox.wait_for_mail("roster_set", FOCAL)
    instead = outbox.wait_for_mail("focal_review", ADMIN)
    assert f"The focal point of Chile is away: {FOCAL} until {written} (they told us)" in said(
        instead
    )
    assert "Endorse on behalf of Chile" in body_html(instead)
    client.send(message(FOCAL, ROSTER, "back", "Away until: back\n"))
    done = outbox.wait_for_mail("roster_set", FOCAL, count=2)
    assert "You are back" in said(done)
    with app.database.transaction() as session:
        assert session.get(Absence, FOCAL) is None


def test_a_return_more_than_a_year_away_is_taken_for_a_typo(
    client: Client, outbox: Mailbox, app: App
) -> None:
    typo = date.today().replace(year=date.today().year + 180).isoformat()
    client.send(message(FOCAL, ROSTER, "holidays", f"Away until: {typo}\n"))
    mail = outbox.wait_for_mail("roster_set", FOCAL)
    assert mail["Subject"] == "Nothing changed: your deputy and absence"
    answer = said(mail)
    assert f'"{typo}" is more than a year away, so nothing changed.' in answer
    assert "Write e.g. Away until: 2027-01-10" in answer
    with app.database.transaction() as session:
        assert session.get(Absence, FOCAL) is None


def test_the_daily_summary_shows_the_roster(client: Client, outbox: Mailbox, app: App) -> None:
    client.send(message(FOCAL, ROSTER, "my deputy", f"Deputy: {DEPUTY}\n"))
    outbox.wait_for_mail("roster_invite", DEPUTY)
    submitted(client, outbox)  # something waits, so the summary is sent
    with app.database.transaction() as session:
        assert send_daily_summary(session, app.workflow, since=None)
    summary = said(outbox.wait_for_mail("daily_summary", ADMIN))
    assert (
        f"The focal points: - Chile: {FOCAL}: confirmed; "
        f"{DEPUTY} (deputy): waiting for them to confirm" in summary
    )
    assert "- No focal point: Australia; Brunei Darussalam;" in summary


def test_a_focal_point_who_has_not_confirmed_names_no_deputy(
    client: Client, outbox: Mailbox, settings: Settings
) -> None:
    assert main(["focal-points", "add", "CL", NEW, "--config", str(settings.source)]) == 0
    client.send(message(NEW, ROSTER, "my deputy", f"Deputy: {DEPUTY}\n"))
    note = outbox.wait_for_mail("roster_set", NEW)
    assert "You have not confirmed your role as focal point yet" in said(note)
    assert outbox.of("roster_invite", DEPUTY) == []


def test_an_internship_waiting_for_its_host_reaches_a_newly_confirmed_focal_point(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    case_id = published(client, outbox, app)
    registered(client, outbox, ROSA, "Rosa Diaz", "Peru")
    apply(client, ROSA, case_id, FORM.format(case_id=case_id))
    click(client, outbox.wait_for_mail("internship_review", ADMIN), "Approve", ADMIN)
    assert state(app, "IN-2026-0001") == "host_review"
    outbox.wait_for_mail("host_review", FOCAL)
    assert main(["focal-points", "add", "CL", NEW, "--config", str(settings.source)]) == 0
    invitation = outbox.wait_for_mail("roster_invite", NEW)
    assert outbox.of("host_review", NEW) == []  # not before they confirm
    click(client, invitation, "Confirm", NEW)
    host = outbox.wait_for_mail("host_review", NEW)
    click(client, host, "Accept", NEW, "Welcome.")
    assert state(app, "IN-2026-0001") == "accepted"


def test_deputy_none_removes_the_deputy(
    client: Client, outbox: Mailbox, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    client.send(message(FOCAL, ROSTER, "my deputy", f"Deputy: {DEPUTY}\n"))
    outbox.wait_for_mail("roster_invite", DEPUTY)
    client.send(message(FOCAL, ROSTER, "no deputy", "Deputy: none\n"))
    done = outbox.wait_for_mail("roster_set", FOCAL, count=2)
    assert "You have no deputy now." in said(done)
    assert main(["focal-points", "list", "--config", str(settings.source)]) == 0
    printed = capsys.readouterr().out
    assert f"CL  {DEPUTY} deputy added, by {FOCAL} (mail)" in printed
    assert f"CL  {DEPUTY} deputy removed, by {FOCAL} (mail)" in printed
    assert f"{DEPUTY} (deputy)" not in printed


@pytest.mark.parametrize(
    ("away", "back"),
    [("Ausente hasta", "de vuelta"), ("Vắng mặt đến", "đã về"), ("不在", "戻りました")],
)
def test_away_and_back_in_the_focal_points_own_language(
    client: Client, outbox: Mailbox, app: App, away: str, back: str
) -> None:
    """ "Ausente hasta: <day>" is "Away until:", and "de vuelta" ends it, in
    every shipped language as in English (the words catalogs)."""
    click(client, submitted(client, outbox), "Approve", ADMIN)
    outbox.wait_for_mail("focal_review", FOCAL)
    until = date.today() + timedelta(days=40)
    client.send(message(FOCAL, ROSTER, "away", f"{away}: {until.isoformat()}\n"))
    outbox.wait_for_mail("roster_set", FOCAL)
    assert outbox.wait_for_mail("focal_review", ADMIN)  # the case moved on at once
    with app.database.transaction() as session:
        assert session.get(Absence, FOCAL) is not None
    client.send(message(FOCAL, ROSTER, "back", f"{away}: {back}\n"))
    outbox.wait_for_mail("roster_set", FOCAL, count=2)
    with app.database.transaction() as session:
        assert session.get(Absence, FOCAL) is None


def test_an_answer_without_a_yes_does_not_take_the_role(client: Client, outbox: Mailbox) -> None:
    """ "I am not the right person" in reply to the invitation makes nobody
    a focal point: a person reads it (the administrators get it), and the
    invitation still works afterwards."""
    client.send(message(ADMIN, ROSTER, "roster", f"add Chile {NEW}\n"))
    invitation = outbox.wait_for_mail("roster_invite", NEW)
    answer_to = str(invitation["Reply-To"])
    client.send(message(NEW, answer_to, "Re: invitation", "I am not the right person."))
    forwarded = outbox.wait_for_mail("question_forwarded", ADMIN)
    assert "I am not the right person." in body_text(forwarded)
    assert outbox.of("roster_set", NEW) == []
    click(client, invitation, "Confirm", NEW)
    assert "You are now the focal point for Chile." in said(outbox.wait_for_mail("roster_set", NEW))


def test_a_forged_administrator_changes_nothing(
    write_config: Callable[..., Path], database_url: str, tmp_path: Path
) -> None:
    """With [security].authserv_id set, "add CL attacker@..." whose
    Authentication-Results from our front MTA say dmarc=fail changes no
    roster, invites nobody and is not answered (it may be forged)."""
    settings = load_settings(
        write_config('[security]\nauthserv_id = "mx.example.net"\n', database_url), environ={}
    )
    app = build(settings)
    try:
        forged = message(ADMIN, ROSTER, "roster", "add CL attacker@evil.example\n")
        forged["Authentication-Results"] = "mx.example.net; dmarc=fail header.from=example.org"
        ingest = tmp_path / "in.eml"
        ingest.write_bytes(bytes(forged))
        assert main(["ingest", str(ingest), "--config", str(settings.source)]) == 0
        assert "attacker@evil.example" not in roster_rows(settings)
        assert Mailbox(settings.outbound.maildir).messages() == []
    finally:
        app.database.dispose()
