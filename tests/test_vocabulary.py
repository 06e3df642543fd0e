"""The seed's own words understood (SPEC section 3, issue 19): its labels,
"did you mean" for a value we could not recognise, the example form's
placeholders counted as missing and sign-offs kept out of a summary. Plain
values first, then end to end over real SMTP on SQLite and PostgreSQL."""

from __future__ import annotations

import re

import pytest
from conftest import Client, Mailbox, body_html, body_text, headline
from flows import state
from mails import FORM, address, message, reply, submission
from sqlalchemy import select

from mailflow.app import App
from mailflow.closest import closest
from mailflow.economies import Economies
from mailflow.forms import parse_form, without_closing
from mailflow.store.models import Case, Participant
from mailflow.vocab import Kind, closest_area, closest_kind, match_area
from mailflow.workflow.fields import Problem, is_placeholder, read_submission

ECONOMIES = Economies.with_overrides({})
ANA, AN = "ana@example.org", "an@example.vn"
SEED_FORM = FORM.replace("Priority area: Access to Financial Services", "{area}")


# -- plain values ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "number"),
    [
        ("Access to technologies", 2),
        ("ACCESS TO TECHNOLOGIES.", 2),
        ("Access to technology", 2),
        ("Access to finance", 1),
        ("access to financial service", 1),
        ("Marketing skills", 3),
        ("Management and Marketing Skill", 3),
        ("Regulatory frameworks", 5),
        ("Policies and regulatory framework", 5),
        ("Capacity-building", 6),
    ],
)
def test_the_seed_portals_area_labels_match(written: str, number: int) -> None:
    """Labels of the seed portal, singular or plural, any case or punctuation."""
    area = match_area(written)
    assert area is not None and area.number == number


def test_a_priority_category_line_is_the_priority_area() -> None:
    """The seed's "Priority Category:" key, in any case, is "Priority area:"."""
    form = parse_form("Priority Category: Access to technologies\nKind: bp\n")
    assert read_submission(form, ECONOMIES).area == 2
    assert parse_form("PRIORITY CATEGORY: 3") == {"area": "3"}


def test_single_words_are_not_guessed_but_suggested() -> None:
    """ "Marketing" could be part of more than a name: it is not taken, it
    is the suggestion "3 Management and Marketing Skills"."""
    assert match_area("Marketing") is None
    submission = read_submission({"area": "Marketing"}, ECONOMIES)
    assert submission.area is None
    assert submission.problems == [Problem("area", "unrecognised", "Marketing", "3")]


@pytest.mark.parametrize(
    ("written", "number"),
    [("Marketing", 3), ("Marketting", 3), ("Tecnology", 2), ("Finance", 1), ("access", 1)],
)
def test_the_closest_area(written: str, number: int) -> None:
    area = closest_area(written)
    assert area is not None and area.number == number


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("Vietnum", "VN"),
        ("Philipines", "PH"),
        ("Hongkong", "HK"),
        ("Chille", "CL"),
        ("Peur", "PE"),
        ("Mexcio", "MX"),
        ("Cadada", "CA"),
        ("新加玻", "SG"),  # an input method's slip: one character of three
        ("菲律滨", "PH"),
        ("ロシヤ", "RU"),
    ],
)
def test_the_closest_economy(written: str, code: str) -> None:
    economy = ECONOMIES.closest(written)
    assert economy is not None and economy.code == code


@pytest.mark.parametrize("written", ["Atlantis", "Narnia", "Spain", "India"])
def test_no_economy_is_suggested_when_none_is_close(written: str) -> None:
    assert ECONOMIES.closest(written) is None


def test_nothing_is_suggested_when_nothing_is_close() -> None:
    assert closest_area("7") is None
    assert closest_kind("Case study") is None
    assert closest("", [("chile", "CL")]) is None
    problem = read_submission({"economy": "Atlantis"}, ECONOMIES).problems[0]
    assert (problem.code, problem.closest) == ("unrecognised", "")


def test_the_closest_kind() -> None:
    assert closest_kind("Best practise") is Kind.BEST_PRACTICE
    assert closest_kind("experiance") is Kind.EXPERIENCE
    [problem] = read_submission({"kind": "experiance"}, ECONOMIES).problems
    assert problem.closest == "experience"


def test_values_of_the_example_form_count_as_missing() -> None:
    """The help's example pasted unchanged: its placeholders are not given;
    its real values ("Best practice", area 1) stay real values."""
    pasted = (
        "Kind: Best practice\nEconomy: Your economy\nPriority area: 1\n"
        "Organization: Your organization\n"
        "Summary: Two or three sentences about what you did\n"
        "  and what others can learn from it.\n"
        "Second contact: Full Name <name@example.org>\n"
    )
    submission = read_submission(parse_form(pasted), ECONOMIES)
    assert submission.kind is Kind.BEST_PRACTICE and submission.area == 1
    assert submission.economy is None and submission.problems == []
    assert submission.organization is None and submission.summary is None
    assert submission.second_contact is None
    assert is_placeholder("your ORGANIZATION (optional)")
    assert not is_placeholder("SERCOTEC")


