"""The digest fan-out benchmark: one digest period written to the outbox
for N subscribers (every one of them with something new), in-process, on
SQLite. The figure is digests written per second, with the batch progress
that `mailflow digest send` shows.

The configuration is the default one, so each digest carries the one-click
unsubscribe link as well as the address (the archive's port is set, and
nothing is started on it). One smaller run signs every digest with DKIM,
as a deployment that sets ``[outbound].dkim_selector`` does."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from bench.seed import seed_published, seed_subscribers
from mailflow.app import App, build
from mailflow.config import load_settings
from mailflow.notify.dkim import create_key


def fanout_app(folder: Path, dkim: bool) -> App:
    config = folder / "config.toml"
    text = "[archive]\nhttp_port = 8080\n\n[monitor]\nhttp_port = 0\n"
    if dkim:
        create_key(folder / "dkim.key")
        text += f'\n[outbound]\ndkim_selector = "bench"\ndkim_key_file = "{folder / "dkim.key"}"\n'
    config.write_text(text)
    return build(load_settings(config, environ={}))


def measure(subscribers: int, dkim: bool = False) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="mailflow-bench-fanout-") as folder:
        app = fanout_app(Path(folder), dkim)
        try:
            seed_subscribers(app, subscribers)
            seed_published(app, 8)
            digests = app.timed.digests
            digests.start_now()
            started = time.perf_counter()
            done = digests.fan_out()
            seconds = time.perf_counter() - started
            assert done.sent == subscribers
            signed = " signed" if dkim else ""
            print(f"{subscribers} subscribers{signed}: {seconds:.1f} s", flush=True)
            return {"subscribers": subscribers, "dkim": dkim, "seconds": seconds}
        finally:
            app.database.dispose()


def run_fanout(quick: bool) -> list[str]:
    sizes = (200,) if quick else (1_000, 10_000, 100_000)
    load_before = os.getloadavg()[0]
    rows = [measure(size) for size in sizes]
    rows.append(measure(50 if quick else 1_000, dkim=True))
    # The machine may be shared: how busy it was says how far to trust the figures.
    load = f"{load_before:.1f} before the first run, {os.getloadavg()[0]:.1f} after the last"
    lines = [
        "## Digest fan-out",
        "",
        "One digest period written to the outbox for every subscriber, each with 8 new "
        "cases, 500 subscribers a transaction; SQLite, in-process (`bench/fanout.py`). "
        "Each distinct digest (the same news in the same language) is rendered and "
        "composed once; each subscriber's email is written from it with their own "
        "address, Message-ID and unsubscribe address and link (body and headers), "
        "and one row each. The default configuration: one-click unsubscribe on, DKIM "
        "off, except in the last row. Sending the outbox is not included: that is the "
        "transport's pace.",
        "",
        "| subscribers | DKIM | seconds | digests/s | ms per digest |",
        "| ---: | --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {int(r['subscribers']):,} | {'signed' if r['dkim'] else 'off'} "
            f"| {r['seconds']:.1f} | {r['subscribers'] / r['seconds']:,.0f} "
            f"| {r['seconds'] * 1000 / r['subscribers']:.2f} |"
        )
    return [*lines, "", f"Load average (1 minute) on the machine: {load}."]
