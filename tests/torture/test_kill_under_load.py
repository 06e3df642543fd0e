"""SIGKILL under load (SPEC section 10): the real `mailflow run` is killed
five times at random moments while 20 SMTP clients send 100 distinct
submissions, retrying, as mail servers do, on a 4xx answer or a dropped
connection. Every message that got 250 has exactly one case and one
confirmation email; none is lost, none doubled; no temporary file is left.

The moments are random (seeded) shares of the run: each kill comes when
that many messages have been accepted, so every one falls while clients
are sending and the spool is being worked. A longer run by hand:
``MAILFLOW_TORTURE_MESSAGES=1000`` (or more).
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import signal
import smtplib
import threading
import time
from email.policy import SMTP as SMTP_POLICY
from pathlib import Path

import pytest
from conftest import wait_until
from mails import address, submission
from test_crash import cases_and_confirmations, handled, start, stop

from mailflow.config import Settings, load_settings
from mailflow.store.db import Database

pytestmark = pytest.mark.torture

MESSAGES = int(os.environ.get("MAILFLOW_TORTURE_MESSAGES", "100"))
CLIENTS, KILLS = 20, 5
SUBMIT = address("submit")


@pytest.fixture
def load_settings_(write_config, database_url: str) -> Settings:  # type: ignore[no-untyped-def]
    return load_settings(write_config("", database_url), environ={})


class Senders:
    """Twenty mail servers' worth of clients: each takes the next message
    and tries until it hears 250, reconnecting after a drop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.waiting: queue.Queue[int] = queue.Queue()
        for number in range(MESSAGES):
            self.waiting.put(number)
        self.accepted: set[int] = set()
        self.retries = 0
        self.refused: list[str] = []
        self._lock = threading.Lock()

    def run(self) -> None:
        smtp: smtplib.SMTP | None = None
        while True:
            try:
                number = self.waiting.get_nowait()
            except queue.Empty:
                break
            sender = f"person{number}@example.org"
            # Flattened once: a mail server retries the very bytes it queued
            # (flattening again would draw a new MIME boundary: a new message).
            raw = submission(sender=sender, subject=f"Practice {number}").as_bytes(
                policy=SMTP_POLICY
            )
            while True:
                try:
                    if smtp is None:
                        smtp = smtplib.SMTP(
                            self.settings.smtp.host, self.settings.smtp.port, timeout=30
                        )
                    smtp.sendmail(sender, [SUBMIT], raw)
                    with self._lock:
                        self.accepted.add(number)
                    break
                except smtplib.SMTPResponseException as exc:
                    if exc.smtp_code >= 500:
                        self.refused.append(f"{number}: {exc}")
                        break
                    smtp = self._drop(smtp)
                except (smtplib.SMTPServerDisconnected, OSError):
                    smtp = self._drop(smtp)
        if smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                smtp.quit()

    def _drop(self, smtp: smtplib.SMTP | None) -> None:
        """Close the connection and pause before the next try."""
        with self._lock:
            self.retries += 1
        if smtp is not None:
            with contextlib.suppress(OSError):
                smtp.close()
        time.sleep(0.2)
        return None


def interrupted_waiting(spool: Path) -> bool:
    """A message a kill interrupted is still in the spool: back in new/
    with a try counted, or claimed again (its second try or later)."""
    tries = [
        (folder, int(name.rsplit(".t", 1)[1]))
        for folder in ("new", "cur")
        for name in os.listdir(spool / folder)
        if ".t" in name
    ]
    return any(n >= 1 if folder == "new" else n >= 2 for folder, n in tries)


def test_five_sigkills_under_load_lose_and_double_nothing(
    load_settings_: Settings, tmp_path: Path
) -> None:
    settings, log = load_settings_, tmp_path / "run.log"
    processes = [start(settings, log)]
    senders = Senders(settings)
    clients = [threading.Thread(target=senders.run) for _ in range(CLIENTS)]
    started = time.monotonic()
    for client in clients:
        client.start()
    rng = random.Random(11)
    moments = sorted(rng.sample(range(MESSAGES // 10, MESSAGES * 9 // 10), KILLS))
    try:
        for moment in moments:
            wait_until(lambda: len(senders.accepted) >= moment, 120, f"{moment} accepted")  # noqa: B023
            # A kill counts as a try of the messages it interrupts (a message
            # that kills the process is shunted after [spool].max_tries), so
            # the next kill waits until the restarted service took up again
            # what the last one interrupted: five kills, each interrupting
            # other messages, as five crashes under load would.
            wait_until(lambda: not interrupted_waiting(settings.spool.dir), 120, "the retaken")
            processes[-1].send_signal(signal.SIGKILL)
            processes[-1].wait(10)
            processes.append(start(settings, log))
        for client in clients:
            client.join(300)
        sending = time.monotonic() - started
        assert senders.refused == []
        assert senders.accepted == set(range(MESSAGES))

        database = Database(settings.database.url)
        try:
            wait_until(lambda: handled(database) >= MESSAGES, 300, "every message handled")
            spool = settings.spool.dir
            wait_until(
                lambda: not any((spool / "new").iterdir()) and not any((spool / "cur").iterdir()),
                60,
                "the spool to empty",
            )
            titles, confirmations = cases_and_confirmations(database)
        finally:
            database.dispose()
        assert sorted(titles) == sorted(f"Practice {n}" for n in range(MESSAGES))
        assert sorted(confirmations) == sorted(f"person{n}@example.org" for n in range(MESSAGES))
        assert list((settings.spool.dir / "tmp").iterdir()) == []
        assert list((settings.spool.dir / "shunt").iterdir()) == []
        print(
            f"\n{MESSAGES} messages, {CLIENTS} clients, {KILLS} SIGKILLs: sent in {sending:.1f} s "
            f"with {senders.retries} retries; 0 lost, 0 doubled"
        )
    finally:
        for process in processes:
            stop(process)