@pytest.mark.parametrize(
    "closing",
    [
        "Saludos, Rosa",
        "\nSaludos cordiales,\nMaría José Núñez",
        "Best regards,\nAna",
        "\nThanks",
        "Thank you!\n\nNguyen Thi Lan\nAgency for SME Development, Viet Nam\n+84 24 1234 5678",
        "--\nAna Perez\nSERCOTEC",
        "谢谢！\n王芳",
    ],
)
def test_a_closing_does_not_end_the_summary(closing: str) -> None:
    form = parse_form(f"Summary: Seed capital for micro entrepreneurs.\n{closing}\n")
    assert form == {"summary": "Seed capital for micro entrepreneurs."}


@pytest.mark.parametrize(
    "last",
    [
        "Thanks to the fund, 200 firms grew.",
        "Thank you notes were sent to every mentor.",
        "Best practice: start small.",
    ],
)
def test_a_sentence_that_starts_like_a_closing_stays(last: str) -> None:
    lines = ["Seed capital for micro entrepreneurs.", last]
    assert without_closing(lines) == lines


# -- end to end ----------------------------------------------------------------------


def confirmed(client: Client, outbox: Mailbox, body: str, sender: str = f"Ana <{ANA}>") -> str:
    """An unregistered sender submits and confirms; the text of the answer
    to the confirmation (an acknowledgement or what to fix)."""
    email = sender.split("<")[-1].rstrip(">")
    before = len(outbox.to(email))
    client.send(submission(sender=sender, body=body))
    confirm = outbox.wait_for(before + 1, email)[-1]
    client.send(reply(confirm, sender))
    return body_text(outbox.wait_for(before + 2, email)[-1])


def test_a_submission_in_the_seeds_words_is_complete(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """ "Priority Category: Access to technologies" is area 2: acknowledged."""
    body = SEED_FORM.format(area="Priority Category: Access to technologies")
    text = confirmed(client, outbox, body)
    assert "We received your submission" in headline(outbox.to(ANA)[-1])
    assert "BP-2026-0001" in text
    assert state(app) == "admin_review"
    with app.database.transaction() as session:
        case = session.scalar(select(Case))
        assert case is not None and case.area == 2


def test_an_unrecognised_area_gets_did_you_mean_also_after_confirming(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """ "Priority area: Marketing" from an unregistered sender: after the
    confirmation the reply says it was not recognised, with the closest
    area, never that it is missing."""
    text = confirmed(client, outbox, SEED_FORM.format(area="Priority area: Marketing"))
    said = " ".join(text.split())
    assert (
        'Priority area: we could not recognise "Marketing"; '
        "did you mean 3 Management and Marketing Skills?" in said
    )
    assert "Priority area: is missing" not in said
    assert "Skills?." not in said
    html = " ".join(body_html(outbox.to(ANA)[-1]).split())
    assert "did you mean 3 Management and Marketing Skills?<br>" in html
    assert state(app) == "incomplete"

    client.send(reply(outbox.to(ANA)[-1], ANA, "Priority area: Marketing skills"))
    assert "We received your submission" in headline(outbox.wait_for(3, ANA)[-1])


def test_the_pasted_help_example_is_not_acknowledged(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """The help's example form pasted unchanged by a new sender: its
    placeholders are listed as missing, nothing of them is stored."""
    client.send(message(AN, address("help"), "how?", ""))  # an empty mail asks for the form
    [help_mail] = outbox.wait_for(1, AN)
    example = re.search(r"^Kind:.*?^Second contact:.*?$", body_text(help_mail), re.M | re.S)
    assert example is not None
    text = confirmed(client, outbox, example[0], f"Nguyen Van An <{AN}>")
    said = " ".join(text.split())
    assert "please add what is missing" in headline(outbox.to(AN)[-1])
    for name in ("Economy", "Organization", "Summary"):
        assert f"{name}: is missing" in said
    assert state(app) == "incomplete"
    with app.database.transaction() as session:
        case = session.scalar(select(Case))
        an = session.scalar(select(Participant).where(Participant.email == AN))
        assert case is not None and an is not None
        assert not (case.economy or case.organization or case.summary or case.second_contact)
        assert not (an.economy or an.organization)


def test_a_sign_off_is_not_stored_with_the_summary(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """A summary ending "Saludos, Rosa" is stored without it."""
    body = FORM.split("Second contact")[0] + "\nSaludos, Rosa\n"
    confirmed(client, outbox, body)
    assert state(app) == "admin_review"
    with app.database.transaction() as session:
        case = session.scalar(select(Case))
        assert case is not None
        assert case.summary == (
            "Seed capital gives micro entrepreneurs a non-reimbursable first funding, "
            "with technical assistance in the first year."
        )
