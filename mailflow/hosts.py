"""Several hosts on one database (SPEC section 8): which host holds the
scheduler and which the site writer, and which hosts are alive.

A role is a row of ``leases``: its holder and when the hold ends, in the
database's clock (the hosts' own clocks may disagree). The holder renews
it every third of ``[hosts].lease_seconds``; a host that finds it expired
takes it over, the row locked (``FOR UPDATE``) so that of two hosts one
wins. Leases rather than PostgreSQL advisory locks: an advisory lock ends
only when the server notices that the holder's connection is gone, which
for a host cut off by the network (rather than killed) waits on TCP
keepalive, by default two hours; a lease ends on time whatever became of
its holder, and is a row that `mailflow status` can show. A holder whose
renewals fail stops acting once its lease, counted on its own monotonic
clock from before the last renewal it made, has run out: before anyone
else may take it over.

A lease spares work, it does not make it correct: the timed work claims
each step in the database and the site is written whole pages at a time,
so two holders for a moment would repeat work, never lose or double it.

On SQLite there is one host: it holds every role whatever the rows say
(and still writes them, so `mailflow status` reads the same on both).

This module only says who does what; it never does the roles' work.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import delete, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mailflow.store.db import Database, server_now, upsert
from mailflow.store.models import Host, Lease

log = logging.getLogger(__name__)

SCHEDULER = "scheduler"
SITE_WRITER = "site_writer"
ROLES = (SCHEDULER, SITE_WRITER)

# Hosts not seen for this long are forgotten (a host's name changes with
# its pid at every restart unless [hosts].name is set).
FORGET_AFTER = timedelta(days=1)


def host_name(configured: str) -> str:
    """``[hosts].name``, else hostname:pid: unique among running hosts."""
    return configured or f"{socket.gethostname()}:{os.getpid()}"


def process_identity(pid: int | None = None) -> str:
    """This process (or another of this machine) as no other process has
    been, here or on another machine: this kernel's boot and pid namespace
    (``this_kernel``), the pid, and when the process started. What an
    outbox lease names. Where /proc does not say (not Linux), machine:pid,
    never judged gone."""
    pid = os.getpid() if pid is None else pid
    kernel = this_kernel()
    if not kernel:
        return f"{socket.gethostname()}:{pid}"
    return f"{kernel}{pid}/{_started(pid)}"


def this_kernel() -> str:
    """This machine's name, its kernel's boot and this process's pid
    namespace: where a pid means the same process as it does here ("" where
    /proc does not say). Two containers on one kernel differ in the
    namespace; two machines of one name, in the boot."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return ""
    return f"{socket.gethostname()}/{boot}/{namespace}/"


def gone(identity: str) -> bool:
    """Whether the process ``process_identity`` named has ended. Judged only
    for a process of this kernel and pid namespace, whose pid means the same
    here; one whose pid another process has taken since has ended too. A
    process ended but not yet reaped reads as alive, the safe way round."""
    kernel = this_kernel()
    if not kernel or not identity.startswith(kernel):
        return False
    pid, _, started = identity[len(kernel) :].partition("/")
    return not pid.isdigit() or _started(int(pid)) != started


