"""What `mailflow status` prints: this host's spool, the shared outbox and
last tick, who holds the scheduler and the site writer, and every host
seen on the database with its last heartbeat; as text for a person or as
JSON for a script.

Only reads and formats; the readings come from ``readings.py`` and the
roles from ``hosts.py``. Operators read this, in English, as log lines.
"""

from __future__ import annotations

import socket
from datetime import datetime, timedelta

from mailflow.hosts import ROLES, Hosts, SeenHost
from mailflow.monitor.readings import Readings

ROLE_NAMES = {"scheduler": "Scheduler", "site_writer": "Site writer"}


def is_this_machine(name: str, configured: str) -> bool:
    """A host's name is ``[hosts].name`` or hostname:pid."""
    return name == configured if configured else name.startswith(f"{socket.gethostname()}:")


def state(host: SeenHost, now: datetime, lease: timedelta) -> str:
    """ "stopped" (cleanly), "running" (heard from within a lease), else
    "silent": killed, hung or cut off from the database."""
    if host.stopped_at is not None:
        return "stopped"
    return "running" if now - host.seen_at <= lease else "silent"


def text(readings: Readings, hosts: Hosts, now: datetime, lease: timedelta) -> list[str]:
    spool, outgoing = readings.spool, readings.outgoing
    lines = [
        f"Host: {socket.gethostname()}",
        f"Spool: {spool['waiting']} waiting, {spool['processing']} being processed, "
        f"{spool['shunted']} shunted; oldest waiting: {since(readings.oldest_spooled, now)}",
        f"Outbox: {outgoing['waiting'] + outgoing['deferred']} waiting "
        f"({outgoing['deferred']} deferred after a failed try), {outgoing['failed']} failed "
        f"for good, {outgoing['sent']} sent; oldest waiting: "
        f"{since(readings.oldest_outgoing, now)}",
        f"Last tick: {since(readings.last_tick, now)}",
    ]
    for holding in hosts.holdings:
        name = ROLE_NAMES[holding.role]
        if not holding.holder or holding.expires_at is None:
            lines.append(f"{name}: nobody (no running host renewed it)")
            continue
        left = int((holding.expires_at - hosts.now).total_seconds())
        lines.append(
            f"{name}: {holding.holder} since {since(holding.since, hosts.now)}, "
            f"renewed for {left} s more"
        )
    lines.append(f"Hosts seen in the last day: {len(hosts.hosts)}")
    for host in hosts.hosts:
        condition = {
            "stopped": f"stopped {since(host.stopped_at, hosts.now)}",
            "running": "running",
            "silent": "silent for longer than a lease (killed, hung or cut off)",
        }[state(host, hosts.now, lease)]
        roles = " and ".join(ROLE_NAMES[role].lower() for role in host.roles)
        lines.append(
            f"  {host.name}: {condition}; last seen {since(host.seen_at, hosts.now)}"
            + (f"; holds the {roles}" if roles else "")
        )
    return lines


def record(
    readings: Readings, hosts: Hosts, now: datetime, lease: timedelta, configured: str
) -> dict[str, object]:
    return {
        "host": socket.gethostname(),
        "roles": {
            h.role: {
                "holder": h.holder or None,
                "since": moment(h.since),
                "until": moment(h.expires_at),
            }
            for h in hosts.holdings
        },
        "hosts": [
            {
                "name": host.name,
                "started_at": moment(host.started_at),
                "seen_at": moment(host.seen_at),
                "seen_seconds_ago": max(0, int((hosts.now - host.seen_at).total_seconds())),
                "stopped_at": moment(host.stopped_at),
                "state": state(host, hosts.now, lease),
                **{role: role in host.roles for role in ROLES},
                "this_machine": is_this_machine(host.name, configured),
            }
            for host in hosts.hosts
        ],
        "spool": {**readings.spool, "oldest_waiting": moment(readings.oldest_spooled)},
        "outbox": {**readings.outgoing, "oldest_waiting": moment(readings.oldest_outgoing)},
        "last_tick": moment(readings.last_tick),
        "checked_at": now.isoformat(),
    }


def moment(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def since(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "none"
    seconds = max(0, int((now - value).total_seconds()))
    return f"{value.isoformat(timespec='seconds')} ({seconds} s ago)"
