"""The engine, the one place transactions are opened, and the schema check.

Domain code receives a Session and never commits: ``Database.transaction``
commits when the block ends and rolls back on any exception, so a case
change and the emails it causes land together or not at all.

SQLite is opened in WAL mode with every transaction started as
``BEGIN IMMEDIATE``: writers queue on the lock up front instead of failing
late with "database is locked" when a reader upgrades.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Executable, create_engine, event, func, inspect, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from mailflow.errors import SchemaError
from mailflow.store.files import FileStore

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_MS = 30_000
READ_ONLY = "mailflow_read_only"


def create_db_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    if parsed.database:
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        reading = connection.get_execution_options().get(READ_ONLY, False)
        connection.exec_driver_sql("BEGIN" if reading else "BEGIN IMMEDIATE")

    return engine


def server_now(session: Session) -> datetime:
    """The time by the database server on PostgreSQL, which every host on
    it shares (their own clocks may disagree by seconds: too much for
    leases of seconds); on SQLite, one machine, that machine's."""
    if session.get_bind().dialect.name == "postgresql":
        now = session.scalar(select(func.now()))
        assert isinstance(now, datetime)
        return now.astimezone(UTC)
    return datetime.now(UTC)


def upsert(session: Session, model: type[Any]) -> Any:
    """An INSERT that can say ON CONFLICT, in the database's own dialect
    (both spell it alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(model)
    return sqlite.insert(model)


class Database:
    """The database at ``url``, and the folder of the files it names (raw
    messages and documents, store/files.py): without it, only the records
    can be read."""

    def __init__(self, url: str, files: Path | None = None) -> None:
        self.url = url
        self.engine = create_db_engine(url)
        self._files = FileStore(files) if files is not None else None
        self._info = {"files": self._files}
        self._sessions = sessionmaker(self.engine, expire_on_commit=False, info=self._info)

    @property
    def files(self) -> FileStore:
        if self._files is None:
            raise RuntimeError("this Database was opened without its [files] dir")
        return self._files

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    def execute(self, statement: Executable) -> None:
        """One statement in a transaction of its own, without a session: for
        a statement as frequent as the outbox's mark of each email sent, a
        session's bookkeeping is a good part of its cost."""
        with self.engine.begin() as connection:
            connection.execute(statement)

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A consistent snapshot for long reads (rendering the archive): on
        SQLite a deferred transaction, which takes no write lock, so the
        workers go on meanwhile; on PostgreSQL REPEATABLE READ, so every
        query sees the same moment. Nothing read here is ever committed."""
        options: dict[str, Any] = {READ_ONLY: True}
        if self.dialect == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        with (
            self.engine.connect().execution_options(**options) as connection,
            Session(bind=connection, info=self._info) as session,  # closing it rolls back
        ):
            yield session

    def dispose(self) -> None:
        self.engine.dispose()

    def answers(self) -> str | None:
        """None when a new connection can read the schema version, else why not (for
        /healthz). A new connection each time: the pool's open ones would
        still answer for a database file removed or a server refusing new
        clients. A missing SQLite file is an error here, never created."""
        url = make_url(self.url)
        if url.get_backend_name() == "sqlite" and url.database:
            url = url.set(database=f"file:{url.database}", query={"mode": "rw", "uri": "true"})
        probe = create_engine(url, poolclass=NullPool)
        try:
            with probe.connect() as connection:
                _recorded_revision(connection)
        except DBAPIError as exc:
            return str(exc.orig).strip().splitlines()[0]
        finally:
            probe.dispose()
        return None

    # -- schema -----------------------------------------------------------

    # Every command checks the schema when it starts; alembic itself (a
    # third of a second to import here) is loaded only to migrate.

    def _alembic_config(self) -> Config:
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        return config

    def head_revision(self) -> str:
        return head_revision()

    def current_revision(self) -> str | None:
        with self.engine.connect() as connection:
            return _recorded_revision(connection)

    def upgrade(self) -> tuple[str | None, str]:
        """Apply every migration not yet applied; returns (before, after)."""
        from alembic import command

        before = self.current_revision()
        config = self._alembic_config()
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            config.attributes["files"] = self._files  # 0013 moves the bytes into them
            command.upgrade(config, "head")
        return before, self.head_revision()

    def ensure_schema(self, config_path: Path) -> None:
        """Migrate a new, empty database; refuse one that is behind."""
        try:
            current = self.current_revision()
            empty = not inspect(self.engine).get_table_names()
        except OperationalError as exc:
            raise SchemaError(f"cannot open the database {self._safe_url()}: {exc.orig}") from exc
        if current is None and empty:
            self.upgrade()
            return
        if current != self.head_revision():
            raise SchemaError(
                f"the database {self._safe_url()} is at schema {current or 'none'}, "
                f"this mailflow needs {self.head_revision()}; run: "
                f"mailflow db upgrade --config {config_path}"
            )

    def _safe_url(self) -> str:
        return make_url(self.url).render_as_string(hide_password=True)


# `revision = "0013"`, as the template writes it; quotes of either kind and
# a type annotation (newer templates) are read too.
_REVISION = re.compile(
    r"""^(down_revision|revision)(?:\s*:[^=\n]*)?\s*=\s*["']([^"'\n]*)["']""", re.MULTILINE
)


@functools.cache
def head_revision() -> str:
    """The newest migration: the one that no other names as the one before
    it (read from the migration files as alembic writes them;
    tests/test_operations.py checks it against alembic's own answer)."""
    revisions: set[str] = set()
    followed: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        for key, revision in _REVISION.findall(path.read_text()):
            (revisions if key == "revision" else followed).add(revision)
    heads = revisions - followed
    if len(heads) != 1:
        raise SchemaError(f"the migrations in {MIGRATIONS} have {len(heads)} heads: {heads}")
    return heads.pop()


def _recorded_revision(connection: Connection) -> str | None:
    """The revision alembic recorded in its table; None before any."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    found = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return None if found is None else str(found)
