"""Backup and restore as deploy/README.md (section 6b) tells an operator,
on SQLite and PostgreSQL: a running mailflow with published cases is
backed up with the tools named there (sqlite3's online `.backup`, or
`pg_dump -Fc`), the spool and the keys beside it; the backup is restored
into a fresh folder and a fresh database, `mailflow db upgrade` and
`mailflow archive build` run there, and the same case pages come back,
byte for byte. The shell steps are run as written, with the test's paths
in place of /var/lib/mailflow and /var/backups/mailflow."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from bench.seed import seed_published
from mailflow.app import App
from mailflow.cli import main
from mailflow.notify.dkim import create_key


@pytest.fixture(autouse=True)
def sqlite3_program() -> None:
    """The guide's SQLite backup is sqlite3's `.backup`: without the program
    the test is skipped, or fails where MAILFLOW_TEST_REQUIRE_SQLITE3=1 (CI).
    pg_dump and pg_restore come with PostgreSQL itself."""
    if shutil.which("sqlite3") is None:
        why = "sqlite3 is not installed (apt-get install sqlite3)"
        if os.environ.get("MAILFLOW_TEST_REQUIRE_SQLITE3") == "1":
            pytest.fail(why)
        pytest.skip(why)


def sh(script: str, **paths: Path | str) -> None:
    """Run a step of the guide, ``{NAME}`` standing for the folders."""
    subprocess.run(["sh", "-euc", script.format(**paths)], check=True, timeout=120)


def archive_build(config: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, bytes]:
    """`mailflow archive build`, then every case page it wrote."""
    assert main(["archive", "build", "--config", str(config)]) == 0
    capsys.readouterr()
    root = config.parent / "var" / "archive"
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("cases/*/*"))}


def cases_listed(config: Path, capsys: pytest.CaptureFixture[str]) -> str:
    capsys.readouterr()
    assert main(["cases", "--config", str(config)]) == 0
    return capsys.readouterr().out


@pytest.fixture
def restored_url(database_url: str) -> Iterator[str]:
    """Where the backup goes back: a new SQLite file, or a new database
    on the same PostgreSQL server (dropped afterwards)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        yield "restored"
        return
    name = f"{url.database}_restored"
    yield url.set(database=name).render_as_string(hide_password=False)
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_a_backup_of_a_running_mailflow_restores_into_a_fresh_place_and_the_archive_rebuilds(
    app: App,
    service: object,
    restored_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Three published cases; the backup is taken while `mailflow run`
    runs; restored elsewhere, `mailflow cases` lists the same cases and the
    archive has the same pages, documents included."""
    ids = seed_published(app, 3)
    create_key(app.settings.outbound.dkim_key_file)
    state, config = app.settings.source.parent / "var", app.settings.source
    before = archive_build(config, capsys)
    assert len([page for page in before if page.endswith("index.html")]) == 3
    listed = cases_listed(config, capsys)
    assert all(case_id in listed for case_id in ids)

    backups, fresh = tmp_path / "backups", tmp_path / "fresh"
    url = make_url(str(app.settings.database.url))
    sqlite = url.get_backend_name() == "sqlite"
    # deploy/README.md 6b, "Back up": the spool first, then the database,
    # then the files, the keys and the config.
    sh(
        "install -d -m 0700 {backups}\n"
        "tar -C {state} -cf {backups}/spool.tar spool\n"
        "cp -p {state}/token.key {state}/dkim.key {config} {backups}/",
        backups=backups,
        state=state,
        config=config,
    )
    if sqlite:
        sh(
            "sqlite3 {db} \".backup '{backups}/mailflow.db'\"",
            db=url.database or "",
            backups=backups,
        )
    else:
        sh(
            "pg_dump -h {host} -U {user} -Fc -d {name} > {backups}/mailflow.dump",
            host=url.host or "",
            user=url.username or "",
            name=url.database or "",
            backups=backups,
        )

    sh("tar -C {state} -cf {backups}/files.tar files", state=state, backups=backups)

    # "Restore", on a fresh machine: the state folder is new.
    sh("install -d -m 0751 {fresh}/var", fresh=fresh)
    restored_config = fresh / "config.toml"
    if sqlite:
        sh(
            "install -m 0640 {backups}/mailflow.db {fresh}/var/mailflow.db\n"
            'test "$(sqlite3 {fresh}/var/mailflow.db "PRAGMA integrity_check")" = ok',
            backups=backups,
            fresh=fresh,
        )
        database = f"sqlite:///{fresh}/var/mailflow.db"
    else:
        new = make_url(restored_url)
        sh(
            "createdb -h {host} -U {user} {name}\n"
            "pg_restore -h {host} -U {user} --no-owner --exit-on-error"
            " -d {name} < {backups}/mailflow.dump",
            host=new.host or "",
            user=new.username or "",
            name=new.database or "",
            backups=backups,
        )
        database = restored_url
    sh(
        "tar -C {fresh}/var -xf {backups}/spool.tar\n"
        "tar -C {fresh}/var -xf {backups}/files.tar\n"
        "install -m 0600 {backups}/token.key {backups}/dkim.key {fresh}/var/",
        backups=backups,
        fresh=fresh,
    )
    # The same config, but for [database].url; var/... is beside it.
    original = (backups / "config.toml").read_text()
    restored_config.write_text(re.sub(r'(?m)^url = ".*"$', f'url = "{database}"', original))
    assert main(["db", "upgrade", "--config", str(restored_config)]) == 0

    assert cases_listed(restored_config, capsys) == listed
    assert archive_build(restored_config, capsys) == before
    assert (fresh / "var" / "token.key").read_bytes() == (state / "token.key").read_bytes()
