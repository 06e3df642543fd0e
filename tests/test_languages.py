"""Every participant reads mailflow in their own language (SPEC section 3a,
issue 20): which language each person reads, in SPEC's order; each
recipient of one event in theirs; Content-Language on every email; a
``Language:`` line in any message; the guide at /guide/<tag>/. End to end
over real SMTP on SQLite and PostgreSQL, the order itself in-process.

The Spanish words these tests read ("¿Preguntas? Escriba a", "Cómo
participar") are in mailflow/locale/es/LC_MESSAGES/mailflow.po."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import Client, Mailbox, body_html, body_text, wait_until
from flows import ADMIN, ANA, FOCAL, click, submitted
from mails import FORM, address, message, reply, submission

from mailflow import catalogs, languages
from mailflow.config import Settings, load_settings
from mailflow.errors import ConfigError
from mailflow.languages import Readers

BOB = "bob@example.org"
SPANISH_FOOTER = "¿Preguntas? Escriba a help@mailflow.localhost"
ENGLISH_FOOTER = "Questions? Write to help@mailflow.localhost"


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}"]\nlanguage = "es"\n'


# -- which language, in-process -------------------------------------------------


@pytest.mark.parametrize(
    ("written", "tag"),
    [
        ("es", "es"),
        ("ES", "es"),
        ("es-CL", "es"),
        ("Spanish", "es"),
        ("Español", "es"),
        ("espanol", "es"),
        ("中文", "zh-Hans"),
        ("Chinese (Traditional)", "zh-Hant"),
        ("zh-TW", "zh-Hant"),
        ("zh-hans", "zh-Hans"),
        ("Tiếng Việt", "vi"),
        ("Vietnamese", "vi"),
        ("русский", "ru"),
        ("ไทย", "th"),
        ("日本語", "ja"),
        ("Bahasa", None),
        ("Klingon", None),
        ("fr", None),
        ("", None),
    ],
)
def test_a_language_line_is_matched_by_tag_english_name_or_own_name(
    written: str, tag: str | None
) -> None:
    """``Language:`` names a shipped language by its tag, its English name
    or its own name, in any case and without accents; anything else is no
    language at all."""
    assert languages.match(written) == tag


def readers() -> Readers:
    return Readers.build(
        site="id",
        admin="en",
        staff=["admin@x.org", "editor@x.org"],
        economies=[("CL", "es"), ("VN", "vi"), ("AU", "en")],
    )


def test_a_chosen_language_comes_first_then_the_economy_then_the_site() -> None:
    """SPEC section 3a's order for a participant: their own Language: line,
    else their economy's language, else [site].language."""
    chooser = readers()
    assert chooser.choose("ana@x.org", "ja", "CL") == "ja"
    assert chooser.choose("ana@x.org", "", "CL") == "es"
    assert chooser.choose("ana@x.org", "", "vn") == "vi"
    assert chooser.choose("ana@x.org", "", "AU") == "en"
    assert chooser.choose("ana@x.org", "", "") == "id"
    assert chooser.choose("ana@x.org") == "id"


def test_staff_read_the_admin_language_unless_they_chose() -> None:
    """Administrators, editors and overseers read [admin].language unless
    they sent a Language: line; anyone else the economy they are known by
    (a focal point who never wrote: the economy they serve on the roster)."""
    chooser = readers()
    assert chooser.choose("Admin@X.org", "", "CL") == "en"
    assert chooser.choose("editor@x.org") == "en"
    assert chooser.choose("admin@x.org", "ko") == "ko"
    assert chooser.choose("focal.cl@x.org", "", "CL") == "es"


def test_the_language_keys_accept_only_shipped_tags(
    write_config: Callable[..., Path], database_url: str
) -> None:
    """[site].language, [admin].language and [economies.XX].language take a
    shipped tag in any case; anything else stops the program with an error
    naming the key and the accepted tags."""
    text = (
        '[site]\nlanguage = "zh-hant"\n\n[admin]\nlanguage = "es"\n\n'
        '[economies.AU]\nlanguage = "vi"\n'
    )
    settings = load_settings(write_config(text, database_url), environ={})
    assert (settings.site.language, settings.admin.language) == ("zh-Hant", "es")
    assert settings.economies["AU"].language == "vi"
    for table in ("site", "admin", "economies.CL"):
        path = write_config(f'[{table}]\nlanguage = "fr"\n', database_url)
        with pytest.raises(ConfigError) as error:
            load_settings(path, environ={})
        assert f"[{table}] language" in str(error.value)
        assert "en, es, zh-Hans, zh-Hant, id, ja, ko, ms, ru, th, vi" in str(error.value)


