"""How log lines look: one line of text for a person at a terminal, or,
with ``[log].format = "json"``, one JSON object per line for a log
collector (SPEC section 8, "Logs").

The standard library's ``logging`` does the work; this module only formats.
A JSON line carries ``timestamp``, ``level``, ``logger`` and ``message``,
and the structured fields a call passes in ``extra`` (``message_id``,
``outbox_id``, ``recipient``, ``reply`` ...), each under its own name, so
that a collector can search them without parsing the message.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Literal

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

# What every LogRecord has: anything else on a record came from ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and key not in line:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def formatter(kind: Literal["text", "json"]) -> logging.Formatter:
    return JsonFormatter() if kind == "json" else logging.Formatter(TEXT_FORMAT)


# The handler ``start`` installs: the only one whose format is ours to change.
_ours: list[logging.Handler] = []


def start(verbose: bool) -> None:
    """Log to standard error, as text until the config says otherwise.
    Where logging is already set up (a host program, pytest), it is left so."""
    if logging.getLogger().handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(formatter("text"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler])
    _ours.append(handler)


def use_format(kind: Literal["text", "json"]) -> None:
    """The format is known only once the config is read, after logging
    started."""
    for handler in _ours:
        handler.setFormatter(formatter(kind))
