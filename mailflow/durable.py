"""A file on disk for certain: the one way mailflow writes a file that
someone is told is safe (a spooled message before its 250, a stored
document before its transaction commits, a mail in the outbox maildir).

Written under a temporary name, fsynced, renamed into place, and the
folder fsynced so that the new name survives a power cut too. A reader
never sees half a file, and a crash leaves at most a temporary one.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def write_file(temporary: Path, target: Path, chunks: Iterable[bytes]) -> None:
    """``chunks`` as the file ``target``, through ``temporary`` (in the
    same file system); raise OSError when that is not certain, leaving no
    temporary file behind."""
    try:
        with open(temporary, "wb") as file:
            for chunk in chunks:
                file.write(chunk)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(target.parent)


def fsync_dir(folder: Path) -> None:
    """Make the names in ``folder`` (a rename into it, an unlink) durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def cannot_write(folder: Path) -> str | None:
    """None when ``folder`` takes a new file now, else why not: a full
    disk, a mount gone or read-only (a byte is written, as a full disk
    still gives out empty files)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".probe-") as probe:
            probe.write(b"\0")
            probe.flush()
    except OSError as exc:
        return f"cannot write in {folder}: {exc.strerror}"
    return None
