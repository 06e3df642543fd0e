"""Raw messages and documents as files named by their SHA-256.

A submission's raw message and its document are most of the bytes a case
is made of. Kept as database values they were written twice (the WAL, then
the table) inside every transaction, by the one writer SQLite allows; as
files they are written once (the raw message before its transaction
begins, the document within it), and the database keeps only their names
(``inbound_messages.raw_sha256``, ``documents.sha256``). A review email
waiting in the outbox names its document's file too (``stored_places``),
and is sent with the bytes read from it.

The order makes a crash harmless: a file is written, fsynced and renamed
into place *before* the transaction that refers to it commits. A kill in
between leaves a file nothing refers to; the message is handled again and,
its bytes being the same, finds that very file. A file whose transaction
never commits (a message shunted for good) is an orphan: `sweep` sets aside
files nothing refers to once they are a day old, so it never races a
transaction still under way, and removes them a day later if still
nothing refers to them. Storing bytes that are already there touches
the file, so an old orphan about to be referred to again is young again.

Several hosts share one folder (``[files].dir`` on storage they all mount):
any of them may publish a document another received. The folder belongs in
every backup with the database.

This module never opens the database; `sweep` is told what is referred to.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from mailflow.durable import cannot_write, fsync_dir, write_file
from mailflow.errors import FilesUnavailable

# A day: far longer than any transaction, and a crash's orphans go the next night.
ORPHAN_AGE = timedelta(days=1)
SWEEP_BATCH = 500

_NAME = re.compile(r"^[0-9a-f]{64}$")


class FileStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.trash = root / "trash"  # a sweep's catch, kept one more day (``sweep``)

    def put(self, data: bytes) -> str:
        """Store ``data`` durably and return its name (the SHA-256 in hex).
        Raise FilesUnavailable when the folder takes no file now, OSError
        when only this file could not be stored."""
        name = hashlib.sha256(data).hexdigest()
        target = self.path(name)
        try:
            try:
                os.utime(target)  # already here: young again, so no sweep takes it now
                fsync_dir(target.parent)  # its name too, if another process just wrote it
                return name
            except FileNotFoundError:
                pass
            if not target.parent.is_dir():
                # The subfolder only: a root that is gone (a mount lost) is
                # not made again on the local disk, where no other host sees it.
                target.parent.mkdir(exist_ok=True)
                fsync_dir(self.root)  # the new folder's name, as durable as the file in it
            self.tmp.mkdir(exist_ok=True)
            write_file(self.tmp / uuid.uuid4().hex, target, (data,))
        except OSError as exc:
            # The folder itself taking no file, everyone waits for it; a
            # fault of one subfolder is one message's problem (its try).
            if cannot_write(self.root) is None:
                raise
            raise FilesUnavailable(
                exc.errno, f"[files] dir {self.root}: cannot store {name}: {exc.strerror or exc}"
            ) from exc
        return name

    def read(self, name: str) -> bytes:
        """The bytes of a stored file. Raise FilesUnavailable when the folder
        itself is not there (a mount gone), FileNotFoundError when only this
        file is missing (a restore without it)."""
        path = self.path(name)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        try:  # set aside by a sweep in the instant a transaction named it
            return (self.trash / name).read_bytes()
        except FileNotFoundError as exc:
            if not self.root.is_dir():
                raise FilesUnavailable(exc.errno, _not_there(path)) from exc
            raise FileNotFoundError(exc.errno, _not_there(path)) from exc

    def path(self, name: str) -> Path:
        if not _NAME.match(name):
            raise ValueError(f"not the name of a stored file: {name!r}")
        return self.root / name[:2] / name

    def sweep(self, referred: Callable[[list[str]], set[str]], now: datetime) -> int:
        """Set aside the files older than a day that nothing refers to, and
        remove those set aside by the sweep before if still nothing refers
        to them; ``referred`` answers which of some names the database
        holds. In two steps because a put of the same bytes may make a file
        young again between the sweep's look and its move: a transaction
        that names it then commits within the day, and the next sweep puts
        the file back. Returns how many files were removed."""
        cutoff = (now - ORPHAN_AGE).timestamp()
        removed = self._empty_trash(referred)
        self.trash.mkdir(exist_ok=True)
        for batch in _batches(self._older_than(cutoff), SWEEP_BATCH):
            kept = referred(batch)
            for name in batch:
                if name not in kept:
                    self._set_aside_if_older(name, cutoff)
        self._clear_tmp(cutoff)
        return removed

    def _empty_trash(self, referred: Callable[[list[str]], set[str]]) -> int:
        if not self.trash.is_dir():
            return 0
        removed = 0
        names = [entry.name for entry in os.scandir(self.trash) if _NAME.match(entry.name)]
        for batch in _batches(names, SWEEP_BATCH):
            kept = referred(batch)
            for name in batch:
                if name in kept:
                    self._restore(name)
                else:
                    (self.trash / name).unlink(missing_ok=True)
                    removed += 1
        return removed

    def _restore(self, name: str) -> None:
        target = self.path(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.trash / name, target)
        fsync_dir(target.parent)

    def _older_than(self, cutoff: float) -> Iterator[str]:
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if len(folder.name) != 2 or not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if _NAME.match(entry.name) and entry.stat().st_mtime < cutoff:
                    yield entry.name

    def _set_aside_if_older(self, name: str, cutoff: float) -> None:
        # Looked at again just before: a put since the listing made it young.
        path = self.path(name)
        try:
            if path.stat().st_mtime < cutoff:
                os.replace(path, self.trash / name)
        except FileNotFoundError:
            pass

    def _clear_tmp(self, cutoff: float) -> None:
        """Half-written files of a process killed while writing."""
        if not self.tmp.is_dir():
            return
        for entry in os.scandir(self.tmp):
            if entry.stat().st_mtime < cutoff:
                Path(entry.path).unlink(missing_ok=True)


def files_of(session: Session) -> FileStore:
    """The file store of the database ``session`` belongs to."""
    store = session.info.get("files")
    if not isinstance(store, FileStore):
        raise RuntimeError("this Database was opened without its [files] dir")
    return store


def _batches(names: Iterable[str], size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for name in names:
        batch.append(name)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _not_there(path: Path) -> str:
    # A host without the shared folder mounted, or a restore without it.
    return f"{path} is not in [files] dir: mount it or restore it from the backup"
