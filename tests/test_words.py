"""What people type is understood in every shipped language (SPEC section
3a, issue 20): field names, action words, kinds, priority areas and
economies, alongside English. The ``words`` catalogs first (complete, not
ambiguous), then plain values, then the review loop over real SMTP on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

import pytest
from babel import Locale
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from conftest import Client, Mailbox, purpose
from flows import ADMIN, state
from mails import filled_form, reply, submission

from mailflow.app import App
from mailflow.catalogs import (
    LOCALE,
    SHIPPED,
    catalog_path,
    locale_name,
    read_words,
    translations,
)
from mailflow.digest.subscriptions import wants_digests
from mailflow.economies import Economies, normalise_name
from mailflow.forms import parse_form, reason_from_link
from mailflow.notify.render import Renderer
from mailflow.vocab import AREAS, Kind, match_area, match_kind
from mailflow.words import alternatives, label, leading
from mailflow.workflow.decisions import _WORDS
from mailflow.workflow.fields import REQUIRED, read_submission
from mailflow.workflow.flows.internship import APPLICATION_KEYS

ECONOMIES = Economies.with_overrides({})
PACKAGE = Path(__file__).parent.parent / "mailflow"
FOCAL_CL, FOCAL_VN = "focal.cl@example.org", "focal.vn@example.org"
AN = "An Nguyen <an@example.vn>"
# Action words that mean the same to a review: any positive one is the
# stage's decision, "no" is "reject".
SAME_MEANING = {"approve": "yes", "endorse": "yes", "accept": "yes", "yes": "yes", "no": "reject"}


def _pot() -> set[tuple[str, str]]:
    with (LOCALE / "words.pot").open("rb") as stream:
        return {(m.context or "", str(m.id)) for m in read_po(stream) if m.id}


# -- the catalogs ------------------------------------------------------------------


def test_the_template_holds_every_word_marked_in_python() -> None:
    """words.pot is what `pybabel extract -k pgettext:1c,2` finds in the
    package: no marked word is missing, none is left over."""
    marked = {
        (str(context or ""), str(message))
        for _, _, message, _, context in extract_from_dir(
            str(PACKAGE),
            method_map=[("**.py", "python")],
            keywords={"pgettext": ((1, "c"), 2)},
        )
    }
    assert marked == _pot()


@pytest.mark.parametrize("tag", SHIPPED)
def test_every_catalog_translates_every_word(tag: str) -> None:
    """Each shipped language has a words.po covering every msgid of the
    template, with no empty, fuzzy or blank alternative."""
    with catalog_path(tag).open("rb") as stream:
        catalog = read_po(stream, locale=locale_name(tag))
    entries = {(m.context or "", str(m.id)): m for m in catalog if m.id}
    assert set(entries) == _pot()
    for key, entry in entries.items():
        assert not entry.fuzzy, f"{tag}: {key} is fuzzy"
        written = str(entry.string)
        assert written and all(w.strip() for w in written.split("|")), f"{tag}: {key}"
    assert set(read_words(tag)) == _pot()


def conflicts(tables: dict[str, dict[tuple[str, str], str]]) -> list[str]:
    """Written words (folded) that mean two different things in one group,
    in one language or across languages."""
    meanings: dict[tuple[str, str], set[str]] = defaultdict(set)
    where: dict[tuple[str, str], list[str]] = defaultdict(list)
    for tag, table in tables.items():
        for (group, english), written in table.items():
            meaning = SAME_MEANING.get(english, english) if group == "action" else english
            for word in {english, *written.split("|")}:
                folded = normalise_name(word)
                meanings[group, folded].add(meaning)
                where[group, folded].append(f"{tag}:{english}")
    return [
        f"{group} {folded!r}: {sorted(where[group, folded])}"
        for (group, folded), found in meanings.items()
        if len(found) > 1
    ]


def test_no_word_means_two_things_in_any_language() -> None:
    """One written word is one field, action, kind or area, whichever
    language it is read as ("sí" and "no" everywhere; a Chinese word is
    never both approve and reject)."""
    assert conflicts({tag: read_words(tag) for tag in SHIPPED}) == []


def test_the_ambiguity_check_fails_on_a_word_of_two_actions() -> None:
    """A word that is "approve" in one language and "reject" in another, or
    two fields in one language, is caught."""
    approve = {("action", "approve"): "tak|ok"}
    reject = {("action", "reject"): "tak"}
    two_fields = {("field", "Name"): "nombre", ("field", "Title"): "Nombre"}
    assert conflicts({"xa": approve, "xb": reject}) == ["action 'tak': ['xa:approve', 'xb:reject']"]
    assert conflicts({"xc": two_fields}) == ["field 'nombre': ['xc:Name', 'xc:Title']"]
    assert conflicts({"xa": approve, "xd": {("action", "yes"): "tak"}}) == []


def test_a_label_is_the_first_word_and_english_when_there_is_none() -> None:
    assert label("field", "Priority area", "es") == "Área prioritaria"
    assert label("field", "Economy", "zh-Hans") == "经济体"
    assert label("action", "approve", "vi") == "đồng ý"
    assert label("field", "Kind", "en") == "Kind"
    assert label("field", "Kind", "xx") == "Kind"  # a language without a catalog
    assert label("field", "Not a word", "es") == "Not a word"
    assert alternatives("action", "yes", "es")[:2] == ["sí", "si"]


# -- forms and values ----------------------------------------------------------------


def _economy_name(tag: str, code: str) -> str:
    return str(Locale.parse(locale_name(tag)).territories[code])


@pytest.mark.parametrize("tag", SHIPPED)
def test_the_help_form_filled_in_each_language_is_complete(tag: str) -> None:
    """The help reply's form in a language, filled in with that language's
    kind, economy and area names, is a complete submission."""
    form = Renderer().render("mail/_form.txt.j2", language=tag)
    if tag != "en":
        assert "Kind:" not in form and "Priority area:" not in form
    filled = filled_form(form, tag)
    result = read_submission(parse_form(filled), ECONOMIES)
    assert result.problems == []
    assert (result.kind, result.economy, result.area) == (Kind.EXPERIENCE, "CL", 4)
    assert result.organization == "SERCOTEC"
    assert result.summary == "Capital semilla para microempresas."
    assert result.second_contact == "Luis Rojas <luis@example.org>"
    assert {"kind", "economy", "area", "organization", "summary"} == set(REQUIRED) - {"title"}


def _every(group: str, english: Iterable[str]) -> list[tuple[str, str, str]]:
    return [
        (tag, name, written)
        for tag in SHIPPED
        for name in english
        for written in alternatives(group, name, tag)
    ]


FIELD_OF = {
    "Title": "title",
    "Kind": "kind",
    "Economy": "economy",
    "Priority area": "area",
    "Organization": "organization",
    "Summary": "summary",
    "Second contact": "second_contact",
    "Name": "name",
    "Author": "author",
}


@pytest.mark.parametrize(("tag", "english", "written"), _every("field", FIELD_OF))
def test_every_field_name_is_read_as_its_field(tag: str, english: str, written: str) -> None:
    """Any of a language's words for a field, in upper case, with a
    full-width colon too, is that field."""
    for line in (f"{written}: x y", f"{written.upper()}：x y"):
        assert parse_form(f"{line}\n") == {FIELD_OF[english]: "x y"}, line


APPLICATION_FIELD_OF = {"Case": "case", "Motivation": "summary", "Preferred dates": "dates"}


@pytest.mark.parametrize(("tag", "english", "written"), _every("field", APPLICATION_FIELD_OF))
def test_every_internship_field_name_is_read_as_its_field(
    tag: str, english: str, written: str
) -> None:
    assert parse_form(f"{written}: x\n", APPLICATION_KEYS) == {APPLICATION_FIELD_OF[english]: "x"}


@pytest.mark.parametrize(("tag", "english", "written"), _every("action", ["yes"]))
def test_digests_yes_in_every_language(tag: str, english: str, written: str) -> None:
    """A registration's "Digests: yes", with each language's words."""
    for name in alternatives("field", "Digests", tag):
        assert wants_digests(f"{name}: {written}\n"), f"{name}: {written}"
    assert not wants_digests(f"{label('field', 'Digests', tag)}: {label('action', 'no', tag)}\n")


@pytest.mark.parametrize(
    ("tag", "english", "written"), _every("kind", ["Best practice", "Experience"])
)
def test_every_kind_name_is_its_kind(tag: str, english: str, written: str) -> None:
    assert match_kind(written) == match_kind(english)


@pytest.mark.parametrize(
    ("tag", "english", "written"), _every("area", [area.name for area in AREAS])
)
def test_every_area_name_is_its_area(tag: str, english: str, written: str) -> None:
    assert match_area(written) == match_area(english)


@pytest.mark.parametrize(
    ("written", "code"),
    [
        *[("Chili", None), ("Cile", "CL"), ("智利", "CL"), ("Việt Nam", "VN"), ("viet nam", "VN")],
        *[("Trung Quốc", "CN"), ("中國", "CN"), ("대한민국", "KR"), ("Россия", "RU")],
        *[("ไทย", "TH"), ("Estados Unidos", "US"), ("Papúa Nueva Guinea", "PG")],
    ],
)
def test_economies_are_matched_by_their_cldr_names(written: str, code: str | None) -> None:
    """CLDR's name in any shipped language, accents optional."""
    economy = ECONOMIES.match(written)
    assert (economy.code if economy else None) == code


