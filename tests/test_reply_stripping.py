"""Comments sent by email keep only what the person wrote: the reply bodies
in tests/data/replies/ are shaped like the mail clients people use."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailflow.forms import comment_text, strip_reply

REPLIES = Path(__file__).parent / "data" / "replies"


@pytest.mark.parametrize(
    ("name", "comment"),
    [
        (
            "gmail.txt",
            "Thank you, the summary reads well now.\n\n"
            "One question: should the second contact also get the confirmation email?\n\n"
            "Best regards,\nAna",
        ),
        (
            "outlook_desktop.txt",
            "Approved from our side.\n\n"
            "The figures in section 2 match the 2025 annual report.\n\n"
            "Regards,\nLuis Rojas\nMinistry of Economy, Chile",
        ),
        (
            "outlook_original_message.txt",
            "Changes please: the organization is SERCOTEC, not CORFO.\n"
            "From: the field study we did in 2025, the second paragraph is also out of date.\n\n"
            "Thanks,\nLuis",
        ),
        (
            "outlook_web.txt",
            "I agree with publishing it.\n\n"
            "Kind regards,\nNguyen Thi Lan\nAgency for SME Development, Viet Nam",
        ),
        (
            "thunderbird.txt",
            "The case is good. I would add one sentence about the training that came\n"
            "with the funding.\n\nchanges",
        ),
        ("apple_mail_iphone.txt", "Looks good to me. Approve."),
        (
            "gmail_spanish.txt",
            "Hola:\n\nEstamos de acuerdo con la publicación. Sólo una corrección: el nombre del\n"
            "programa es «Capital Semilla Emprende», con mayúsculas.\n\n"
            "Saludos cordiales,\nMaría José Núñez",
        ),
        (
            "top_posted_signature.txt",
            "Please see my two comments below.\n\n"
            '1. The summary should say "micro entrepreneurs", not "small firms".\n'
            "2. The 2024 figures are preliminary.\n\n"
            "I suggest publishing it after these corrections.",
        ),
    ],
)
def test_a_reply_from_a_mail_client_keeps_only_the_comment(name: str, comment: str) -> None:
    """Quote header, quoted history, signature and phone line are all gone."""
    assert comment_text((REPLIES / name).read_text(encoding="utf-8")) == comment


@pytest.mark.parametrize(
    "header",
    [
        "Le lun. 3 nov. 2026 à 10:02, Ana Perez <ana@example.org> a écrit\u202f:",
        "Em seg., 3 de nov. de 2026 às 10:02, Ana Perez <ana@example.org> escreveu:",
        "El 3 nov 2026, a las 10:02, Ana Perez <ana@example.org> escribió:",
        "On 3 Nov 2026, at 10:02, Ana Perez <ana@example.org> wrote:",
        "Ana Perez <ana@example.org> 于2026年11月3日周一 10:02写道：",
        "Ana Perez <ana@example.org> 於 2026年11月3日 週一 上午10:02寫道：",
        "2026年11月3日(月) 10:02 Ana Perez <ana@example.org>:",
        "2026년 11월 3일 (월) 오전 10:02, Ana Perez <ana@example.org>님이 작성:",
        "Pada tanggal Sen, 3 Nov 2026 pukul 10.02, Ana Perez <ana@example.org> menulis:",
        "Ana Perez <ana@example.org> 于2026年11月3日周一\n10:02写道：",
        "On Mon, 3 Nov 2026 at 10:02, Ana Perez\n<ana@example.org> wrote:",
    ],
)
def test_quote_headers_in_other_languages_and_wrapped_are_removed(header: str) -> None:
    """The economies write in many languages; Gmail may wrap the header once."""
    text = f"同意。 Agreed, thank you.\n\n{header}\n\n> Dear Ana Perez,\n> the case is ready.\n"
    assert comment_text(text) == "同意。 Agreed, thank you."


@pytest.mark.parametrize(
    "header",
    [
        "On Mon, 3 Nov 2026 at 10:02, Ana Perez <ana@example.org> wrote:",
        "On Mon, 3 Nov 2026 at 10:02, Ana Perez <\nana@example.org> wrote:",
    ],
)
def test_the_last_line_of_the_comment_is_not_taken_for_the_header(header: str) -> None:
    """No blank line between the comment and the quote header: the comment stays."""
    assert comment_text(f"Line one.\nApprove.\n{header}\n> Dear Ana,\n") == "Line one.\nApprove."


@pytest.mark.parametrize(
    "history",
    [
        "De: APEC SME Best Practices\nEnviado el: lunes, 3 de noviembre de 2026 10:02\n"
        "Para: Ana Perez\nAsunto: Por favor revise\n\nEstimada Ana:",
        "From: APEC SME Best Practices <review@apec-sme.example>\n"
        "Date: Monday, 3 November 2026 at 10:02\nTo: Ana Perez <ana@example.org>\n",
        "On Mon, 3 Nov 2026 at 10:02, APEC SME Best Practices <review@apec-sme.example> wrote:\n"
        "\nDear Ana Perez,\nthe case is ready.",
    ],
)
def test_history_that_is_not_marked_with_a_quote_sign_is_cut(history: str) -> None:
    """Outlook and text made from HTML do not put ">" before the history."""
    assert comment_text(f"Approve.\n\n{history}") == "Approve."


@pytest.mark.parametrize(
    "signature",
    [
        "Sent from my iPhone",
        "Sent from my iPad",
        "Sent from my Android",
        "Get Outlook for iOS<https://aka.ms/o0ukef>",
        "Get Outlook for Android",
        "Sent from Mail for Windows",
        "Sent from Yahoo Mail on Android",
        "Enviado desde mi iPhone",
        "Enviado do meu iPad",
        "--\nAna Perez",
    ],
)
def test_phone_boilerplate_at_the_end_is_removed(signature: str) -> None:
    """Whatever the phone added below the text, alone on its last lines."""
    assert comment_text(f"Approve.\n\n{signature}\n\n") == "Approve."


def test_a_comment_that_mentions_the_phone_line_keeps_it() -> None:
    """Only the last lines are boilerplate; the same words earlier are prose."""
    text = (
        "Reviewers should not write\nSent from my iPhone\nin the summary field.\n\n"
        "Sent from my iPhone\n"
    )
    assert comment_text(text) == (
        "Reviewers should not write\nSent from my iPhone\nin the summary field."
    )


@pytest.mark.parametrize(
    "comment",
    [
        "From: the field study we did in Lima, firms need smaller loans.\nSo I approve.",
        "On Monday we wrote: the fund opens in March.\nThat is still true.",
        "On Monday we wrote:\nthe fund opens in March.",
        "Ana Perez <ana@example.org> is the second contact.\nTitle: Seed capital",
    ],
)
def test_prose_that_looks_like_a_reply_header_is_kept(comment: str) -> None:
    """Without a time, an address and a "wrote" word at the end, it is the comment."""
    assert comment_text(comment) == comment


def test_answers_written_between_the_quoted_lines_are_kept() -> None:
    """An inline reply keeps every answer and loses only the quotes."""
    text = (
        "On Mon, 3 Nov 2026 at 10:02, Ana Perez <ana@example.org> wrote:\n"
        "> Is the title right?\n\nYes.\n\n> Is area 2 right?\n\nNo, it is area 1.\n"
    )
    assert comment_text(text) == "Yes.\n\nNo, it is area 1."


def test_non_ascii_text_and_layout_survive() -> None:
    """Paragraphs, indentation and every script are kept; only blank runs of
    three or more become one, and spaces at line ends go."""
    text = (
        "\n\n  Xin chào,   \r\n\r\n"
        "Đồng ý với việc công bố.\n\n\n\n\n"
        "同意发布。 Согласен. «Très bien» — ¡Sí!\n\n\n"
        "Ana\u00a0\n\n"
    )
    assert comment_text(text) == (
        "  Xin chào,\n\nĐồng ý với việc công bố.\n\n"
        "同意发布。 Согласен. «Très bien» — ¡Sí!\n\n\nAna"
    )


@pytest.mark.parametrize(
    ("text", "new_part"),
    [
        (
            "Priority area: 2\n\nOn Mon, 1 Dec 2026, mailflow wrote:\n> Economy: Peru\n",
            "Priority area: 2\n",
        ),
        ("approve\n> quoted\nstill mine\n", "approve\nstill mine"),
        ("changes\nplease fix\n-----Original Message-----\nFrom: x\n", "changes\nplease fix"),
        ("reject\n________________________________\nFrom: a\n", "reject"),
        ("approve\n-- \nAna\n", "approve"),
        ("approve\nFrom: Ana Perez <ana@example.org>\nSent: x\n", "approve"),
        ("From: the field study\nSent: nothing\n", "From: the field study\nSent: nothing"),
    ],
)
def test_strip_reply_for_forms_and_review_words_is_unchanged(text: str, new_part: str) -> None:
    """The form parser and the review replies keep their simpler cut."""
    assert strip_reply(text) == new_part
