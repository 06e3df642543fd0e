"""The Prometheus metrics of `mailflow run` (``/metrics``).

The only importer of prometheus_client. Counters of this process (messages
accepted, processed, shunted) count up in memory; what lives in the
database or the spool (cases by state, outgoing email by state, the oldest
waiting message, the last tick) is read at each scrape by a collector, so
several processes never disagree about it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector

from mailflow.monitor.readings import Readings

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """One registry per service, so two services in one process (tests)
    never count into each other."""

    def __init__(self, read: Callable[[], Readings]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.accepted = Counter(
            "mailflow_messages_accepted",
            "Messages accepted into the spool by this process",
            registry=self.registry,
        )
        self.processed = Counter(
            "mailflow_messages_processed",
            "Spooled messages processed and committed by this process",
            registry=self.registry,
        )
        self.shunted = Counter(
            "mailflow_messages_shunted",
            "Spooled messages set aside after repeated failures by this process",
            registry=self.registry,
        )
        self.registry.register(_StoredReadings(read))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _StoredReadings(Collector):
    def __init__(self, read: Callable[[], Readings]) -> None:
        self._read = read

    def collect(self) -> Iterator[Metric]:
        readings = self._read()
        now = datetime.now(UTC)
        cases = GaugeMetricFamily("mailflow_cases", "Cases by state", labels=["state"])
        for state, count in sorted(readings.cases.items()):
            cases.add_metric([state], count)
        yield cases
        outgoing = GaugeMetricFamily(
            "mailflow_outgoing_emails",
            "Outgoing emails: sent, deferred (waiting after a failed try), failed for good, "
            "waiting (not tried yet)",
            labels=["state"],
        )
        for state, count in sorted(readings.outgoing.items()):
            outgoing.add_metric([state], count)
        yield outgoing
        spool = GaugeMetricFamily(
            "mailflow_spool_messages", "Messages in the spool", labels=["folder"]
        )
        for folder, count in sorted(readings.spool.items()):
            spool.add_metric([folder], count)
        yield spool
        yield GaugeMetricFamily(
            "mailflow_spool_oldest_waiting_age_seconds",
            "Age of the oldest message waiting in the spool (0: none waits)",
            value=_age(readings.oldest_spooled, now),
        )
        yield GaugeMetricFamily(
            "mailflow_outgoing_oldest_waiting_age_seconds",
            "Age of the oldest outgoing email not yet sent (0: none waits)",
            value=_age(readings.oldest_outgoing, now),
        )
        yield GaugeMetricFamily(
            "mailflow_last_tick_timestamp_seconds",
            "When the timed work last ran, as a Unix time (0: never)",
            value=readings.last_tick.timestamp() if readings.last_tick else 0.0,
        )


def _age(since: datetime | None, now: datetime) -> float:
    return max(0.0, (now - since).total_seconds()) if since else 0.0