def test_english_dates_keep_their_style_and_others_follow_their_locale() -> None:
    """The day, month and moment filters of the mail templates."""
    from datetime import UTC, datetime

    at = datetime(2026, 3, 5, 7, 9, tzinfo=UTC)
    assert catalogs.moment(at, "en") == "5 March 2026, 07:09"
    assert catalogs.day(at, "es") == "5 de marzo de 2026"
    assert catalogs.day(at, "zh-Hans") == "2026年3月5日"
    assert catalogs.day(at, "en", year=False) == "5 March"
    assert catalogs.day(at, "es", year=False) == "5 de marzo"
    assert catalogs.day(at, "ru", year=False) == "5 марта"  # the month declined
    assert catalogs.month(at, "en") == "March 2026"
    assert catalogs.month(at, "es") == "marzo de 2026"
    assert catalogs.month(at, "ja") == "2026年3月"


# -- end to end ---------------------------------------------------------------------


def test_every_email_says_its_language_and_a_chilean_reads_spanish(
    client: Client, outbox: Mailbox
) -> None:
    """A first submission from Chile (the economy named in the message
    itself): the confirmation is Spanish by Chile's default, says so in
    Content-Language and in the HTML's lang, and so does every other email;
    the administrator's review email is English."""
    review = submitted(client, outbox)
    confirm = outbox.wait_for_mail("submission_confirm", ANA)
    assert confirm["Content-Language"] == "es"
    assert SPANISH_FOOTER in body_text(confirm)
    assert '<html lang="es">' in body_html(confirm)
    assert "¿Preguntas? Escriba a <a href=" in body_html(confirm)
    assert review["Content-Language"] == "en"
    assert ENGLISH_FOOTER in body_text(review)
    assert all(mail["Content-Language"] in languages.SHIPPED for mail in outbox.messages())


def test_one_event_tells_each_recipient_in_their_own_language(
    client: Client, outbox: Mailbox
) -> None:
    """The administrator approves a Chilean case: the Chilean focal point's
    request to endorse is Spanish, the administrator's own confirmation of
    the decision English, each rendered separately."""
    click(client, submitted(client, outbox), "Approve", ADMIN)
    endorse = outbox.wait_for_mail("focal_review", FOCAL)
    done = outbox.wait_for_mail("decision_done", ADMIN)
    assert (endorse["Content-Language"], done["Content-Language"]) == ("es", "en")
    assert SPANISH_FOOTER in body_text(endorse)
    assert ENGLISH_FOOTER in body_text(done)


def test_the_economy_a_reply_to_the_confirmation_names_sets_the_language(
    client: Client, outbox: Mailbox
) -> None:
    """A first submission names no economy: the confirmation request is in
    the site's language. The reply that confirms names Chile among the
    lines it adds: it is the sender's economy, named in the message
    itself, so the answer to it is Spanish (SPEC section 3a)."""
    luis = "luis@example.cl"
    client.send(submission(f"Luis <{luis}>", body="Kind: Best practice\nPriority area: 1\n"))
    confirm = outbox.wait_for(1, luis)[-1]
    assert confirm["Content-Language"] == "en"
    client.send(reply(confirm, luis, "Economy: Chile\nOrganization: SERCOTEC\nSummary: Seed.\n"))
    answer = outbox.wait_for(2, luis)[-1]
    assert answer["Content-Language"] == "es"
    assert SPANISH_FOOTER in body_text(answer)


def test_a_language_line_in_any_message_makes_later_emails_that_language(
    client: Client, outbox: Mailbox
) -> None:
    """Bob, from Australia (English), asks for help in English; then writes
    "Language: Español" in a message: its answer and every later email to
    him, a submission's confirmation included, are Spanish."""
    client.send(message(BOB, address("help"), "How?", "How do I take part?"))
    english = outbox.wait_for(1, BOB)[-1]
    assert english["Content-Language"] == "en"
    client.send(message(BOB, address("help"), "Otra vez", "Language: Español\n\n¿Cómo participo?"))
    assert outbox.wait_for(2, BOB)[-1]["Content-Language"] == "es"
    client.send(submission(f"Bob <{BOB}>", body=FORM.replace("Chile", "Australia")))
    later = outbox.wait_for(3, BOB)[-1]
    assert later["Content-Language"] == "es"
    assert SPANISH_FOOTER in body_text(later)


def test_the_guide_is_served_in_every_shipped_language(service: object, settings: Settings) -> None:
    """/guide/ is English and links to each other language by its own name;
    /guide/es/ and /guide/zh-hans/ are served, in their language."""
    root = settings.archive.output_dir
    wait_until((root / "guide" / "zh-hant" / "index.html").exists, what="the guides")

    def page(path: str) -> str:
        url = f"http://127.0.0.1:{settings.archive.http_port}/{path}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return str(response.read().decode())

    english, spanish = page("guide/"), page("guide/es/")
    assert '<html lang="en">' in english
    assert 'href="../guide/es/" lang="es" hreflang="es">español</a>' in english
    assert 'href="../guide/zh-hans/" lang="zh-Hans"' in english
    assert '<html lang="es">' in spanish
    assert '<h1 id="guide-title">Cómo participar</h1>' in spanish
    assert 'href="../../guide/" lang="en" hreflang="en">English</a>' in spanish
    assert '<html lang="zh-Hans">' in page("guide/zh-hans/")
