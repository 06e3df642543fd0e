"""The durable inbound queue between ingress and processing.

Every accepted message becomes one file, written to ``tmp/``, fsynced,
renamed into ``new/`` and made permanent by an fsync of ``new/`` itself;
only then does the sender hear 250 (or ``mailflow ingest`` exit 0). The file
holds one JSON line with the envelope, then the raw message exactly as
received, so envelope and message can never be separated by a crash.

A worker claims a file by renaming it into ``cur/`` (atomic, so two workers
never both get it), and the new name counts the tries. It holds an
exclusive ``flock`` on the file from before the rename until it is done
with it, and the kernel drops that lock when the claiming process dies: so
a claimed file whose lock is free was left behind by a dead process, and
goes back to ``new/`` (at the next start, or at once when a worker process
dies while the host keeps running) without touching a live claim. A file
is deleted only after its processing has committed. A message claimed more than
``max_tries`` times (one that crashes the code, even with kill -9) is moved to
``shunt/`` with its bytes intact, for the administrator.

This module never parses a message and never touches the database.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from mailflow.durable import fsync_dir, write_file
from mailflow.errors import SpoolError

_NAME = re.compile(r"^(?P<stem>\d+-[0-9a-f]{32})\.t(?P<tries>\d+)$")


@dataclass(frozen=True)
class Envelope:
    sender: str
    recipients: tuple[str, ...]
    received_at: datetime
    source: str

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "sender": self.sender,
                "recipients": list(self.recipients),
                "received_at": self.received_at.isoformat(),
                "source": self.source,
            }
        ).encode()

    @classmethod
    def from_json(cls, line: bytes) -> Envelope:
        data = json.loads(line)
        return cls(
            sender=data["sender"],
            recipients=tuple(data["recipients"]),
            received_at=datetime.fromisoformat(data["received_at"]),
            source=data["source"],
        )


@dataclass(frozen=True)
class SpoolEntry:
    """A claimed message: its file in ``cur/``, how often it was claimed, and
    the open descriptor that holds the file's lock until it is let go."""

    path: Path
    stem: str
    tries: int
    lock: int

    def read(self) -> tuple[Envelope, bytes]:
        data = self.path.read_bytes()
        line, _, raw = data.partition(b"\n")
        return Envelope.from_json(line), raw


class Spool:
    def __init__(self, root: Path, max_tries: int) -> None:
        self.root = root
        self.max_tries = max_tries
        self.tmp, self.new, self.cur, self.shunt = (
            root / d for d in ("tmp", "new", "cur", "shunt")
        )
        for folder in (self.tmp, self.new, self.cur, self.shunt):
            folder.mkdir(parents=True, exist_ok=True)

    def put(self, envelope: Envelope, raw: bytes) -> str:
        """Store a message durably and return its spool id. Raise SpoolError
        (disk full, I/O error) when it is not certainly on disk."""
        stem = f"{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}-{uuid.uuid4().hex}"
        try:
            write_file(self.tmp / stem, self.new / f"{stem}.t0", (envelope.to_json(), b"\n", raw))
        except OSError as exc:
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            raise SpoolError(
                exc.errno, "spool disk full" if full else f"spool write: {exc}"
            ) from exc
        return stem

    def pending(self) -> list[str]:
        """Names waiting in ``new/``, oldest first."""
        return sorted(os.listdir(self.new))

    def claim(self, name: str) -> SpoolEntry | None:
        """Take one waiting message, or None if another worker was faster."""
        match = _NAME.match(name)
        if match is None:
            return None
        tries = int(match["tries"]) + 1
        target = self.cur / f"{match['stem']}.t{tries}"
        # Locked before the rename, so that no moment exists when the file
        # is in cur/ and unlocked while its claimer lives.
        lock = _lock(self.new / name)
        if lock is None:
            return None
        try:
            os.rename(self.new / name, target)
        except FileNotFoundError:
            os.close(lock)
            return None
        except BaseException:
            os.close(lock)
            raise
        return SpoolEntry(target, match["stem"], tries, lock)

    def claim_by_id(self, stem: str) -> SpoolEntry | None:
        for name in self.pending():
            if name.startswith(stem + "."):
                return self.claim(name)
        return None

    def ack(self, entry: SpoolEntry) -> None:
        """Processing committed: the file is no longer needed."""
        entry.path.unlink(missing_ok=True)
        os.close(entry.lock)

    def release(self, entry: SpoolEntry, *, count_try: bool = True) -> None:
        """Put a claimed message back for a later try. A try that failed for
        an outside reason (database down) does not count towards shunting."""
        tries = entry.tries if count_try else entry.tries - 1
        try:
            os.rename(entry.path, self.new / f"{entry.stem}.t{tries}")
        finally:
            os.close(entry.lock)

    def shunt_entry(self, entry: SpoolEntry) -> Path:
        """Give up on a message, keeping its bytes in ``shunt/``."""
        target = self.shunt / entry.stem
        try:
            os.rename(entry.path, target)
        finally:
            os.close(entry.lock)
        fsync_dir(self.shunt)
        return target

    def requeue(self, stem: str) -> None:
        """Send a shunted message through processing again (after a fix)."""
        os.rename(self.shunt / stem, self.new / f"{stem}.t0")
        fsync_dir(self.new)

    def shunted(self) -> list[str]:
        return sorted(os.listdir(self.shunt))

    def depths(self) -> dict[str, int]:
        """How many messages wait, are being processed, were set aside."""
        return {
            "waiting": len(os.listdir(self.new)),
            "processing": len(os.listdir(self.cur)),
            "shunted": len(os.listdir(self.shunt)),
        }

    def oldest_waiting(self) -> datetime | None:
        """When the oldest message still waiting was accepted: its name
        starts with that moment, so no file is opened."""
        names = self.pending()
        if not names:
            return None
        return datetime.strptime(names[0][:20], "%Y%m%d%H%M%S%f").replace(tzinfo=UTC)

    def recover(self) -> int:
        """At start-up: claims of a crashed process go back to ``new/``;
        half-written files (never acknowledged to anyone) are removed."""
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
        return self.recover_claims_of_the_dead()

    def recover_claims_of_the_dead(self) -> int:
        """Claims whose lock no living process holds go back to ``new/``,
        with their tries counted; the claims of live workers (or of a
        `mailflow ingest` at work) stay where they are."""
        recovered = 0
        for claimed in self.cur.iterdir():
            lock = _lock(claimed)
            if lock is None:
                continue  # held by a live process, or just let go by it
            try:
                # By its path: if its claimer let it go meanwhile (acknowledged,
                # put back, shunted), the path is gone and this does nothing.
                os.rename(claimed, self.new / claimed.name)
                recovered += 1
            except FileNotFoundError:
                pass
            finally:
                os.close(lock)
        fsync_dir(self.new)
        return recovered


def _lock(path: Path) -> int | None:
    """An open descriptor holding the exclusive lock of the file, or None if
    the file is gone or another open file holds the lock."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        return None
    return descriptor
