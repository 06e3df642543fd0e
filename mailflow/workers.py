"""`[spool].processes`: the spool workers as processes, so that one host
uses all its cores (threads share one interpreter lock). On PostgreSQL
they work side by side; on SQLite they take turns on its one write lock.

Forking a process that runs threads is unsafe (a lock another thread
holds stays held in the child for ever), so `mailflow run` forks one
*supervisor* before it starts any thread. The supervisor stays
single-threaded: it forks the workers, and forks another whenever one
dies. Every child starts as a copy of the parent with everything imported
and the application built, so the pages they share are not copied until
written: memory at rest grows by what each worker touches, not by a whole
interpreter. The mail templates and the catalogs are not among them: a
fresh worker compiles and loads those its first messages need, about 60 ms
once per burst of mail, where doing it for all of them before the fork
would cost every start 0.4 s and the supervisor their memory for good
(docs/benchmarks.md, the worker-process notes).

Three pipes join them; an end closing is how each learns the other is gone:

- wake: the main process writes a byte for each message accepted, and an
  idle worker reading it looks at the spool at once. At its end of file (the
  main process stopped, or died) the workers finish their pass and exit.
- results: after each pass a worker writes how many messages it processed
  and shunted; the main process counts them in its metrics and wakes its
  outbox and archive threads. Its end of file means every child is gone.
- life: read by the supervisor only. At its end of file it waits for the
  workers, then exits.

A worker idle for ``[spool].process_idle_seconds`` after some work exits
with ``IDLE_EXIT`` and the supervisor forks a fresh one, as Postfix's
daemons do after ``max_idle``: whatever a 25 MB message left in its heap
(Python keeps freed memory for reuse) and the pages it copied are given
back, so at rest a worker costs only the few pages it touched since.

A worker holds the lock of each spool file it claims (``spool.py``), so
when one dies the supervisor puts its claims, and only its claims, back: a
message is not lost, and one processed up to the commit but not yet
acknowledged comes back as a duplicate (its delivery key), not a second case.

Never touch the main process's database from here: each worker opens its
own engine, as a connection must not be shared across a fork.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import select
import signal
import struct
import threading
import time
from collections.abc import Callable, Iterator

from mailflow.runner import Result, Runner
from mailflow.spool import Spool

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # an idle worker looks at the spool this often anyway
STORE_BACKOFF_SECONDS = 5.0  # the database or the files' folder down: look again then
# (processed, shunted) of one pass: 8 bytes, written to a pipe in one piece.
_TALLY = struct.Struct("!II")
# A worker's exit status when it leaves idle, to be replaced by a fresh one
# (any other is a death, logged as an error).
IDLE_EXIT = 3


def tally(results: list[Result]) -> tuple[int, int]:
    """How many messages a pass processed (duplicates included: they are
    done with) and how many it shunted."""
    done = sum(result in (Result.DONE, Result.DUPLICATE) for result in results)
    return done, results.count(Result.SHUNTED)


def pause_after(results: list[Result]) -> float:
    """How long a worker waits for a wake-up before its next pass."""
    if Result.STORE_DOWN in results:
        return STORE_BACKOFF_SECONDS
    if Result.RETRY in results or not results:
        return POLL_SECONDS
    return 0.0  # there was work: there may be more


class WorkerProcesses:
    """The main process's side: forks the supervisor, wakes the workers,
    reads their tallies, and ends them."""

    def __init__(
        self,
        count: int,
        spool: Spool,
        make_runner: Callable[[], Runner],
        idle_seconds: float,
    ) -> None:
        self.count = count
        self.spool = spool
        self.make_runner = make_runner  # called in each worker, after the fork
        self.idle_seconds = idle_seconds
        self.supervisor = 0
        self._wake = -1
        self._results = -1
        self._life = -1
        self._closing = threading.Lock()  # wake() against stop(), across threads

    def start(self) -> None:
        """Fork the supervisor, which forks the workers. Call it before this
        process starts any thread."""
        others = [t.name for t in threading.enumerate() if t is not threading.current_thread()]
        if others:
            raise RuntimeError(f"worker processes must be forked before any thread: {others}")
        wake_read, wake_write = os.pipe()
        results_read, results_write = os.pipe()
        life_read, life_write = os.pipe()
        os.set_blocking(wake_read, False)  # several workers read it: a late one must not block
        os.set_blocking(wake_write, False)  # a full pipe already wakes everyone
        _share_what_is_built()
        pid = os.fork()
        if pid == 0:
            os.close(wake_write)
            os.close(results_read)
            os.close(life_write)
            _run_child(lambda: self._supervise(life_read, wake_read, results_write))
        os.close(wake_read)
        os.close(results_write)
        os.close(life_read)
        self.supervisor = pid
        self._wake, self._results, self._life = wake_write, results_read, life_write
        log.info("started %d worker processes under supervisor %d", self.count, pid)

    def wake(self) -> None:
        """A message is in the spool: an idle worker takes it at once."""
        with self._closing:
            if self._wake < 0:
                return
            with contextlib.suppress(BlockingIOError):  # full of wake-ups already
                os.write(self._wake, b"\0")

    def tallies(self) -> Iterator[tuple[int, int]]:
        """(processed, shunted) of each pass of any worker, until every
        child has exited."""
        with os.fdopen(self._results, "rb") as results:
            while len(record := results.read(_TALLY.size)) == _TALLY.size:
                yield _TALLY.unpack(record)

    def stop(self, timeout: float) -> None:
        """End the children: each worker after its current pass."""
        with self._closing:
            if self._wake < 0:
                return
            # Life first: a worker exiting at the wake pipe's end is then not
            # taken for a dead one and replaced.
            os.close(self._life)
            os.close(self._wake)
            self._wake = self._life = -1
        if not _wait_for(self.supervisor, timeout):
            log.error(
                "worker supervisor %d did not stop in %.0f s; killed", self.supervisor, timeout
            )
            os.kill(self.supervisor, signal.SIGKILL)
            os.waitpid(self.supervisor, 0)

    def _supervise(self, life: int, wake: int, results: int) -> None:
        """In the supervisor: keep ``count`` workers alive until the main
        process stops or dies, then wait for them."""
        _ignore_stop_signals()
        workers: dict[int, tuple[int, float]] = {}  # pidfd -> pid, when it started
        for _ in range(self.count):
            self._add_worker(workers, life, wake, results)
        while True:
            ready, _, _ = select.select([life, *workers], [], [])
            if life in ready:
                break
            for pidfd in ready:
                pid, started = workers.pop(pidfd)
                _, status = os.waitpid(pid, 0)
                os.close(pidfd)
                if os.WIFEXITED(status) and os.WEXITSTATUS(status) == IDLE_EXIT:
                    log.debug("worker process %d left idle; starting a fresh one", pid)
                    self.spool.recover_claims_of_the_dead()  # one a failed pass let go of
                else:
                    self._after_death(pid, status, started)
                self._add_worker(workers, life, wake, results)
        for pidfd, (pid, _) in workers.items():
            os.waitpid(pid, 0)
            os.close(pidfd)

    def _after_death(self, pid: int, status: int, started: float) -> None:
        recovered = self.spool.recover_claims_of_the_dead()
        log.error(
            "worker process %d ended (%s); %d claimed message(s) back in the spool; "
            "starting another",
            pid,
            _describe(status),
            recovered,
        )
        if time.monotonic() - started < POLL_SECONDS:
            time.sleep(POLL_SECONDS)  # one that dies at once must not spin

    def _add_worker(
        self, workers: dict[int, tuple[int, float]], life: int, wake: int, results: int
    ) -> None:
        pid = self._fork_worker(life, wake, results)
        workers[os.pidfd_open(pid)] = (pid, time.monotonic())

    def _fork_worker(self, life: int, wake: int, results: int) -> int:
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:
            os.close(life)
            _die_with(supervisor)
            _run_child(
                lambda: _work(self.make_runner(), wake, results, supervisor, self.idle_seconds)
            )
        return pid


def _die_with(supervisor: int) -> None:
    """Have the kernel kill this worker (Linux: PR_SET_PDEATHSIG) when its
    supervisor dies, as when `mailflow run` kills it for not stopping in
    time: a worker still working through a backlog must not outlive the
    service. Killed mid-message it loses nothing (the spool's claim)."""
    set_parent_death_signal = 1  # PR_SET_PDEATHSIG, <linux/prctl.h>
    ctypes.CDLL(None, use_errno=True).prctl(set_parent_death_signal, signal.SIGKILL)
    if os.getppid() != supervisor:  # it died before the call
        os._exit(0)


def give_back_freed_memory() -> None:
    """Hand the heap's free pages back to the system (glibc's
    ``malloc_trim``; elsewhere nothing): the worker threads do it when they
    go idle after work, as the worker processes are replaced then."""
    trim = getattr(ctypes.CDLL(None), "malloc_trim", None)
    if trim is not None:
        trim(0)


def _share_what_is_built() -> None:
    """Keep the pages of everything built so far shared with the children.
    A collection of the oldest generation writes to every object it
    visits, and a page written to is copied: frozen, the objects of the
    built application are never visited again, by the children nor by this
    process (they live as long as it anyway). The garbage goes first."""
    gc.collect()
    gc.freeze()


def _work(runner: Runner, wake: int, results: int, supervisor: int, idle_seconds: float) -> int:
    """A worker's life: a pass over the spool, then a wait for a wake-up,
    until the main process closes the wake pipe or the supervisor is gone
    (exit status 0), or until it has been idle ``idle_seconds`` since it
    last worked (``IDLE_EXIT``). A worker that never worked stays: it is
    as fresh as its replacement would be."""
    last_work: float | None = None
    try:
        while os.getppid() == supervisor:
            try:
                passed = runner.run_pending()
            except Exception:  # keep the worker alive whatever happens
                log.exception("worker pass failed")
                passed = [Result.STORE_DOWN]
            if passed:
                os.write(results, _TALLY.pack(*tally(passed)))
                last_work = time.monotonic()
            if Result.RETRY in passed and Result.STORE_DOWN not in passed:
                # A failed message is not retried in the same instant, even
                # when new mail comes: its tries are meant to outlast a fault.
                time.sleep(POLL_SECONDS)
                continue
            woken = _woken(wake, pause_after(passed))
            if woken is None:
                return 0
            # Only when the wait ran out: a wake-up means a message waits.
            idle = last_work is not None and time.monotonic() - last_work >= idle_seconds
            if woken is False and idle:
                return IDLE_EXIT
        return 0
    finally:
        runner.database.dispose()


def _woken(wake: int, timeout: float) -> bool | None:
    """Wait up to ``timeout`` for a wake-up: True when woken, False when
    the time ran out, None at the pipe's end."""
    ready, _, _ = select.select([wake], [], [], timeout)
    if not ready:
        return False
    try:
        return True if os.read(wake, 4096) else None  # all pending: this pass takes them all
    except BlockingIOError:
        return True  # another worker read it first; a pass costs a listing


def _run_child(body: Callable[[], int | None]) -> None:
    """Run a forked child to its end and exit with the status ``body``
    returns, without returning into the parent's code (nor running its
    atexit handlers, nor closing its database connections, which the
    parent still uses)."""
    status = 1
    try:
        status = body() or 0
    except BaseException:
        log.exception("worker process %d failed", os.getpid())
    finally:
        logging.shutdown()
        os._exit(status)


def _ignore_stop_signals() -> None:
    """Ctrl-C reaches the whole process group, and systemd sends SIGTERM to
    every process of the service at once; the children end when the main
    process closes their pipes, each after its current message, never in
    the middle of one."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _wait_for(pid: int, timeout: float) -> bool:
    """Reap the child ``pid``; False if it has not exited within ``timeout``."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
    finally:
        os.close(pidfd)
    if not ready:
        return False
    os.waitpid(pid, 0)
    return True


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return signal.Signals(os.WTERMSIG(status)).name
    return f"exit status {os.waitstatus_to_exitcode(status)}"
