"""The archive (SPEC section 5): the pages a published case appears on, as
a reader fetches them from `mailflow run`'s web server, and what publishing
one case rewrites in an archive of thousands. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import random
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import feedparser
import html5lib
import pytest
from conftest import Client, Mailbox, wait_until
from flows import ANA, FOCAL, published
from mails import PDF

from bench.seed import seed_published
from mailflow.app import App, Service
from mailflow.archive import pages, site
from mailflow.archive.site import paragraphs, search_folded
from mailflow.cli import main
from mailflow.config import Settings
from mailflow.store.queries import case_named
from mailflow.workflow import publishing

PAYLOAD = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


@pytest.fixture
def config_text() -> str:
    return f'[economies.CL]\nfocal_points = ["{FOCAL}"]\n'


def fetch(settings: Settings, path: str) -> tuple[bytes, Any]:
    url = f"http://127.0.0.1:{settings.archive.http_port}/{path.lstrip('/')}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), response.headers


def status_of(settings: Settings, path: str) -> int:
    try:
        fetch(settings, path)
    except urllib.error.HTTPError as error:
        return error.code
    return 200


def parse_html(content: bytes) -> Any:
    """Strict HTML5 parsing: any parse error fails the test."""
    return html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(content)


def site_files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file of the site with what changes when it is rewritten."""
    return {
        str(path.relative_to(root)): (path.stat().st_ino, path.stat().st_mtime_ns)
        for path in root.rglob("*")
        if path.is_file() and not path.name.startswith(".")
    }


def broken_links(root: Path) -> list[str]:
    """Relative links of every page that lead to no file of the site."""
    broken = []
    for page in root.rglob("*.html"):
        for href in re.findall(r'(?:href|src)="([^"]+)"', page.read_text()):
            if re.match(r"^(mailto:|https?:|#)", href):
                continue
            target = (page.parent / href.split("#")[0].split("?")[0]).resolve()
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                broken.append(f"{page.relative_to(root)} -> {href}")
    return broken


def test_the_readme_flow_ends_on_a_published_page(
    client: Client, outbox: Mailbox, app: App, settings: Settings
) -> None:
    case_id = published(client, outbox, app)
    notice = outbox.wait_for(4, ANA)[-1]
    page_url = f"{settings.site.base_url}/cases/{case_id}/"
    assert page_url in notice.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]

    root = settings.archive.output_dir
    index = root / "index.html"
    wait_until(lambda: index.exists() and case_id in index.read_text(), what="the index")
    page, _ = fetch(settings, f"/cases/{case_id}/")
    tree = parse_html(page)
    assert tree.find(".//h1").text == "Seed capital for micro entrepreneurs"
    text = page.decode()
    for shown in ("Chile", "Access to Financial Services", "SERCOTEC", "Best practice"):
        assert shown in text
    assert "non-reimbursable" in text
    assert f"mailto:comment+{case_id}@mailflow.localhost" in text
    assert "mailto:internship@mailflow.localhost?subject=Internship%20application" in text

    download = re.search(r'<a class="download" href="([^"]+)"', text)
    assert download is not None and download.group(1) == "seed_capital.pdf"
    document, headers = fetch(settings, f"/cases/{case_id}/{download.group(1)}")
    assert document == PDF  # byte-identical
    assert headers["Content-Type"] == "application/pdf"
    assert headers["Content-Disposition"] == "attachment"

    index, headers = fetch(settings, "/index.html")
    assert case_id in index.decode() and headers["X-Content-Type-Options"] == "nosniff"
    area = fetch(settings, "/areas/access-to-financial-services/")[0].decode()
    assert "1 published case," in area and case_id in area
    assert case_id in fetch(settings, "/economies/cl/")[0].decode()
    feed, headers = fetch(settings, "/feed.atom")
    assert headers["Content-Type"].startswith("application/atom+xml")
    assert feedparser.parse(feed).entries[0].link == page_url
    search = json.loads(fetch(settings, "/search.json")[0])
    assert [entry["id"] for entry in search["cases"]] == [case_id]

    # Nothing of the participants' addresses reaches the site (the guide's
    # form shows a placeholder, nobody's address).
    for path in root.rglob("*"):
        if path.is_file() and path.suffix in (".html", ".json", ".atom"):
            text = path.read_text().replace("&lt;name@example.org&gt;", "")
            assert "example.org" not in text, path


def test_the_web_server_serves_pages_and_nothing_else(
    service: Service, app: App, settings: Settings
) -> None:
    seed_published(app, 3)
    wait_until(
        lambda: app.update_archive() == 0 and (settings.archive.output_dir / "cases").exists()
    )
    assert status_of(settings, "/") == 200
    assert status_of(settings, "/cases/") == 404  # no folder listing
    assert status_of(settings, "/.lock") == 404
    assert status_of(settings, "/%2elock") == 404  # decoded before it is checked
    assert status_of(settings, "/cases/../../config.toml") == 404
    case_id = sorted(p.name for p in (settings.archive.output_dir / "cases").iterdir())[0]
    for path in (f"/cases/{case_id}/{case_id}.pdf", f"/cases//{case_id}/%2e/{case_id}.pdf"):
        assert fetch(settings, path)[1]["Content-Disposition"] == "attachment", path
    _, headers = fetch(settings, "/")
    assert "default-src 'self'" in headers["Content-Security-Policy"]


