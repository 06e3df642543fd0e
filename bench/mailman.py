"""``python -m bench mailman``: mailflow side by side with GNU Mailman 3,
what people would pick instead (issue 23: at least 3x Mailman's
accept-to-held rate, same corpus, same run).

A post held for moderation in Mailman is the counterpart of a case opened
in mailflow with its acknowledgement and review email: both tell the
sender, give a reviewer the message, and wait for a decision. Each
repetition runs, in turn, the fsync sink (the limit), Mailman, and mailflow
on SQLite and PostgreSQL, so a change in the machine's pace touches all of
them. Mailman is timed to every post held and, further, to both notices
of every post delivered; mailflow to both of its emails in the outbox."""

from __future__ import annotations

import os
import smtplib
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.corpus import submission
from bench.endtoend import (
    CONNECTIONS,
    count_files,
    drop_postgres,
    end_to_end,
    fresh_postgres,
    limit,
)
from bench.load import send_all
from bench.mailman_site import LIST, MailmanSite, install, versions
from bench.servers import start_sink, stop

WAIT_SECONDS = 1_800  # for every post to be held, then notified; then the run failed
SETTLE_SECONDS = 3.0  # after start: Mailman's twelve runners import and settle


@dataclass(frozen=True)
class MailmanRun:
    accepted: float  # msg/s, first LMTP send to the last 250
    held: float  # msg/s, first send until every post is held
    notified: float  # msg/s, first send until both notices of every post are in the sink
    # Posts Mailman's hold chain failed on (an error of Mailman's own, its
    # shunt queue): neither held nor notified, left out of both rates.
    shunted: int = 0


def mailman_run(messages: list[bytes]) -> MailmanRun:
    """A fresh Mailman site taking the corpus over LMTP; stopped, and its
    folder removed, whatever happens."""
    count = len(messages)
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-mailman-") as folder:
        root = Path(folder)
        sink, sink_port = start_sink(root / "sink", seconds=WAIT_SECONDS + 600)
        site = None
        try:
            site = MailmanSite(root, sink_port, count)
            site.start()
            time.sleep(SETTLE_SECONDS)
            started = time.perf_counter()
            load = send_all(
                site.ports.lmtp, messages, CONNECTIONS, recipient=LIST, client=smtplib.LMTP
            )
            held = _until(
                lambda: site.held() + site.shunted() >= count, f"{count} posts held", started
            )
            taken = site.held()
            notified = _until(
                lambda: count_files(root / "sink") >= 2 * taken,
                f"{2 * taken} notices delivered",
                started,
            )
            if site.held_by_rest() != taken:  # the REST API agrees with the database
                raise RuntimeError(f"Mailman's REST API does not count {taken} held posts")
        finally:
            if site is not None:
                site.stop()
            stop(sink)
    return MailmanRun(load.per_second, taken / held, taken / notified, count - taken)


def _until(done: Callable[[], bool], what: str, started: float) -> float:
    """Seconds from ``started`` until ``done()``, polled every 0.1 s."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"Mailman: no {what} after {WAIT_SECONDS} s")
        time.sleep(0.1)
    return time.perf_counter() - started


@dataclass
class Figures:
    """Every repetition's rates, msg/s, by what was timed."""

    limit: list[float]
    mailman: list[MailmanRun]
    mailflow: dict[str, list[tuple[float, float]]]  # way -> (accepted, end to end)


# How mailflow runs, by its row: the database, and 0 for its default 2
# worker threads or a number of worker processes (all cores).
WAYS = {
    "SQLite": ("sqlite", 0),
    "SQLite, 2 processes": ("sqlite", 2),
    "PostgreSQL": ("postgresql", 0),
    "PostgreSQL, 2 processes": ("postgresql", 2),
}


def run_mailman(quick: bool) -> list[str]:
    install()
    count, size, repetitions = (10, 2_000, 1) if quick else (1_000, 300_000, 3)
    messages = [submission(n, size) for n in range(count)]
    figures = Figures([], [], {way: [] for way in WAYS})
    load_before, began = os.getloadavg()[0], time.monotonic()
    for repetition in range(repetitions):
        figures.limit.append(limit(messages))
        print(f"[{repetition + 1}] limit {figures.limit[-1]:.1f} msg/s", flush=True)
        figures.mailman.append(mailman_run(messages))
        found = figures.mailman[-1]
        print(
            f"[{repetition + 1}] mailman: accept {found.accepted:.1f}, held {found.held:.1f}, "
            f"notified {found.notified:.1f} msg/s",
            flush=True,
        )
        for way, (database, processes) in WAYS.items():
            if quick and (database != "sqlite" or processes):
                continue  # the smoke test: every step once, no more
            figures.mailflow[way].append(_mailflow(messages, database, processes))
            accepted, done = figures.mailflow[way][-1]
            print(
                f"[{repetition + 1}] mailflow {way}: accept {accepted:.1f}, "
                f"case open {done:.1f} msg/s",
                flush=True,
            )
    minutes = (time.monotonic() - began) / 60
    return _section(figures, count, size, repetitions, (load_before, os.getloadavg()[0]), minutes)


