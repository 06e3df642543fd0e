"""The archive in a real headless Chromium (Debian's chromium and
chromium-driver), served by `mailflow run`: a reader opens the index,
searches, opens a case; script payloads in titles and summaries stay text."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import Client, Mailbox, body_html, wait_until
from mails import address, message
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from bench.seed import seed_published
from mailflow.app import App, Service
from mailflow.config import Settings

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("chromium")]

PAYLOAD = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'


def seeded_archive(app: App, settings: Settings) -> str:
    titles = {39: "Microcredit for women weavers", 38: PAYLOAD}  # the newest
    seed_published(
        app,
        40,
        title=lambda n: titles.get(n, f"Export training {n}"),
        summary=lambda n: PAYLOAD if n == 38 else "Cooperative weaving and export markets.",
    )
    index = settings.archive.output_dir / "index.html"
    wait_until(lambda: index.exists() and "weavers" in index.read_text(), what="the archive")
    return f"http://127.0.0.1:{settings.archive.http_port}/"


def not_pwned(driver: WebDriver) -> None:
    assert driver.execute_script("return window.pwned === undefined")
    severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert severe == []  # no script error, no blocked resource, no failed load


def test_a_reader_finds_and_opens_a_case(
    service: Service, app: App, settings: Settings, browser: WebDriver
) -> None:
    site = seeded_archive(app, settings)
    browser.get(site)
    assert browser.title.startswith("Best practices and experiences")
    newest = [link.text for link in browser.find_elements(By.CSS_SELECTOR, ".case-title a")]
    assert PAYLOAD in newest  # shown as text, not run
    not_pwned(browser)

    box = browser.find_element(By.ID, "q")
    box.send_keys("weavers", Keys.ENTER)
    wait = WebDriverWait(browser, 10)
    wait.until(lambda d: "found" in d.find_element(By.ID, "status").text)
    assert "/search/?q=weavers" in browser.current_url
    assert browser.find_element(By.ID, "status").text == "1 case found."

    # Filters narrow live, as the reader types and chooses.
    box = browser.find_element(By.ID, "q")
    box.clear()
    box.send_keys("export")
    wait.until(lambda d: d.find_element(By.ID, "status").text != "1 case found.")
    everything = len(browser.find_elements(By.CSS_SELECTOR, "#results li"))
    assert everything >= 30
    Select(browser.find_element(By.ID, "kind")).select_by_value("experience")
    wait.until(lambda d: 0 < len(d.find_elements(By.CSS_SELECTOR, "#results li")) < everything)
    meta = [m.text for m in browser.find_elements(By.CSS_SELECTOR, "#results .meta")]
    assert all(line.startswith("Experience") for line in meta)

    # The payload's own case: found, listed and opened as plain text.
    Select(browser.find_element(By.ID, "kind")).select_by_value("")
    box.clear()
    box.send_keys("pwned")
    wait.until(lambda d: d.find_element(By.ID, "status").text == "1 case found.")
    browser.find_element(By.CSS_SELECTOR, "#results .case-title a").click()
    wait.until(lambda d: "/cases/" in d.current_url)
    assert browser.find_element(By.TAG_NAME, "h1").text == PAYLOAD
    assert PAYLOAD in browser.find_element(By.CSS_SELECTOR, ".summary").text
    not_pwned(browser)


def test_search_ignores_case_and_accents(
    service: Service, app: App, settings: Settings, browser: WebDriver
) -> None:
    """SPEC section 5: typing promperu finds the case of PROMPERÚ, and
    accented words typed find unaccented text."""
    seed_published(
        app,
        3,
        title=lambda n: ["Export training", "Cafe cooperatives", "Seed capital"][n],
        organization=lambda n: "PROMPERÚ" if n == 0 else f"Organization {n}",
    )
    index = settings.archive.output_dir / "search.json"
    wait_until(lambda: index.exists() and "Seed capital" in index.read_text(), what="the index")
    browser.get(f"http://127.0.0.1:{settings.archive.http_port}/search/")
    wait = WebDriverWait(browser, 10)
    box = browser.find_element(By.ID, "q")
    for typed, title in [("promperu", "Export training"), ("Café", "Cafe cooperatives")]:
        box.clear()
        box.send_keys(typed)
        wait.until(lambda d: d.find_element(By.ID, "status").text == "1 case found.")
        assert browser.find_element(By.CSS_SELECTOR, "#results .case-title a").text == title
    assert browser.find_element(By.CSS_SELECTOR, "#results .org").text == "Organization 1"
    not_pwned(browser)


LONG_URL = "https://www.example.org/" + "programa-de-capital-semilla-para-microempresarios/" * 4


def test_pages_fit_a_phone_and_a_desktop_with_a_long_url_in_a_summary(
    service: Service, app: App, settings: Settings, browser: WebDriver
) -> None:
    """SPEC section 5: long words and addresses wrap on a phone; neither a
    390 px wide screen nor a desktop one scrolls sideways on a case page
    with a long URL in its summary, the index, the search or the guide."""
    assert len(LONG_URL) >= 200
    word = "Microempresarios" * 6
    (case_id,) = seed_published(
        app,
        1,
        title=lambda _: f"Capital semilla {word}",
        summary=lambda _: f"Details at {LONG_URL} and {word}.",
        organization=lambda _: f"Servicio{word}",
    )
    page = settings.archive.output_dir / "cases" / case_id / "index.html"
    wait_until(page.exists, what="the case page")
    size = browser.get_window_size()
    try:
        browser.set_window_size(390, 844)
        site = f"http://127.0.0.1:{settings.archive.http_port}/"
        browser.get(f"{site}cases/{case_id}/")
        viewport = browser.execute_script("return document.documentElement.clientWidth")
        assert viewport <= 400
        link = browser.find_element(By.CSS_SELECTOR, ".summary a")
        assert link.get_attribute("href") == LONG_URL
        assert link.rect["x"] + link.rect["width"] <= viewport
        for width in (390, 1280):
            browser.set_window_size(width, 844)
            viewport = browser.execute_script("return document.documentElement.clientWidth")
            for path in [f"cases/{case_id}/", "index.html", "search/?q=semilla", "guide/"]:
                browser.get(site + path)
                if path.startswith("search"):
                    WebDriverWait(browser, 10).until(
                        lambda d: d.find_element(By.ID, "status").text == "1 case found."
                    )
                wide = browser.execute_script("return document.documentElement.scrollWidth")
                assert wide <= viewport, f"{path}: {wide} px wide on a {viewport} px screen"
    finally:
        browser.set_window_size(size["width"], size["height"])
    not_pwned(browser)


def test_the_help_email_fits_a_phone(
    client: Client, outbox: Mailbox, browser: WebDriver, tmp_path: Path
) -> None:
    """The form in the help email wraps on a 390 px screen, not clipped."""
    client.send(message("ana@example.org", address("help"), "help", ""))  # asks for the form
    [answer] = outbox.wait_for(1, "ana@example.org")
    page = tmp_path / "help.html"
    page.write_text(body_html(answer), encoding="utf-8")
    size = browser.get_window_size()
    try:
        browser.set_window_size(390, 844)
        browser.get(page.as_uri())
        viewport = browser.execute_script("return document.documentElement.clientWidth")
        wide = browser.execute_script("return document.documentElement.scrollWidth")
        assert "Priority area:" in browser.find_element(By.TAG_NAME, "pre").text
        assert wide <= viewport, f"{wide} px wide on a {viewport} px screen"
    finally:
        browser.set_window_size(size["width"], size["height"])


def test_a_newcomer_finds_the_guide_and_goes_on_to_an_area(
    service: Service, settings: Settings, browser: WebDriver
) -> None:
    """The navigation leads to the guide; each priority area's line there
    leads to the area's page."""
    guide = settings.archive.output_dir / "guide" / "index.html"
    wait_until(guide.exists, what="the guide")
    browser.get(f"http://127.0.0.1:{settings.archive.http_port}/")
    browser.find_element(By.LINK_TEXT, "How to take part").click()
    wait = WebDriverWait(browser, 10)
    wait.until(lambda d: d.current_url.endswith("/guide/"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "How to take part"
    browser.find_element(By.LINK_TEXT, "Access to Technology").click()
    wait.until(lambda d: d.current_url.endswith("/areas/access-to-technology/"))
    assert browser.find_element(By.TAG_NAME, "h1").text == "Access to Technology"
    not_pwned(browser)
