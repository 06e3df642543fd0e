"""What every command shares: the settings, the application for the
length of one command, the process's open-file limit, the exit codes and
the argument types that are parsed here rather than by argparse.

Nothing here knows a command; each role's module calls these.
"""

from __future__ import annotations

import argparse
import logging
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from mailflow import logs
from mailflow.app import App, build
from mailflow.config import Settings, config_path, load_settings
from mailflow.errors import UsageError

# sysexits.h: what an MTA's pipe transport understands.
EX_DATAERR, EX_TEMPFAIL, EX_CONFIG = 65, 75, 78
EX_USAGE = 2  # as argparse exits on a usage error

# One logger for the whole command line, named as it was before the split,
# so that log filters and readers of the log keep finding it.
log = logging.getLogger("mailflow.cli")


def settings_from(args: argparse.Namespace) -> Settings:
    settings = load_settings(config_path(args.config))
    logs.use_format(settings.log.format)
    return settings


@contextmanager
def open_app(settings: Settings) -> Iterator[App]:
    app = build(settings)
    try:
        yield app
    finally:
        app.database.dispose()


def raise_open_file_limit() -> None:
    """Every SMTP client holds an open file. Under the usual soft limit of
    1,024, a thousand idle clients would also keep the workers from opening
    spool files; the hard limit is what the operator allows (systemd's
    LimitNOFILE, see deploy/)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:
            log.warning("open files stay limited to %d: %s", soft, exc)


def moment_arg(text: str) -> datetime:
    """`tick --now`: a full ISO 8601 time; the offset is required, as a
    scheduled job must not guess the time zone."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"--now {text!r} is not an ISO 8601 time; write e.g. 2026-12-01T08:00:00+00:00"
        ) from None
    if moment.tzinfo is None:
        raise UsageError(f"--now {text!r} needs an offset, e.g. {text}+00:00")
    return moment


def day_arg(text: str, option: str) -> datetime:
    """A date (YYYY-MM-DD, midnight UTC) or a full ISO 8601 time with offset."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a date; write e.g. 2026-10-01") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