def test_spanish_and_thai_areas_by_prefix_and_words_without_accents() -> None:
    assert match_area("Acceso a servicios") == match_area("1")
    assert match_area("acceso a la tecnologia") == match_area("2")
    assert match_area("Acceso a") is None  # two areas start so
    assert match_area("การเข้าถึงเทคโนโลยี") == match_area("2")
    assert match_kind("buenas practicas") is Kind.BEST_PRACTICE
    assert match_kind("kinh nghiem") is Kind.EXPERIENCE


# -- replies -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "meaning", "rest"),
    [
        ("Sí, buen trabajo.", "yes", "buen trabajo."),
        ("si", "yes", ""),
        ("Aprobar\n\nMuy útil.", "approve", "Muy útil."),
        ("Đồng ý", "approve", ""),
        ("dong y, cam on", "approve", "cam on"),
        ("Không đồng ý: thiếu tài liệu", "reject", "thiếu tài liệu"),
        ("同意。很好", "approve", "很好"),
        ("不同意，缺少文件", "reject", "缺少文件"),
        ("承認します", "approve", ""),
        ("承認しません。", "reject", ""),
        ("승인합니다.", "approve", ""),
        ("อนุมัติครับ", "approve", "ครับ"),
        ("ไม่อนุมัติ", "reject", ""),
        ("Setuju", "approve", ""),
        ("Да", "yes", ""),
        ("Отклонить: нет документа", "reject", "нет документа"),
        ("Request changes please", "request", "changes please"),
        ("yes", "yes", ""),
    ],
)
def test_a_reply_is_read_from_its_first_words(text: str, meaning: str, rest: str) -> None:
    """The action word at the start of a reply, in any language, and the
    reason after it; the longer word wins ("不同意" is not "同意")."""
    assert leading(text, "action", _WORDS) == (meaning, rest)


