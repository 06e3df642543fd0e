"""Cron expressions (UTC), as the schedules in the config are written.
The only importer of apscheduler's trigger machinery."""

from __future__ import annotations

from datetime import UTC

from apscheduler.triggers.cron import CronTrigger


def parse_cron(expression: str) -> CronTrigger:
    """Raise ValueError naming what is wrong with a five-field cron expression."""
    try:
        return CronTrigger.from_crontab(expression, timezone=UTC)
    except ValueError as exc:
        raise ValueError(f'not a cron expression ({exc}); write e.g. "0 8 * * MON"') from exc
