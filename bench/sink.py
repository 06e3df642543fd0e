"""The limit: a bare aiosmtpd server that only writes each message to disk
and fsyncs it (file and directory) before answering 250. Run as
``python -m bench.sink PORT FOLDER``; it stops after SECONDS (default 600)."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


class FsyncSink:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _store(self, raw: bytes) -> None:
        path = self.folder / uuid.uuid4().hex
        with open(path, "wb") as file:
            file.write(raw)
            file.flush()
            os.fsync(file.fileno())
        descriptor = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.get_running_loop().run_in_executor(None, self._store, envelope.content)
        return "250 OK"


def main() -> None:
    port, folder = int(sys.argv[1]), Path(sys.argv[2])
    seconds = float(sys.argv[3]) if len(sys.argv) > 3 else 600
    folder.mkdir(parents=True, exist_ok=True)
    controller = Controller(
        FsyncSink(folder), hostname="127.0.0.1", port=port, data_size_limit=30_000_000
    )
    controller.start()
    print("ready", flush=True)
    threading.Event().wait(seconds)
    controller.stop()


if __name__ == "__main__":
    main()
