"""Cron expressions (UTC), as the schedules in the config are written, and
the timer that runs the scheduled work inside `mailflow run`. The only
importer of apscheduler."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

log = logging.getLogger(__name__)

_INSTANT = timedelta(microseconds=1)


def parse_cron(expression: str) -> CronTrigger:
    """Raise ValueError naming what is wrong with a five-field cron expression."""
    try:
        return CronTrigger.from_crontab(expression, timezone=UTC)
    except ValueError as exc:
        raise ValueError(f'not a cron expression ({exc}); write e.g. "0 8 * * MON"') from exc


def first_fire(expression: str, at_or_after: datetime) -> datetime:
    """The first moment the schedule fires at or after the given one."""
    fire = parse_cron(expression).get_next_fire_time(None, at_or_after)
    assert fire is not None  # a five-field cron expression always fires again
    return fire.astimezone(UTC)


def next_fire(expression: str, after: datetime) -> datetime:
    """The first moment the schedule fires strictly after the given one."""
    return first_fire(expression, after + _INSTANT)


class Ticker:
    """Calls ``tick`` every ``seconds`` in a background thread, never two
    at once; a late call is made once, not once per missed interval. What
    is due is decided inside ``tick`` from the database, so this timer,
    `mailflow tick` from cron, and several processes agree."""

    def __init__(self, tick: Callable[[], None], seconds: float) -> None:
        self._scheduler = BackgroundScheduler(timezone=UTC)
        self._scheduler.add_job(
            tick,
            IntervalTrigger(seconds=seconds, timezone=UTC),
            id="tick",
            max_instances=1,
            coalesce=True,
            next_run_time=datetime.now(UTC),
        )

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        self._scheduler.shutdown(wait=True)
