"""One reading of the queues and the database, for /metrics and `mailflow status`.

Everything is read when asked, from the spool folder and the database, so
that every process (and every host on one database) reports the same
numbers. This module only reads: it never claims a message or changes a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mailflow.durable import cannot_write
from mailflow.spool import Spool
from mailflow.store import queries
from mailflow.store.db import Database


@dataclass(frozen=True)
class Readings:
    spool: dict[str, int]  # waiting, processing, shunted
    oldest_spooled: datetime | None
    outgoing: dict[str, int]  # sent, failed, deferred, waiting
    oldest_outgoing: datetime | None
    cases: dict[str, int]  # by state
    last_tick: datetime | None


def read(spool: Spool, database: Database) -> Readings:
    with database.reading() as session:
        return Readings(
            spool=spool.depths(),
            oldest_spooled=spool.oldest_waiting(),
            outgoing=queries.outgoing_by_state(session),
            oldest_outgoing=queries.oldest_waiting_outgoing(session),
            cases=queries.cases_by_state(session),
            last_tick=queries.last_tick(session),
        )


def health(spool: Spool, database: Database) -> dict[str, str]:
    """ "ok", or what is wrong, for each part mailflow cannot work without."""
    return {
        "database": database.answers() or "ok",
        "spool": cannot_write(spool.tmp) or "ok",
        "files": cannot_write(database.files.root) or "ok",  # a shared mount gone, a full disk
    }
