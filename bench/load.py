"""The load generator: N SMTP (or LMTP) connections on 127.0.0.1, each
reused for its share of the messages; the time of each DATA phase (sending
the content until the server's 250) is recorded."""

from __future__ import annotations

import smtplib
import threading
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class LoadResult:
    messages: int
    bytes: int
    seconds: float
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds

    @property
    def megabytes_per_second(self) -> float:
        return self.bytes / self.seconds / 1e6

    def percentile(self, share: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def send_all(
    port: int,
    messages: list[bytes],
    connections: int,
    timeout: float = 120,
    recipient: str = "submit@mailflow.localhost",
    client: type[smtplib.SMTP] = smtplib.SMTP,
) -> LoadResult:
    """``client=smtplib.LMTP`` for a server that takes mail over LMTP (its
    LHLO instead of EHLO; one recipient, so one reply after DATA)."""
    latencies: list[float] = []
    lock = threading.Lock()
    failures: list[BaseException] = []

    def worker(share: list[bytes]) -> None:
        try:
            with client("127.0.0.1", port, timeout=timeout) as smtp:
                smtp.ehlo()
                for raw in share:
                    smtp.mail("bench@example.org")
                    smtp.rcpt(recipient)
                    started = time.perf_counter()
                    code, reply = smtp.data(raw)
                    elapsed = time.perf_counter() - started
                    if code != 250:
                        raise RuntimeError(f"server answered {code} {reply!r}")
                    with lock:
                        latencies.append(elapsed)
        except BaseException as exc:  # reported by the caller
            failures.append(exc)

    shares = [messages[i::connections] for i in range(connections)]
    threads = [threading.Thread(target=worker, args=(s,)) for s in shares if s]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if failures:
        raise failures[0]
    return LoadResult(len(messages), sum(map(len, messages)), seconds, latencies)
