"""The composition root: builds every part from Settings, and runs them.

``build`` wires the parts for any command; ``Service`` is `mailflow run`:
the SMTP/LMTP ingress (and, with ``[imap]``, a thread reading a mailbox),
worker threads (or, with ``[spool].processes``, worker processes:
``workers.py``) draining the spool, a sender
thread draining the outbox, and the archive: a thread rewriting the pages
of changed cases and, on ``[archive].http_port``, a web server for them.
The threads wake as soon as there is work and otherwise poll, so work
queued by another process (``mailflow ingest``, ``mailflow act``) or
another host is picked up too. A timer runs the timed work
(``scheduling/timed.py``) every minute.

Several hosts may run this on one PostgreSQL: each drains its own spool
and, with the others, the outbox; the timed work and the archive writer
run only on the host holding that role (``hosts.py``), which a thread
renews every third of ``[hosts].lease_seconds``. On SQLite the one host
holds both.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from functools import partial

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from mailflow.archive.server import ArchiveServer
from mailflow.archive.site import Site
from mailflow.clock import Clock, SystemClock
from mailflow.config import Settings, prepare_paths
from mailflow.cron import Ticker
from mailflow.digest import subscriptions
from mailflow.documents import ACCEPTED
from mailflow.economies import Economies
from mailflow.errors import ConfigError, ServiceFailed
from mailflow.hosts import SCHEDULER, SITE_WRITER, Roles, held_elsewhere, host_name
from mailflow.ingress.imap import ImapIngress
from mailflow.ingress.smtp import IngressController, IngressHandler
from mailflow.languages import Readers
from mailflow.monitor import readings
from mailflow.monitor.metrics import Metrics
from mailflow.monitor.server import MonitorServer
from mailflow.notify.dkim import Signer, load_key
from mailflow.notify.outbox import FileAttachment, Outbox
from mailflow.notify.render import Renderer, mailto
from mailflow.notify.transports import MaildirTransport, SmtpTransport, Transport
from mailflow.routing import Route, Router
from mailflow.runner import Result, Runner
from mailflow.scheduling.timed import Timed
from mailflow.spool import Spool
from mailflow.store.db import Database
from mailflow.store.models import OutboxMessage
from mailflow.tokens import Tokens, load_or_create_key
from mailflow.vocab import AREAS
from mailflow.workers import (
    POLL_SECONDS,
    WorkerProcesses,
    give_back_freed_memory,
    pause_after,
    tally,
)
from mailflow.workflow import delivery, document_links, roster
from mailflow.workflow.context import Workflow
from mailflow.workflow.dispatch import HANDLERS
from mailflow.workflow.engine import Engine
from mailflow.workflow.flows import build_flows

log = logging.getLogger(__name__)

TICK_SECONDS = 60.0  # how often `mailflow run` looks for timed work that fell due
STOP_SECONDS = 30.0  # how long a thread or worker process may take to finish at stop


@dataclass(frozen=True)
class App:
    settings: Settings
    database: Database
    spool: Spool
    runner: Runner
    workflow: Workflow
    transport: Transport
    site: Site
    timed: Timed

    def drain_outbox(self) -> int:
        return self.workflow.outbox.drain(
            self.database, self.transport, on_failed=self._tell_of_failure
        )

    def _tell_of_failure(self, session: Session, row: OutboxMessage) -> None:
        delivery.tell_admins_of_failure(session, row, self.workflow)

    def update_archive(self) -> int:
        return self.site.catch_up(self.database)

    def update_archive_unless_written_elsewhere(self) -> int:
        """For a command (`act`, `tick`): the pages its change touched,
        unless a running host holds the site writer; that host writes them
        within a second, into the folder it serves."""
        with self.database.reading() as session:
            if held_elsewhere(session, SITE_WRITER):
                return 0
        return self.update_archive()

    def unsubscribe_by_link(self, secret: str) -> str | None:
        with self.database.transaction() as session:
            return subscriptions.leave_by_secret(session, secret, self.workflow)

    def unsubscribe_page(self, outcome: str, secret: str) -> bytes:
        return self.site.unsubscribe_page(outcome, secret)

    def document_by_link(self, secret: str) -> FileAttachment | None:
        with self.database.transaction() as session:
            return document_links.linked_document(session, self.workflow, secret)

    def readings(self) -> readings.Readings:
        return readings.read(self.spool, self.database)

    def health(self) -> dict[str, str]:
        return readings.health(self.spool, self.database)


def build(settings: Settings, clock: Clock | None = None) -> App:
    clock = clock or SystemClock()
    prepare_paths(settings)
    database = Database(settings.database.url, settings.files.dir)
    try:
        database.ensure_schema(settings.source)
    except Exception:
        database.dispose()
        raise
    router = Router(
        settings.site.domain, settings.addresses, HANDLERS, own_senders=[settings.outbound.from_]
    )
    economies = Economies.with_overrides(settings.economy_overrides())
    renderer = Renderer(
        site=settings.site,
        addresses={route.value: router.address(route) for route in Route},
        economies=list(economies),
        areas=AREAS,
        accepted_formats=ACCEPTED,
        max_attachment_mb=settings.limits.max_attachment_bytes // 1_048_576,
        mailto=mailto,
    )
    outbox = Outbox(
        renderer,
        router,
        clock,
        sender=settings.outbound.from_,
        return_path=router.address(Route.BOUNCES),
        signer=dkim_signer(settings),
        readers=Readers.build(
            site=settings.site.language,
            admin=settings.admin.language,
            staff=[
                *settings.admin.addresses,
                *settings.editors.addresses,
                *settings.report.recipients,
            ],
            economies=[(e.code, e.language) for e in economies],
        ),
    )
    tokens = Tokens(
        load_or_create_key(settings.security.token_key_file),
        clock,
        timedelta(days=settings.workflow.token_days),
        settings.security.token_only,
    )
    flows = build_flows(settings)
    workflow = Workflow(
        settings, router, economies, Engine(clock, flows), flows, tokens, outbox, clock
    )
    _seed_roster(database, workflow)
    spool = Spool(settings.spool.dir, settings.spool.max_tries)
    return App(
        settings,
        database,
        spool,
        Runner(spool, database, workflow),
        workflow,
        _transport(settings),
        Site(settings, economies, clock),
        Timed(database, workflow),
    )


def _seed_roster(database: Database, workflow: Workflow) -> None:
    """The config's focal points into the roster, when they changed since
    the last start (a process starting at the same moment may do it
    first: then there is nothing left to do)."""
    try:
        with database.transaction() as session:
            changed = roster.seed(session, workflow)
    except IntegrityError:
        return
    if changed:
        log.info("roster: %d change(s) from [economies] focal_points", changed)


def dkim_signer(settings: Settings) -> Signer | None:
    """The signer of every outgoing email, for the domain of
    ``[outbound].from``; none without ``[outbound].dkim_selector``."""
    outbound = settings.outbound
    if not outbound.dkim_selector:
        return None
    return Signer(outbound.dkim_selector, sender_domain(settings), load_key(outbound.dkim_key_file))


def sender_domain(settings: Settings) -> str:
    """The domain of ``[outbound].from``: the d= of the DKIM signature."""
    return parseaddr(settings.outbound.from_)[1].rpartition("@")[2].lower()


def _transport(settings: Settings) -> Transport:
    outbound = settings.outbound
    if outbound.transport == "maildir":
        return MaildirTransport(outbound.maildir)
    return SmtpTransport(
        outbound.host,
        outbound.port,
        starttls=outbound.starttls,
        username=outbound.username,
        password=os.environ.get(outbound.password_env, ""),
    )


def _imap_ingress(app: App, on_spooled: Callable[[], None]) -> ImapIngress | None:
    imap = app.settings.imap
    if imap is None:
        return None
    password = os.environ.get(imap.password_env)
    if password is None:
        raise ConfigError(
            f"{app.settings.source}: [imap] password_env names ${imap.password_env}, "
            "which is not set; export it with the mailbox password"
        )
    return ImapIngress(imap, password, app.spool, on_spooled, app.settings.limits.max_message_bytes)


def _own_runner(app: App) -> Runner:
    """For a worker process: the app's runner on a database engine of its
    own, as connections must not cross a fork."""
    return Runner(
        app.spool, Database(app.settings.database.url, app.settings.files.dir), app.workflow
    )


class Service:
    """Everything `mailflow run` starts, and stops again."""

    def __init__(self, app: App, tick_seconds: float = TICK_SECONDS) -> None:
        self.app = app
        self.ticker = Ticker(self._tick, tick_seconds)
        self._stopping = threading.Event()
        self._mail_waiting = threading.Event()
        self._outbox_waiting = threading.Event()
        self._archive_waiting = threading.Event()
        self._threads: list[threading.Thread] = []
        self._supervisor_lost = False  # the one way the service stops by itself
        self.metrics = Metrics(app.readings)
        settings = app.settings
        self.worker_processes = (
            WorkerProcesses(
                settings.spool.processes,
                app.spool,
                partial(_own_runner, app),
                settings.spool.process_idle_seconds,
            )
            if settings.spool.processes
            else None
        )
        self.roles = Roles(
            app.database,
            host_name(settings.hosts.name),
            timedelta(seconds=settings.hosts.lease_seconds),
        )
        self._site_term = 0  # the site writer's term the archive was prepared for
        # First, as it can fail on configuration: before any socket is open.
        self.imap = _imap_ingress(app, self._accepted)
        archive = settings.archive
        self.archive_server = (
            ArchiveServer(archive.output_dir, archive.http_host, archive.http_port, app, app)
            if archive.http_port
            else None
        )
        monitor = settings.monitor
        self.monitor_server = (
            MonitorServer(monitor.http_host, monitor.http_port, app.health, self.metrics)
            if monitor.http_port
            else None
        )
        handler = IngressHandler(
            app.spool, app.workflow.router, self._accepted, lmtp=settings.smtp.lmtp
        )
        self.ingress = IngressController(
            handler, settings.smtp, max_message_bytes=settings.limits.max_message_bytes
        )

    def start(self) -> None:
        try:
            self._start()
        except BaseException:
            # A port taken, most often: the threads started so far end and
            # the roles go back, so that no half-started host holds them.
            self._end_threads()
            raise

    def _start(self) -> None:
        recovered = self.app.spool.recover()
        if recovered:
            log.info("recovered %d message(s) claimed before a crash", recovered)
        if self.worker_processes:
            self.worker_processes.start()  # first: no thread may run at a fork
            self._spawn("worker-tallies", self._count_worker_processes)
        else:
            for number in range(self.app.settings.spool.workers):
                self._spawn(f"worker-{number}", self._work)
        # Before the timer and the archive thread ask: the first host up
        # holds its roles from the start.
        self.roles.renew()
        self._spawn("roles", self._hold_roles)
        # With the worker processes forked (they must share no connection of
        # this process's) and before the first pass of the outbox, which then
        # sends what this machine's dead processes had leased.
        freed = self.app.workflow.outbox.free_the_dead(self.app.database)
        if freed:
            log.info("freed %d email(s) leased by a process gone before sending", freed)
        self._spawn("outbox", self._send)
        self._spawn("archive", self._publish)
        self.ingress.start()
        imap = self.imap
        if imap:
            self._spawn("imap", lambda: imap.run(self._stopping))
        if self.archive_server:
            self.archive_server.start()
        if self.monitor_server:
            self.monitor_server.start()
        self.ticker.start()
        log.info(
            "listening for %s on %s:%d",
            "LMTP" if self.app.settings.smtp.lmtp else "SMTP",
            self.app.settings.smtp.host,
            self.app.settings.smtp.port,
        )

    def stop(self) -> None:
        self.ticker.stop()
        self.ingress.stop()
        if self.archive_server:
            self.archive_server.stop()
        if self.monitor_server:
            self.monitor_server.stop()
        self._end_threads()
        self.app.database.dispose()

    def _end_threads(self) -> None:
        self._stopping.set()
        self._mail_waiting.set()
        self._outbox_waiting.set()
        self._archive_waiting.set()
        if self.worker_processes:
            self.worker_processes.stop(STOP_SECONDS)
        for thread in self._threads:
            thread.join(timeout=STOP_SECONDS)
        self.roles.release()

    def wait(self) -> None:
        """Until stopped; raise if the service stopped by itself."""
        self._stopping.wait()
        if self._supervisor_lost:
            self.stop()
            raise ServiceFailed(
                f"the worker processes' supervisor ({self._supervisor()}) ended unexpectedly;"
                " mailflow stopped"
            )

    def _spawn(self, name: str, target: object) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _work(self) -> None:
        worked = False
        while not self._stopping.is_set():
            self._mail_waiting.clear()
            try:
                results = self.app.runner.run_pending()
            except Exception:  # keep the worker alive whatever happens
                log.exception("worker pass failed")
                results = [Result.STORE_DOWN]
            if results:
                self._count(*tally(results))
            elif worked:
                give_back_freed_memory()
            worked = bool(results)
            if Result.RETRY in results and Result.STORE_DOWN not in results:
                # A failed message is not retried in the same instant: its
                # tries are meant to outlast a passing fault.
                self._stopping.wait(POLL_SECONDS)
            elif pause := pause_after(results):
                self._mail_waiting.wait(pause)

    def _count_worker_processes(self) -> None:
        """The worker processes' passes, counted here, until they end: at
        stop, or (the supervisor killed) by themselves, which stops the
        service, for systemd to start it again."""
        assert self.worker_processes
        for processed, shunted in self.worker_processes.tallies():
            self._count(processed, shunted)
        if not self._stopping.is_set():
            self._supervisor_lost = True
            log.critical(
                "the worker processes' supervisor (%s) ended unexpectedly; mailflow stops",
                self._supervisor(),
            )
            self._stopping.set()

    def _supervisor(self) -> str:
        return str(self.worker_processes.supervisor) if self.worker_processes else ""

    def _accepted(self) -> None:
        """A message is safe in the spool: count it and wake a worker."""
        self.metrics.accepted.inc()
        if self.worker_processes:
            self.worker_processes.wake()
        else:
            self._mail_waiting.set()

    def _count(self, processed: int, shunted: int) -> None:
        """A pass of a worker: count it, and let the outbox and the archive
        see at once what it wrote."""
        self.metrics.processed.inc(processed)
        self.metrics.shunted.inc(shunted)
        self._outbox_waiting.set()
        self._archive_waiting.set()

    def _send(self) -> None:
        self._drain(self._outbox_waiting, self.app.drain_outbox, "outbox")

    def _drain(self, waiting: threading.Event, drain: Callable[[], int], what: str) -> None:
        """Drain until stopped: again at once while there was work, else
        when woken or after a poll interval."""
        while not self._stopping.is_set():
            waiting.clear()
            try:
                done = drain()
            except Exception:  # keep the thread alive whatever happens
                log.exception("%s pass failed", what)
                done = 0
            if not done:
                waiting.wait(POLL_SECONDS)

    def _hold_roles(self) -> None:
        """Renew this host's leases until stopped; a scheduler taken over
        from a dead host runs its timed work at once, not a minute later."""
        every = self.roles.lease.total_seconds() / 3
        scheduling = self.roles.term(SCHEDULER)
        while not self._stopping.wait(every):
            self.roles.renew()
            term = self.roles.term(SCHEDULER)
            if term and term != scheduling:
                self._tick()
            scheduling = term
            if self.roles.term(SITE_WRITER) != self._site_term:
                self._archive_waiting.set()

    def _tick(self) -> None:
        if not self.roles.holds(SCHEDULER):
            return  # another host runs the timed work
        try:
            report = self.app.timed.tick()
        except Exception:  # the next tick tries again
            log.exception("scheduled work failed")
            return
        if report.anything:
            self._outbox_waiting.set()
            self._archive_waiting.set()

    def _publish(self) -> None:
        self._drain(self._archive_waiting, self._write_site, "archive")

    def _write_site(self) -> int:
        """The pages of changed cases, on the host holding the site writer.
        At the start of its term it prepares the site (a first build, or
        fresh fixed files); taken over from another host, it rewrites the
        whole site, as its folder may hold pages older than the other
        host's last ones."""
        term = self.roles.term(SITE_WRITER)
        if not term:
            return 0
        if term != self._site_term:
            self._site_term = term
            try:
                if self.roles.took_over(SITE_WRITER):
                    self.app.site.build(self.app.database)
                else:
                    self.app.site.ensure(self.app.database)
            except Exception:
                log.exception(
                    "could not prepare the archive in %s", self.app.settings.archive.output_dir
                )
        return self.app.update_archive()