def _mailflow(messages: list[bytes], database: str, processes: int) -> tuple[float, float]:
    """(accepted, end to end) msg/s of one run, on a fresh database."""
    if database == "sqlite":
        run = end_to_end(messages, "", None, processes)
        return run.accepted, run.rate
    postgres = fresh_postgres()
    if postgres is None:
        raise RuntimeError("PostgreSQL is not reachable (MAILFLOW_BENCH_POSTGRES_URL)")
    try:
        run = end_to_end(messages, postgres[0], None, processes)
    finally:
        drop_postgres(postgres[1])
    return run.accepted, run.rate


def _spread(values: list[float]) -> str:
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def _section(
    figures: Figures,
    count: int,
    size: int,
    repetitions: int,
    load: tuple[float, float],
    minutes: float,
) -> list[str]:
    held = statistics.median(r.held for r in figures.mailman)
    rows = [
        f"| GNU Mailman, SQLite | {_spread([r.accepted for r in figures.mailman])} "
        f"| {_spread([r.held for r in figures.mailman])} "
        f"| {_spread([r.notified for r in figures.mailman])} | 1.00x |"
    ]
    for way, found in figures.mailflow.items():
        if found:
            done = [rate for _, rate in found]
            rows.append(
                f"| mailflow, {way} | {_spread([accepted for accepted, _ in found])} "
                f"| {_spread(done)} | {_spread(done)} "
                f"| **{statistics.median(done) / held:.2f}x** |"
            )
    per_run = ", ".join(  # SQLite runs in every repetition, as Mailman does
        f"{rate / mailman.held:.2f}x"
        for (_, rate), mailman in zip(figures.mailflow["SQLite"], figures.mailman, strict=True)
    )
    return [
        "## Side by side with GNU Mailman 3",
        "",
        f"The same {count} submissions of {size // 1000} KB (`bench/corpus.py`) from senders "
        f"each side knows, over {CONNECTIONS} reused connections, to each system on this "
        f"machine; {repetitions} repetition(s), each running the limit, Mailman and mailflow "
        "in turn; median (spread: slowest-fastest). Rates are messages a second from the "
        "first message sent. *Accept*: until the last 250. *Held / case open*: Mailman, "
        "until every post is held for moderation (its database, checked against its REST "
        "API); mailflow, until the acknowledgement and the review email of every "
        "submission are in the outbox. *Both emails out*: Mailman, until both notices of "
        "every post (to the sender, and to the moderator with the post attached) reached "
        "the fsync sink over SMTP; mailflow, the same moment as the column before. The "
        "ratio is to Mailman's accept-to-held rate. mailflow runs in its default "
        "configuration (2 worker threads) and with `[spool].processes = 2` (all cores).",
        "",
        "| system | accept msg/s | held / case open msg/s | both emails out msg/s | ratio |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        f"Limit (the bare aiosmtpd + fsync server, `bench/sink.py`, same messages): "
        f"{_spread(figures.limit)} msg/s. Goal: mailflow at least 3x Mailman's accept-to-held "
        f"rate. {versions()}, in its own virtual environment, Mailman's default "
        "configuration but for paths and ports (SQLite, one instance of each runner); the "
        "senders are list members with `moderation_action = hold`. Load average (1 min): "
        f"{load[0]:.1f} at the start, {load[1]:.1f} at the end; the whole run took "
        f"{minutes:.0f} min. On SQLite the ratio in each repetition, in order: {per_run}."
        + _shunted(figures.mailman, count),
    ]


def _shunted(runs: list[MailmanRun], count: int) -> str:
    """What Mailman failed on, if anything: its own error, the rates left it out."""
    shunted = [run.shunted for run in runs]
    if not any(shunted):
        return ""
    return (
        f" Mailman shunted {', '.join(map(str, shunted))} of the {count} posts (by repetition):"
        " its hold step failed on them (in `mailman/model/requests.py`, a pickle decoded as"
        " `raw-unicode-escape` that happened to hold a `\\u`), so they were neither held nor"
        " notified, and its rates count only the posts it held."
    )
