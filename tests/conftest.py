"""Shared fixtures: a config per test, a database on SQLite and on the real
PostgreSQL, the real service listening on a free port, and a reader for
the outbound maildir.

PostgreSQL: a fresh database is created for the run (and dropped after)
on ``$MAILFLOW_TEST_POSTGRES_URL`` (default: the local server, user
postgres), one per pytest-xdist worker. When the server cannot be reached
the PostgreSQL half is skipped, unless ``MAILFLOW_TEST_REQUIRE_POSTGRES=1``
(CI sets it), which makes that a failure. SQLite: each test gets a copy of
a database migrated once per worker (migrating it anew took longer than
most tests).

Under pytest-xdist (``python3 dev.py test`` starts several workers) the
tests share nothing but the PostgreSQL server: their own folders, their
own databases, and ports from a block of their worker's own.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import os
import random
import re
import shutil
import smtplib
import socket
import time
import tomllib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import hypothesis
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from mailflow.app import App, Service, build
from mailflow.config import Settings, load_settings
from mailflow.economies import builtin_economies
from mailflow.store.db import Database
from mailflow.store.models import Base

DATA = Path(__file__).parent / "data"
POSTGRES_URL = os.environ.get(
    "MAILFLOW_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


# Ports for the servers the tests start. The kernel's own choice (bind to
# port 0) is free only until the probe closes: another xdist worker's probe,
# or any outgoing connection, may be handed the same port before the server
# binds it. So each worker takes its ports in turn from a block of its own,
# below the ephemeral range (32768 and up on Linux) that the kernel hands
# out; a random start keeps two runs on one machine apart.
_PORT_BLOCK = 1000
_PORT_BASE = 20_000
_WORKER = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_next_port = itertools.cycle(
    range(_PORT_BASE + _WORKER * _PORT_BLOCK, _PORT_BASE + (_WORKER + 1) * _PORT_BLOCK)
)
for _ in range(random.randrange(_PORT_BLOCK)):
    next(_next_port)


def free_port() -> int:
    """A loopback port that nothing is bound to, not handed out before by
    this worker (until its block wraps around)."""
    if _PORT_BASE + (_WORKER + 1) * _PORT_BLOCK > 32768:  # more workers than blocks
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])
    for _ in range(_PORT_BLOCK):
        port = next(_next_port)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port in this worker's block from {_PORT_BASE}")


def wait_until(predicate: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On xdist workers, the long tests first (marked slow, and the torture
    suite): one of them started last would run on alone while the other
    workers sit idle."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        long = ("slow", "torture")
        items.sort(key=lambda item: not any(item.get_closest_marker(m) for m in long))


# -- databases -------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A database of this run and worker, migrated, dropped at the end."""
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"mailflow_test_{uuid.uuid4().hex[:10]}_{worker}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        admin.dispose()
        message = f"PostgreSQL at {POSTGRES_URL} is not reachable: {exc}"
        if os.environ.get("MAILFLOW_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    url = make_url(POSTGRES_URL).set(database=name).render_as_string(hide_password=False)
    database = Database(url)
    database.upgrade()
    database.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the newest schema, copied for each test."""
    path = tmp_path_factory.mktemp("template") / "mailflow.db"
    database = Database(f"sqlite:///{path}")
    database.upgrade()
    database.dispose()
    # Closing the last connection wrote the WAL back: the one file is all.
    assert not path.with_name(path.name + "-wal").exists()
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both databases, each starting empty."""
    if request.param == "sqlite":
        shutil.copyfile(request.getfixturevalue("sqlite_template"), tmp_path / "mailflow.db")
        return f"sqlite:///{tmp_path}/mailflow.db"
    url: str = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    # DELETE, children first, and the identities back to 1: on tables this
    # small a fifth of what TRUNCATE costs (it makes new files for each).
    with engine.begin() as connection:
        for table in reversed(Base.metadata.sorted_tables):
            connection.execute(table.delete())
        connection.execute(
            text("SELECT setval(oid::regclass, 1, false) FROM pg_class WHERE relkind = 'S'")
        )
    engine.dispose()
    return url


# -- configuration and the running service -----------------------------------


# Economies whose people read another language than English by default.
_NOT_ENGLISH = tuple(e.code for e in builtin_economies().values() if e.language != "en")


def in_english(toml_text: str) -> str:
    """The test's config with every economy reading English, unless the
    test names a language for it: most tests quote the English wording of
    the emails their Chilean and Vietnamese participants get, and the
    language tests say which language they expect (``language = "es"``)."""
    economies = tomllib.loads(toml_text).get("economies", {})
    for code in _NOT_ENGLISH:
        table = economies.get(code)
        if table is None:
            toml_text += f'\n[economies.{code}]\nlanguage = "en"\n'
        elif "language" not in table:
            header = re.compile(rf"^\[economies\.{code}\][^\n]*$", re.MULTILINE)
            toml_text = header.sub(lambda m: m.group(0) + '\nlanguage = "en"', toml_text, 1)
    return toml_text


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a config.toml into the test's folder; relative paths in it
    (var/...) land there too."""

    def write(extra: str = "", database_url: str | None = None, port: int | None = None) -> Path:
        path = tmp_path / "config.toml"
        database = database_url or f"sqlite:///{tmp_path}/mailflow.db"
        path.write_text(
            f'[database]\nurl = "{database}"\n\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {port or free_port()}\n\n'
            f"[spool]\nworkers = 2\n\n"
            f"[archive]\nhttp_port = {free_port()}\n\n"
            f"[monitor]\nhttp_port = {free_port()}\n\n" + in_english(extra)
        )
        return path

    return write


@pytest.fixture
def config_text() -> str:
    """Extra TOML for the test's config; override in a test module."""
    return ""


@pytest.fixture
def settings(write_config: Callable[..., Path], database_url: str, config_text: str) -> Settings:
    return load_settings(write_config(config_text, database_url), environ={})


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    built = build(settings)
    yield built
    built.database.dispose()


@pytest.fixture
def service(app: App) -> Iterator[Service]:
    running = Service(app)
    running.start()
    yield running
    running.stop()


@dataclass(frozen=True)
class _Read:
    """An email parsed once, with what waiting for mail asks of it each
    poll: the policy parses a header again on every access."""

    message: EmailMessage
    to: str
    template: str


class Mailbox:
    """The outbound maildir, read as a person would: one file per email."""

    def __init__(self, root: Path) -> None:
        self.root = root
        # Each file parsed once: waiting for an email reads the folder every
        # 50 ms, and parsing it all again was a tenth of the suite's CPU.
        self._parsed: dict[tuple[str, int, int], _Read] = {}

    def messages(self) -> list[EmailMessage]:
        return [read.message for read in self._read_all()]

    def _read_all(self) -> list[_Read]:
        folder = self.root / "new"
        if not folder.exists():
            return []
        return [self._read(path) for path in sorted(folder.iterdir())]

    def _read(self, path: Path) -> _Read:
        status = path.stat()
        key = (path.name, status.st_mtime_ns, status.st_size)
        if key not in self._parsed:
            message: EmailMessage = email.message_from_bytes(  # type: ignore[assignment]
                path.read_bytes(), policy=email.policy.default
            )
            self._parsed[key] = _Read(message, str(message["Delivered-To"]), which(message))
        return self._parsed[key]

    def to(self, address: str) -> list[EmailMessage]:
        return [read.message for read in self._read_all() if read.to == address]

    def wait_for(
        self, count: int, address: str | None = None, timeout: float = 15
    ) -> list[EmailMessage]:
        def enough() -> list[EmailMessage] | None:
            found = self.to(address) if address else self.messages()
            return found if len(found) >= count else None

        return wait_until(enough, timeout, f"{count} email(s) to {address or 'anyone'}")  # type: ignore[no-any-return]

    def of(self, template: str, address: str | None = None) -> list[EmailMessage]:
        """The emails written from ``template`` (named in Feedback-ID)."""
        return [
            read.message
            for read in self._read_all()
            if read.template == template and (address is None or read.to == address)
        ]

    def wait_for_mail(
        self, template: str, address: str | None = None, count: int = 1, timeout: float = 15
    ) -> EmailMessage:
        """The ``count``-th email written from ``template`` (to ``address``),
        once it is there: picked by what it is, not by how many came before."""

        def enough() -> EmailMessage | None:
            found = self.of(template, address)
            return found[count - 1] if len(found) >= count else None

        what = f"{template} email #{count} to {address or 'anyone'}"
        return wait_until(enough, timeout, what)  # type: ignore[no-any-return]


def which(message: EmailMessage) -> str:
    """The template an email was written from, as its Feedback-ID says."""
    return str(message.get("Feedback-ID", "")).partition(":")[0]


def headline(message: EmailMessage) -> str:
    """What a person sees in the list of their inbox: the subject, and the
    first line (which says what an email about a case is about)."""
    return f"{message['Subject']} {purpose(message)}"


def purpose(message: EmailMessage) -> str:
    """What an email about a case is about: its first line (its subject
    names the case)."""
    return (body_text(message).splitlines() or [""])[0]


@pytest.fixture
def outbox(settings: Settings) -> Mailbox:
    return Mailbox(settings.outbound.maildir)


class Client:
    """Sends mail to the running service over a real SMTP connection."""

    def __init__(self, settings: Settings) -> None:
        self.host, self.port = settings.smtp.host, settings.smtp.port

    def send(
        self, message: EmailMessage | bytes, sender: str | None = None, to: list[str] | None = None
    ) -> dict[str, Any]:
        """``sender=""`` sends with the null return path, as bounces do."""
        with smtplib.SMTP(self.host, self.port, timeout=30) as smtp:
            if isinstance(message, bytes):
                assert to is not None
                return smtp.sendmail(sender or "", to, message)
            return smtp.send_message(message, from_addr=sender, to_addrs=to)


@pytest.fixture
def client(settings: Settings, service: Service) -> Client:
    return Client(settings)


def body_text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def body_html(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture
def browser(chromium: Any) -> Any:
    """Debian's headless Chromium through chromedriver (selenium), with no
    console messages left over from the test before (each test's site has
    a port, so an origin, of its own)."""
    chromium.get("about:blank")
    chromium.get_log("browser")
    return chromium


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One browser per worker: starting Chromium costs more than a test."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as DriverService

    if not os.path.exists(CHROMEDRIVER):
        if os.environ.get("MAILFLOW_TEST_REQUIRE_BROWSER") == "1":
            pytest.fail("chromedriver is not installed (apt-get install chromium chromium-driver)")
        pytest.skip("chromedriver is not installed (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if shutil.which("chromium"):
        options.binary_location = str(shutil.which("chromium"))
    driver = webdriver.Chrome(service=DriverService(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(20)
    yield driver
    driver.quit()


def property_settings(variable: str, default: int) -> hypothesis.settings:
    """hypothesis settings bounded for CI; the environment ``variable`` sets
    the number of examples for a longer run by hand. No example database
    and a printed blob: a failure is reproduced from its report alone."""
    return hypothesis.settings(
        max_examples=int(os.environ.get(variable, str(default))),
        deadline=None,
        database=None,
        print_blob=True,
        suppress_health_check=[
            hypothesis.HealthCheck.too_slow,
            hypothesis.HealthCheck.data_too_large,
        ],
    )
