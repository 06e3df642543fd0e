"""The files of ``deploy/`` work as shipped (SPEC section 8: "deploy/ holds
a systemd unit, the nginx site and these steps, each tested"): the unit
passes ``systemd-analyze verify`` with its hardening, the example config
puts everything under the unit's state directory, and a real nginx with
the site in front of a running mailflow serves the pages with each
security header once and passes the one-click unsubscribe through.

systemd-analyze and nginx are Debian packages (systemd, nginx): missing,
their tests are skipped, unless MAILFLOW_TEST_REQUIRE_SYSTEMD=1 or
MAILFLOW_TEST_REQUIRE_NGINX=1 (CI sets both) makes that a failure."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, wait_until
from sqlalchemy import select

from bench.seed import seed_published, seed_subscribers
from mailflow.app import App, Service
from mailflow.config import Settings, load_settings
from mailflow.store.models import Subscriber

# One worker starts this private server once for all of these tests.
pytestmark = pytest.mark.xdist_group("nginx")

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
STATE = Path("/var/lib/mailflow")
SECURITY_HEADERS = ("X-Content-Type-Options", "Referrer-Policy", "Content-Security-Policy")


def program(name: str, variable: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        why = f"{name} is not installed (apt-get install {package})"
        if os.environ.get(variable) == "1":
            pytest.fail(why)
        pytest.skip(why)
    return found


def directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        key, equals, value = line.partition("=")
        if equals and not line.startswith(("#", "[")):
            found.setdefault(key.strip(), []).append(value.strip())
    return found


# -- systemd ------------------------------------------------------------------------


def test_the_systemd_unit_is_valid_and_hardened(tmp_path: Path) -> None:
    analyze = program("systemd-analyze", "MAILFLOW_TEST_REQUIRE_SYSTEMD", "systemd")
    unit = (DEPLOY / "mailflow.service").read_text()
    found = directives(unit)
    assert found["User"] == ["mailflow"]
    assert found["StateDirectory"] == ["mailflow"]
    assert found["ConfigurationDirectory"] == ["mailflow"]
    assert found["WorkingDirectory"] == [str(STATE)]
    assert found["ReadWritePaths"] == [str(STATE)]  # only what it writes
    assert found["Environment"] == ["MAILFLOW_CONFIG=/etc/mailflow/config.toml"]
    for key, value in {
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "NoNewPrivileges": "yes",
        "LimitNOFILE": "65536",
        "Restart": "on-failure",
    }.items():
        assert found[key] == [value], key

    # The folders several hosts share are mounted before it starts.
    config = tomllib.loads((DEPLOY / "config.toml").read_text())
    shared = [config["files"]["dir"], config["archive"]["output_dir"]]
    assert found["RequiresMountsFor"] == [" ".join(shared)]

    # nginx's user passes through to the archive; nothing else is open to it.
    assert (found["StateDirectoryMode"], found["UMask"]) == (["0751"], ["0027"])

    # verify wants the program to exist: this checkout's `mailflow`.
    shipped = found["ExecStart"][0].split()[0]
    here = Path(sys.executable).parent / "mailflow"
    (tmp_path / "mailflow.service").write_text(unit.replace(shipped, str(here)))
    done = subprocess.run(
        [analyze, "verify", "--man=no", str(tmp_path / "mailflow.service")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # It exits 0 on unknown keys and bad values too, and only says so.
    assert (done.returncode, done.stderr) == (0, "")


def test_the_example_config_keeps_everything_in_the_state_directory() -> None:
    settings = load_settings(DEPLOY / "config.toml", environ={})
    written = [
        Path(settings.database.url.removeprefix("sqlite:///")),
        settings.spool.dir,
        settings.outbound.maildir,
        settings.archive.output_dir,
        settings.security.token_key_file,
    ]
    for path in written:
        assert path.is_absolute() and path.is_relative_to(STATE), path
    site = (DEPLOY / "nginx-archive.conf").read_text()
    assert re.findall(r"server 127\.0\.0\.1:(\d+);", site) == [str(settings.archive.http_port)]
    assert f"root {settings.archive.output_dir};" in site


def test_the_site_is_readable_by_the_web_server_under_the_units_umask(
    app: App, settings: Settings
) -> None:
    """Under the unit's UMask=0027 mailflow's own files are closed to
    others, but the archive's folders and pages are open to them: nginx
    (www-data, not in mailflow's group) reads them through the state
    directory's 0751."""
    seed_published(app, 1)
    before = os.umask(0o027)
    try:
        app.site.build(app.database)
    finally:
        os.umask(before)
    root = settings.archive.output_dir
    folders = [root, *(p for p in root.rglob("*") if p.is_dir())]
    pages = [p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert len(folders) > 3 and any(p.suffix == ".pdf" for p in pages)
    assert {oct(p.stat().st_mode & 0o777) for p in folders} == {"0o755"}
    assert {oct(p.stat().st_mode & 0o777) for p in pages} == {"0o644"}


# -- nginx ---------------------------------------------------------------------------


def nginx_site(settings: Settings, port: int) -> str:
    """deploy/nginx-archive.conf with this test's port, folder and mailflow."""
    site = (DEPLOY / "nginx-archive.conf").read_text()
    for shipped, here in (
        ("listen 80;", f"listen 127.0.0.1:{port};"),
        ("root /var/lib/mailflow/archive;", f"root {settings.archive.output_dir};"),
        ("server 127.0.0.1:8080;", f"server 127.0.0.1:{settings.archive.http_port};"),
    ):
        assert site.count(shipped) == 1, shipped
        site = site.replace(shipped, here)
    return site


@pytest.fixture
def nginx(service: Service, settings: Settings, tmp_path: Path) -> Iterator[int]:
    """A private nginx (its own prefix, pid and temporary folders) with the
    shipped site, in front of the running mailflow; yields its port."""
    binary = program("nginx", "MAILFLOW_TEST_REQUIRE_NGINX", "nginx")
    prefix, port = tmp_path / "nginx", free_port()
    prefix.mkdir()
    (prefix / "site.conf").write_text(nginx_site(settings, port))
    temporary = "\n".join(
        f"    {kind}_temp_path {prefix}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        # As root, the workers would drop to nobody, who cannot read tmp_path.
        ("user root;\n" if os.getuid() == 0 else "")
        + f"worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
        + "events { worker_connections 64; }\n"
        + f"http {{\n    access_log off;\n{temporary}\n    include {prefix}/site.conf;\n}}\n"
    )
    running = subprocess.Popen(
        [binary, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.PIPE,
    )

    def listening() -> bool:
        assert running.poll() is None, running.stderr.read() if running.stderr else ""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_until(listening, 15, "nginx to listen")
        yield port
    finally:
        running.terminate()
        running.wait(timeout=15)
        if running.stderr:
            running.stderr.close()


def request(
    port: int, path: str, method: str = "GET", body: bytes | None = None
) -> tuple[int, http.client.HTTPMessage, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/x-www-form-urlencoded"} if body else {}
    connection.request(method, path, body=body, headers=headers)
    answer = connection.getresponse()
    content = answer.read()
    connection.close()
    return answer.status, answer.headers, content


def once_each(headers: http.client.HTTPMessage) -> dict[str, str]:
    values = {name: headers.get_all(name) or [] for name in SECURITY_HEADERS}
    assert all(len(v) == 1 for v in values.values()), values
    return {name: v[0] for name, v in values.items()}


def test_nginx_serves_the_archive_and_passes_one_click_unsubscribe(
    nginx: int, app: App, settings: Settings
) -> None:
    seed_published(app, 1)
    seed_subscribers(app, 1)
    cases = settings.archive.output_dir / "cases"
    wait_until(lambda: app.update_archive() == 0 and cases.exists(), what="the site")
    case_id = next(cases.iterdir()).name

    for page in ("/", f"/cases/{case_id}/"):
        status, headers, content = request(nginx, page)
        assert (status, headers["Content-Type"]) == (200, "text/html; charset=utf-8"), page
        assert case_id.encode() in content
        assert once_each(headers)["Referrer-Policy"] == "same-origin"
        assert "default-src 'self'" in headers["Content-Security-Policy"]

    status, headers, _ = request(nginx, f"/cases/{case_id}/{case_id}.pdf")
    assert status == 200
    assert headers.get_all("Content-Disposition") == ["attachment"]
    assert once_each(headers) == {
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
        "Content-Security-Policy": "default-src 'none'",
    }
    assert request(nginx, "/.lock")[0] == 404
    status, _, content = request(nginx, "/cases/")
    assert status in (403, 404) and case_id.encode() not in content  # no folder listing

    secret = "0" * 32  # reader0@example.org's
    status, headers, content = request(nginx, f"/unsubscribe/?s={secret}")
    assert status == 200 and b"<form" in content  # a GET only asks
    once_each(headers)
    status, headers, _ = request(
        nginx, f"/unsubscribe/?s={secret}", "POST", b"List-Unsubscribe=One-Click"
    )
    assert status == 200
    once_each(headers)
    with app.database.transaction() as session:
        reader = session.scalar(select(Subscriber).where(Subscriber.secret == secret))
        assert reader is not None and reader.left_at is not None
