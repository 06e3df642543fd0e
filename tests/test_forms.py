"""The forgiving form and vocabularies of SPEC section 3, as plain values."""

from __future__ import annotations

import io
import zipfile

import pytest
from mails import FORM

from mailflow.documents import detect_format, safe_filename
from mailflow.economies import Economies
from mailflow.forms import parse_form, strip_reply
from mailflow.vocab import Kind, match_area, match_kind
from mailflow.workflow.fields import read_submission, title_from_subject

ECONOMIES = Economies.with_overrides({})


def test_the_spec_form_is_read_with_its_hints() -> None:
    """The example of SPEC section 3, hints in brackets and all."""
    submission = read_submission(parse_form(FORM), ECONOMIES)
    assert submission.kind is Kind.BEST_PRACTICE
    assert submission.economy == "CL"
    assert submission.area == 1
    assert submission.organization == "SERCOTEC"
    assert submission.summary == (
        "Seed capital gives micro entrepreneurs a non-reimbursable first funding, "
        "with technical assistance in the first year."
    )
    assert submission.second_contact == "Luis Rojas <luis@example.org>"
    assert submission.problems == []


def test_keys_in_any_case_and_order_and_summary_runs_to_the_next_key() -> None:
    text = "ORGANISATION: Acme\nsummary: first line\n\nsecond paragraph\nkind: ex\n"
    assert parse_form(text) == {
        "organization": "Acme",
        "summary": "first line\n\nsecond paragraph",
        "kind": "ex",
    }


def test_a_reply_keeps_only_the_new_lines() -> None:
    text = "Priority area: 2\n\nOn Mon, 1 Dec 2026, mailflow wrote:\n> Economy: Peru\n"
    assert strip_reply(text).strip() == "Priority area: 2"
    assert parse_form(text) == {"area": "2"}


@pytest.mark.parametrize(
    ("written", "code"),
    [
        ("Viet Nam", "VN"),
        ("vietnam", "VN"),
        ("VN", "VN"),
        ("Chinese Taipei", "TW"),
        ("Hong Kong, China", "HK"),
        ("the Philippines", "PH"),
        ("México", "MX"),
        ("Republic of Korea", "KR"),
        ("PNG", "PG"),
    ],
)
def test_economies_match_forgivingly(written: str, code: str) -> None:
    economy = ECONOMIES.match(written)
    assert economy is not None and economy.code == code


@pytest.mark.parametrize(
    ("written", "number"),
    [
        ("1", 1),
        ("Area 6", 6),
        ("access to technology", 2),
        ("Management", 3),
        ("4. Compiling Information for Policy Adjustment", 4),
        ("policy and reg", 5),
    ],
)
def test_priority_areas_by_number_name_or_prefix(written: str, number: int) -> None:
    area = match_area(written)
    assert area is not None and area.number == number


def test_ambiguous_or_unknown_areas_are_problems() -> None:
    assert match_area("access") is None  # two areas start with it
    assert match_area("7") is None
    submission = read_submission({"area": "access"}, ECONOMIES)
    assert submission.problems[0].field == "area"
    assert submission.problems[0].code == "unrecognised"
    assert submission.problems[0].value == "access"


@pytest.mark.parametrize(
    ("written", "kind"),
    [
        ("best practice", Kind.BEST_PRACTICE),
        ("BP", Kind.BEST_PRACTICE),
        ("Experience", Kind.EXPERIENCE),
        ("ex", Kind.EXPERIENCE),
    ],
)
def test_kinds(written: str, kind: Kind) -> None:
    assert match_kind(written) is kind


def test_titles_lose_reply_prefixes_and_case_tags() -> None:
    assert title_from_subject("Re: Fwd: [BP-2026-0001] Seed capital") == "Seed capital"


def _zip(names: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in names.items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("content", "extension"),
    [
        (b"%PDF-1.7 ...", "pdf"),
        (b"{\\rtf1\\ansi hello}", "rtf"),
        (bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 100, "doc"),
        (_zip({"[Content_Types].xml": b"", "word/document.xml": b"<w/>"}), "docx"),
        (_zip({"mimetype": b"application/vnd.oasis.opendocument.text"}), "odt"),
        ("Plain text, café".encode(), "txt"),
        (b"MZ\x90\x00\x03\x00", None),
        (_zip({"evil.exe": b"MZ"}), None),
        (b"", None),
    ],
)
def test_document_types_are_decided_by_content(content: bytes, extension: str | None) -> None:
    assert detect_format(content) == extension


@pytest.mark.parametrize(
    ("written", "extension", "safe"),
    [
        ("../../etc/passwd", "txt", "passwd.txt"),
        ("C:\\Users\\ana\\report final.docx", "docx", "report_final.docx"),
        ("invoice.pdf.exe", "pdf", "invoice.pdf.pdf"),
        ("...", "pdf", "document.pdf"),
        ("a" * 500 + ".pdf", "pdf", "a" * 120 + ".pdf"),
    ],
)
def test_filenames_are_sanitised(written: str, extension: str, safe: str) -> None:
    assert safe_filename(written, extension) == safe