@pytest.mark.parametrize(
    "text",
    ["Sin comentarios", "Nope", "네트워크 문제", "ใช้ไม่ได้", "okay then", "是否可以", "状況"],
)
def test_words_that_only_begin_with_an_action_word_are_not_one(text: str) -> None:
    """A word is whole where words are spaced ("Sin" is not "si", "네트워크"
    is not "네"); in Thai a different tone is a different word."""
    assert leading(text, "action", _WORDS)[0] == ""


# -- end to end --------------------------------------------------------------------


@pytest.fixture
def config_text() -> str:
    return (
        # Each economy reads its own language, as built in (the tests pin
        # English otherwise).
        f'[economies.CL]\nfocal_points = ["{FOCAL_CL}"]\nlanguage = "es"\n'
        f'[economies.VN]\nfocal_points = ["{FOCAL_VN}"]\nlanguage = "vi"\n'
    )


VIETNAMESE_FORM = """Loại: Kinh nghiệm
Nền kinh tế: Việt Nam
Lĩnh vực ưu tiên: Tiếp cận công nghệ
Tổ chức: Hợp tác xã Hoa Sen
Tóm tắt: Hợp tác xã bán hàng qua mạng và
  dạy các thành viên dùng điện thoại.
"""


def test_a_vietnamese_loop_with_aprobar_and_dong_y(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """A Vietnamese delegate submits with Vietnamese labels and values; the
    administrator answers "aprobar", the Vietnamese focal point "Đồng ý":
    the case is published."""
    client.send(submission(sender=AN, subject="Bán hàng qua mạng", body=VIETNAMESE_FORM))
    confirm = outbox.wait_for_mail("submission_confirm", "an@example.vn")
    assert confirm["Content-Language"] == "vi"
    client.send(reply(confirm, AN))
    ack = outbox.wait_for_mail("submission_ack", "an@example.vn")
    assert ack["Content-Language"] == "vi"
    vietnamese = translations("vi").gettext("We received your submission")
    assert purpose(ack) == vietnamese != "We received your submission"
    review = outbox.wait_for_mail("admin_review", ADMIN)
    assert review["Content-Language"] == "en"
    assert state(app, "EX-2026-0001") == "admin_review"
    client.send(reply(review, ADMIN, "aprobar"))
    endorse = outbox.wait_for_mail("focal_review", FOCAL_VN)
    assert endorse["Content-Language"] == "vi"
    assert state(app, "EX-2026-0001") == "focal_review"
    client.send(reply(endorse, FOCAL_VN, "Đồng ý. Cảm ơn!"))
    assert state(app, "EX-2026-0001") == "published"
    assert outbox.wait_for_mail("case_published", "an@example.vn")["Content-Language"] == "vi"


def test_a_chilean_focal_point_answering_si_endorses(
    client: Client, outbox: Mailbox, app: App
) -> None:
    """ "Sí" to the review email is the focal point's endorsement."""
    client.send(submission())
    client.send(
        reply(outbox.wait_for_mail("submission_confirm", "ana@example.org"), "ana@example.org")
    )
    client.send(reply(outbox.wait_for_mail("admin_review", ADMIN), ADMIN, "Approve"))
    client.send(reply(outbox.wait_for_mail("focal_review", FOCAL_CL), FOCAL_CL, "Sí"))
    assert state(app) == "published"


@pytest.mark.parametrize(
    "body",
    [
        "Reason (optional, it is sent to the author):\n\nThe summary is too long.",
        "Motivo (opcional, se envía al autor):\nThe summary is too long.",
        "理由（可选，会发给作者）：\n\nThe summary is too long.",
        "Lý do (không bắt buộc): The summary is too long.",
    ],
)
def test_the_prefilled_line_of_an_action_link_is_not_the_reason(body: str) -> None:
    """Whatever language the button's email was prefilled in, the reason is
    what the reviewer wrote under it."""
    assert reason_from_link(body) == "The summary is too long."
    assert reason_from_link("Because: it is short.") == "Because: it is short."
