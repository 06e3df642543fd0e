"""The outbox is drained in batches (notify/outbox.py): one transaction
leases up to ten emails, each is marked sent right after its delivery.
Two drainers at once, as two hosts or two passes, send every email once;
a delivery slow enough to eat the batch's lease hands the rest back."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from mailflow.app import App
from mailflow.notify.transports import MaildirTransport
from mailflow.store.models import OutboxMessage

EMAILS = 15  # one drainer finishes its short batch while the other is still in its full one


class SlowMaildir(MaildirTransport):
    """The real maildir transport, with a short lease and a slow delivery."""

    def __init__(self, root: Path, lease: float, takes: float) -> None:
        super().__init__(root)
        self.lease = timedelta(seconds=lease)
        self.takes = takes
        self.delivered: Counter[int] = Counter()
        self._lock = threading.Lock()

    def deliver(self, recipient: str, envelope_sender: str, raw: bytes, row_id: int) -> str:
        time.sleep(self.takes)
        with self._lock:
            self.delivered[row_id] += 1
        return super().deliver(recipient, envelope_sender, raw, row_id)


def waiting_emails(app: App, count: int) -> None:
    now = app.workflow.clock.now()
    with app.database.transaction() as session:
        session.add_all(
            OutboxMessage(
                created_at=now,
                recipient=f"reader{n}@example.org",
                envelope_sender="bounces@mailflow.localhost",
                message_id=f"<{n}@mailflow.localhost>",
                subject=f"Email {n}",
                template="test",
                raw=f"Subject: Email {n}\r\n\r\nHello\r\n".encode(),
                next_attempt_at=now,
            )
            for n in range(count)
        )


def drain_together(app: App, transport: SlowMaildir, drainers: int) -> list[int]:
    sent: list[int] = []

    def drain() -> None:
        sent.append(app.workflow.outbox.drain(app.database, transport))

    threads = [threading.Thread(target=drain) for _ in range(drainers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return sent


@pytest.mark.parametrize(("lease", "takes"), [(5.0, 0.002), (0.6, 0.25)], ids=["fast", "slow"])
def test_two_drainers_send_each_email_once(
    app: App, tmp_path: Path, lease: float, takes: float
) -> None:
    waiting_emails(app, EMAILS)
    transport = SlowMaildir(tmp_path / "maildir", lease, takes)
    sent = drain_together(app, transport, 2)
    assert sum(sent) == EMAILS
    assert set(transport.delivered) == set(range(1, EMAILS + 1))
    assert max(transport.delivered.values()) == 1  # none twice
    assert len(list((tmp_path / "maildir" / "new").iterdir())) == EMAILS