def _started(pid: int) -> str | None:
    """When a process started, in clock ticks since boot; None if there is
    no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # "pid (name) state ppid ...": the name may hold spaces; starttime is field 22.
    return stat.rpartition(")")[2].split()[19]


class Roles:
    """This host's side of the leases: ``renew`` from one thread,
    ``holds`` and ``term`` from any."""

    def __init__(self, database: Database, name: str, lease: timedelta) -> None:
        self.name = name
        self.lease = lease
        self._database = database
        self._single = database.dialect == "sqlite"
        self._lock = threading.Lock()
        self._held: dict[str, int] = {}  # role -> term (counts this host's takings)
        self._took_over: dict[str, bool] = {}
        self._terms = 0
        self._valid_until = 0.0  # monotonic
        self._started_at: datetime | None = None

    def holds(self, role: str) -> bool:
        if self._single:
            return True
        with self._lock:
            return role in self._held and time.monotonic() < self._valid_until

    def term(self, role: str) -> int:
        """A number that changes each time this host takes the role, 0 when
        it does not hold it: whoever acts for the role starts afresh on a
        new term (the site writer rebuilds what another host wrote)."""
        if not self.holds(role):
            return 0
        with self._lock:
            return self._held.get(role, 1)

    def took_over(self, role: str) -> bool:
        """This host's term began by taking the role from another host
        (never on SQLite, where there is no other)."""
        if self._single:
            return False
        with self._lock:
            return self._took_over.get(role, False)

    def renew(self) -> None:
        """Heartbeat, then hold or take each role; a failure (the database
        away) leaves the roles held until the lease would have run out."""
        asked = time.monotonic()
        try:
            with self._database.transaction() as session:
                now = server_now(session)
                self._heartbeat(session, now)
                outcome = {role: self._hold(session, role, now) for role in ROLES}
        except SQLAlchemyError as exc:
            log.warning("could not renew this host's roles: %s", exc)
            return
        with self._lock:
            if asked >= self._valid_until:
                # Out of touch longer than a lease: whatever is held now is
                # a new term, as another host may have held it meanwhile.
                self._held.clear()
            for role, previous in outcome.items():
                if previous is None:
                    self._held.pop(role, None)
                elif role not in self._held:
                    self._terms += 1
                    self._held[role] = self._terms
                    self._took_over[role] = previous not in ("", self.name)
                    log.info("this host (%s) now holds the %s", self.name, role)
            self._valid_until = asked + self.lease.total_seconds()

    def release(self) -> None:
        """On a clean stop: the roles free at once for another host, and the
        host marked stopped."""
        with self._lock:
            self._held.clear()
        try:
            with self._database.transaction() as session:
                now = server_now(session)
                session.execute(
                    update(Lease).where(Lease.holder == self.name).values(expires_at=now)
                )
                session.execute(update(Host).where(Host.name == self.name).values(stopped_at=now))
        except SQLAlchemyError as exc:
            log.warning("could not release this host's roles: %s", exc)

    def _heartbeat(self, session: Session, now: datetime) -> None:
        self._started_at = self._started_at or now
        values = {"started_at": self._started_at, "seen_at": now, "stopped_at": None}
        insert = upsert(session, Host).values(name=self.name, **values)
        session.execute(insert.on_conflict_do_update(index_elements=[Host.name], set_=values))
        session.execute(delete(Host).where(Host.seen_at < now - FORGET_AFTER))

    def _hold(self, session: Session, role: str, now: datetime) -> str | None:
        """Keep or take the role; returns who held it before (``""`` for
        nobody), or None when another host holds it still."""
        session.execute(
            upsert(session, Lease)
            .values(role=role, holder="", since=now, expires_at=now)
            .on_conflict_do_nothing(index_elements=[Lease.role])
        )
        row = session.get(Lease, role, with_for_update=True, populate_existing=True)
        assert row is not None
        previous = row.holder
        if previous != self.name and row.expires_at > now:
            return None
        if previous != self.name:
            row.holder, row.since = self.name, now
        row.expires_at = now + self.lease
        return previous


def held_elsewhere(session: Session, role: str) -> bool:
    """A running host on PostgreSQL holds the role: a command leaves the
    role's work to it (on SQLite there is only this machine)."""
    if session.get_bind().dialect.name != "postgresql":
        return False
    row = session.get(Lease, role)
    return row is not None and bool(row.holder) and row.expires_at > server_now(session)


# -- reading, for `mailflow status` -------------------------------------------


@dataclass(frozen=True)
class Holding:
    role: str
    holder: str  # "" when nobody holds it now
    since: datetime | None
    expires_at: datetime | None


@dataclass(frozen=True)
class SeenHost:
    name: str
    started_at: datetime
    seen_at: datetime
    stopped_at: datetime | None
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Hosts:
    now: datetime
    holdings: tuple[Holding, ...]
    hosts: tuple[SeenHost, ...]


def read(session: Session) -> Hosts:
    """Who holds each role now (an expired lease holds nothing) and every
    host seen within the last day, the most recently seen first."""
    now = server_now(session)
    leases = {row.role: row for row in session.scalars(select(Lease))}
    holdings = []
    for role in ROLES:
        row = leases.get(role)
        if row is None or not row.holder or row.expires_at <= now:
            holdings.append(Holding(role, "", None, None))
        else:
            holdings.append(Holding(role, row.holder, row.since, row.expires_at))
    seen = session.scalars(
        select(Host).where(Host.seen_at >= now - FORGET_AFTER).order_by(Host.seen_at.desc())
    )
    hosts = tuple(
        SeenHost(
            host.name,
            host.started_at,
            host.seen_at,
            host.stopped_at,
            tuple(h.role for h in holdings if h.holder == host.name),
        )
        for host in seen
    )
    return Hosts(now, tuple(holdings), hosts)