def test_every_page_parses_and_every_link_leads_somewhere(app: App, settings: Settings) -> None:
    """120 cases in one economy: its list has three pages."""
    seed_published(app, 20)
    seed_published(app, 120, seed=9, title=lambda n: f"Chilean case {n}")
    root = settings.archive.output_dir
    assert main(["archive", "build", "--config", str(settings.source)]) == 0

    pages = sorted(root.rglob("*.html"))
    assert len(pages) > 140
    for page in pages:
        parse_html(page.read_bytes())
    assert broken_links(root) == []

    feed = feedparser.parse((root / "feed.atom").read_bytes())
    assert not feed.bozo and feed.version == "atom10"
    assert len(feed.entries) == 50
    assert all(entry.link.startswith(settings.site.base_url) for entry in feed.entries)

    search = json.loads((root / "search.json").read_bytes())
    assert len(search["cases"]) == 140 and search["older"] == []


def test_a_site_written_before_the_machine_restarted_is_built_again_at_start(
    app: App, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full build flushes nothing: a page it wrote can be lost only if
    the machine stops first, and then the site is built again at start."""
    (case_id,) = seed_published(app, 1)
    app.site.build(app.database)
    page = settings.archive.output_dir / "cases" / case_id / "index.html"
    page.unlink()  # as a crash of the machine before writing it back would lose it
    app.site.ensure(app.database)
    assert not page.exists()  # same boot: the page was never at risk, nothing rebuilt
    (settings.archive.output_dir / ".boot").write_text("an-earlier-boot\n")
    app.site.ensure(app.database)
    assert page.exists()

    # Where the system has no boot ID, the build flushes the machine instead.
    monkeypatch.setattr(site, "BOOT_ID", settings.archive.output_dir / "no-such-file")
    flushed: list[bool] = []
    monkeypatch.setattr(site.os, "sync", lambda: flushed.append(True))
    page.unlink()
    app.site.ensure(app.database)
    assert not page.exists() and flushed == []
    app.site.build(app.database)
    assert page.exists() and flushed == [True]


def test_long_lists_are_cut_into_pages_of_50(app: App, settings: Settings) -> None:
    ids = seed_published(app, 260, seed=3)
    app.site.build(app.database)
    root = settings.archive.output_dir
    # Every list page shows at most 50 cases, and each case is on exactly one
    # page of its area.
    seen: list[str] = []
    for area in (root / "areas").iterdir():
        in_area = []
        for page in area.rglob("index.html"):
            text = page.read_text()
            cards = re.findall(r'class="case-title"><a href="(?:\.\./)+cases/([^/]+)/"', text)
            assert 0 < len(cards) <= 50
            in_area += cards
        assert len(list(area.rglob("index.html"))) == -(-len(in_area) // 50)
        seen += in_area
    assert sorted(seen) == sorted(ids)


# The two archive-scale tests run on SQLite only: what they check is the
# site writer's pages, the same whatever database the cases come from (the
# other archive tests publish on both), and on PostgreSQL they took 50 s of
# the suite's five minutes.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.mark.slow
@sqlite_only
def test_publishing_one_case_among_hundreds_rewrites_only_its_pages(
    app: App, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every area and economy list runs to several pages: a thousand cases
    # in pages of 50 once, now 200 in pages of 5 (the same runs, a fifth of
    # the suite's time).
    monkeypatch.setattr(pages, "PAGE_SIZE", 5)
    seed_published(app, 200)
    app.site.build(app.database)
    root = settings.archive.output_dir
    before = site_files(root)

    (case_id,) = seed_published(app, 1, seed=5)
    assert app.update_archive() == 1
    changed = {path for path, stat in site_files(root).items() if before.get(path) != stat}
    area, economy = _area_and_economy(root, case_id)
    expected = {
        "index.html",
        "feed.atom",
        "search.json",
        f"cases/{case_id}/index.html",
        f"cases/{case_id}/{case_id}.pdf",
        f"areas/{area}/index.html",
        f"economies/{economy}/index.html",
    }
    assert expected <= changed
    runs = changed - expected
    assert {re.sub(r"\d+", "N", path) for path in runs} <= {
        f"areas/{area}/page/N/index.html",
        f"economies/{economy}/page/N/index.html",
        "search/N.json",  # a search shard that just filled up
    }
    assert len(runs) <= 5  # the runs it lands in, and the ones before when new runs begin

    # Taking it off again rewrites the same pages and removes its own.
    before = site_files(root)
    config = ["--config", str(settings.source)]
    assert main(["act", case_id, "unpublish", "--reason", "Duplicate", *config]) == 0
    assert not (root / "cases" / case_id).exists()
    changed = {path for path, stat in site_files(root).items() if before.get(path) != stat}
    assert changed <= expected | runs
    assert case_id not in (root / "search.json").read_text()
    assert case_id not in (root / f"areas/{area}/index.html").read_text()

    assert main(["act", case_id, "publish", *config]) == 0
    assert (root / "cases" / case_id / "index.html").exists()


def _area_and_economy(root: Path, case_id: str) -> tuple[str, str]:
    page = (root / "cases" / case_id / "index.html").read_text()
    area = re.search(r'href="\.\./\.\./areas/([^/]+)/"', page)
    economy = re.search(r'href="\.\./\.\./economies/([^/]+)/"', page)
    assert area is not None and economy is not None
    return area.group(1), economy.group(1)


def test_text_from_email_is_inert_and_addresses_never_shown(app: App, settings: Settings) -> None:
    summary = (
        f"{PAYLOAD}\x0c\x1b\n\nSee https://example.com/report?a=1&b=2. "
        "Not javascript:alert(1) nor data:text/html,x.\n"
        "Write to me at ana.perez@example.org for details."
    )
    (case_id,) = seed_published(app, 1, title=lambda _: PAYLOAD, summary=lambda _: summary)
    app.site.build(app.database)
    root = settings.archive.output_dir
    page = (root / "cases" / case_id / "index.html").read_text()
    assert "<script>window" not in page and "<img src=x" not in page
    assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page
    assert '<a href="https://example.com/report?a=1&amp;b=2" rel="nofollow ugc noopener">' in page
    assert 'href="javascript' not in page and 'href="data' not in page
    assert "ana.perez@example.org" not in page and "[address removed]" in page
    search = (root / "search.json").read_text()
    assert "ana.perez@example.org" not in search
    feed = feedparser.parse((root / "feed.atom").read_bytes())
    assert not feed.bozo  # control characters from the email would break the XML
    assert json.loads(search)["cases"][0]["title"] == PAYLOAD  # data, shown as text by the script


def test_paragraphs_escape_and_link_only_http() -> None:
    html = str(paragraphs('one <b>\n"two"\n\nhttp://a.example/x). ftp://b.example'))
    assert html == (
        "<p>one &lt;b&gt;<br>\n&#34;two&#34;</p>\n"
        '<p><a href="http://a.example/x" rel="nofollow ugc noopener">http://a.example/x</a>'
        "). ftp://b.example</p>"
    )


def test_the_search_index_ignores_case_and_accents() -> None:
    """SPEC section 5: the words the search box matches are folded, so that
    promperu finds PROMPERÚ; search.js folds the query the same way."""
    assert search_folded("PROMPERÚ Café Ｆｕｌｌ ﬁnance İstanbul") == (
        "promperu cafe full finance istanbul"
    )
    assert search_folded("Ñandú São Tomé Việt Nam") == "nandu sao tome viet nam"


@pytest.mark.slow
@sqlite_only
def test_incremental_publishing_gives_the_same_site_as_a_full_build(
    app: App, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random publishing, unpublishing and republishing with lists of 3 and
    search shards of 5, so that every boundary is crossed many times: after
    each pass the site is byte for byte what a full build writes."""
    monkeypatch.setattr(pages, "PAGE_SIZE", 3)
    monkeypatch.setattr(pages, "SHARD_SIZE", 5)
    root = settings.archive.output_dir
    app.site.build(app.database)
    rng = random.Random(4)
    live: list[str] = []
    off: list[str] = []
    admin = app.workflow.admins[0]

    def snapshot() -> dict[str, bytes]:
        return {
            str(path.relative_to(root)): path.read_bytes()
            for path in root.rglob("*")
            if path.is_file() and not path.name.startswith(".")
        }

    for step in range(60):
        choice = rng.random()
        if choice < 0.6 or not live:
            live += seed_published(app, rng.randint(1, 3), seed=step)
        else:
            taken, given = (live, off) if choice < 0.8 or not off else (off, live)
            case_id = taken.pop(rng.randrange(len(taken)))
            act = publishing.unpublish if taken is live else publishing.republish
            with app.database.transaction() as session:
                case = case_named(session, case_id)
                assert case is not None
                act(session, case, app.workflow, actor=admin, reason="test")
            given.append(case_id)
        if step % 3 == 2:
            while app.update_archive():
                pass
            incremental = snapshot()
            app.site.build(app.database)
            full = snapshot()
            differing = sorted(
                name
                for name in incremental.keys() | full.keys()
                if incremental.get(name) != full.get(name)
            )
            assert differing == [], f"step {step}"
