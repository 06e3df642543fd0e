"""A wheel built from the checkout works on its own: installed without -e
into a fresh virtual environment and run from a folder outside the
checkout, mailflow finds its mail, site and report templates, the site's
static files, the economies, the migrations and the compiled catalogs
(built by setup.py from the .po files) inside the package."""

from __future__ import annotations

import os
import re
import shutil
import signal
import site
import smtplib
import subprocess
import sys
import tomllib
import urllib.request
import venv
import zipfile
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import Mailbox, body_text, free_port, headline, wait_until
from mails import reply, submission

from mailflow.catalogs import translations

ROOT = Path(__file__).resolve().parents[1]
ANA, ADMIN = "ana@example.org", "admin@mailflow.localhost"
# What a wheel is built from: the checkout without what the build or the
# developer leaves in it (a stale build/ would leak old files into the wheel).
# Compiled catalogs (*.mo) too: the wheel's build must make its own.
NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "*.mo"
)
# The catalogs' sources: the wheel carries them compiled, as .mo.
CATALOG_SOURCES = (".po", ".pot", ".mo")


def shipped(folder: Path) -> set[str]:
    """The files of a folder of the checkout that the wheel must carry."""
    return {
        path.relative_to(folder).as_posix()
        for path in folder.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
        if path.suffix not in CATALOG_SOURCES
    }


def test_every_subpackage_of_mailflow_is_listed_for_the_wheel() -> None:
    """pyproject.toml names the packages (find cannot map templates/ into
    mailflow), so a new subpackage must be added there, and is."""
    listed = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "mailflow").rglob("__init__.py")
    }
    assert set(listed) == on_disk | {"mailflow.templates"}


def pip(*arguments: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet", *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A virtual environment with mailflow installed from its wheel; returns
    its folder. The dependencies come from the environment running the tests
    (a .pth line), so nothing but the build tools is downloaded."""
    work = tmp_path_factory.mktemp("wheel")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    pip("wheel", "--no-deps", "--wheel-dir", str(work / "dist"), str(source))
    (wheel,) = (work / "dist").glob("mailflow-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for folder, inside in (
        (ROOT / "templates", "mailflow/templates"),
        (ROOT / "mailflow", "mailflow"),
    ):
        missing = {f"{inside}/{name}" for name in shipped(folder)} - names
        assert not missing, f"left out of the wheel: {sorted(missing)}"
    compiled = {
        po.relative_to(ROOT).with_suffix(".mo").as_posix()
        for po in (ROOT / "mailflow" / "locale").glob("*/LC_MESSAGES/*.po")
    }
    assert compiled and compiled <= names, f"catalogs not compiled: {sorted(compiled - names)}"

    environment = work / "venv"
    venv.create(environment, with_pip=False)
    pip("--python", str(environment / "bin" / "python"), "install", "--no-deps", str(wheel))
    # Only after the install: pip must not see the checkout's editable
    # mailflow there as already installed.
    dependencies = site.getsitepackages()
    if site.ENABLE_USER_SITE:
        dependencies.append(site.getusersitepackages())
    (site_packages,) = environment.glob("lib/python3*/site-packages")
    (site_packages / "dependencies.pth").write_text("\n".join(dependencies) + "\n")
    yield environment


def titled(outbox: Mailbox, address: str, subject: str) -> EmailMessage:
    """The email to ``address`` whose subject holds ``subject``, once it is there."""

    def found() -> EmailMessage | None:
        return next((m for m in outbox.to(address) if subject in headline(m)), None)

    return wait_until(found, 15, f"{subject!r} to {address}")  # type: ignore[no-any-return]


def run_mailflow(environment: Path, folder: Path, *arguments: str) -> str:
    done = subprocess.run(
        [str(environment / "bin" / "mailflow"), *arguments, "--config", "config.toml"],
        cwd=folder,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def clean_environment() -> dict[str, str]:
    """The test's environment without anything that points into the checkout."""
    return {
        name: value
        for name, value in os.environ.items()
        if name != "PYTHONPATH" and not name.startswith("MAILFLOW_")
    }


@pytest.mark.slow
def test_a_wheel_installed_without_e_runs_the_whole_way(installed: Path, tmp_path: Path) -> None:
    """From a folder outside the checkout: the package is the installed one,
    a submission is confirmed and acknowledged, the case is published, and
    the archive site and the report are written with their templates and
    static files."""
    folder = tmp_path / "deployment"
    folder.mkdir()
    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import mailflow, mailflow.notify.render as r; print(mailflow.__file__, r.TEMPLATES)",
        ],
        cwd=folder,
        env=clean_environment(),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for path in where:
        assert Path(path).is_relative_to(installed), where

    smtp_port, http_port = free_port(), free_port()
    (folder / "config.toml").write_text(
        f'[database]\nurl = "sqlite:///{folder}/mailflow.db"\n\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\n\n'
        f"[archive]\nhttp_port = {http_port}\n\n"
        f"[monitor]\nhttp_port = {free_port()}\n"
    )
    outbox = Mailbox(folder / "var" / "outbox")
    log = folder / "run.log"
    with log.open("wb") as output:
        service = subprocess.Popen(
            [str(installed / "bin" / "mailflow"), "run", "--config", "config.toml"],
            cwd=folder,
            env={**clean_environment(), "PYTHONUNBUFFERED": "1"},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:

        def listening() -> bool:
            assert service.poll() is None, log.read_text()
            try:
                smtplib.SMTP("127.0.0.1", smtp_port, timeout=1).quit()
            except OSError:
                return False
            return True

        wait_until(listening, 30, "mailflow run to listen")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=30) as smtp:
            smtp.send_message(submission())
            smtp.send_message(reply(outbox.wait_for(1, ANA)[-1], ANA))
        # Ana writes from Chile: Spanish, from the wheel's compiled catalog.
        spanish = translations("es").gettext("We received your submission")
        acknowledgement = titled(outbox, ANA, spanish)
        assert acknowledgement["Content-Language"] == "es"
        assert "¿Preguntas? Escriba a help@" in body_text(acknowledgement)
        found = re.search(r"\b(BP-\d{4}-\d{4})\b", body_text(acknowledgement))
        assert found, body_text(acknowledgement)
        case_id = found.group(1)
        outbox.wait_for(1, ADMIN)  # the administrator's review email
        style = f"http://127.0.0.1:{http_port}/static/style.css"
        with urllib.request.urlopen(style, timeout=10) as response:
            assert response.read() == (ROOT / "templates/site/static/style.css").read_bytes()
    finally:
        service.send_signal(signal.SIGTERM)
        try:
            service.wait(30)
        except subprocess.TimeoutExpired:
            service.kill()
            service.wait(10)
    assert service.returncode == 0, log.read_text()

    run_mailflow(installed, folder, "act", case_id, "approve", "--reason", "Clear.")
    run_mailflow(installed, folder, "act", case_id, "endorse")
    titled(outbox, ANA, translations("es").gettext("Your case is published"))
    run_mailflow(installed, folder, "archive", "build")
    archive = folder / "var" / "archive"
    assert "Seed capital" in (archive / "cases" / case_id / "index.html").read_text()
    assert "Seed capital" in (archive / "index.html").read_text()
    static = ROOT / "templates" / "site" / "static"
    for name in shipped(static):
        assert (archive / "static" / name).read_bytes() == (static / name).read_bytes()
    run_mailflow(installed, folder, "report", "--html", "report.html")
    assert "<svg" in (folder / "report.html").read_text()
