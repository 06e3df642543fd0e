"""A real Postfix, private to the test worker, configured the way
deploy/README.md tells an operator: its own config, queue and data
folders, a free loopback port, and the output of `mailflow postfix`
applied with `postconf -e`. Nothing of the system's instance (if any) is
read or touched. A start takes Postfix about a second, so the tests of one
file share one (and one xdist worker, by their ``xdist_group``).

Postfix's master runs as root, as the tests do here and in CI. Debian's
``postfix`` package provides the programs (`.ci/run` installs it); when it
is missing the tests are skipped, unless ``MAILFLOW_TEST_REQUIRE_POSTFIX=1``,
which makes that a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import free_port, wait_until

from mailflow.cli import main as mailflow


def postfix_binary() -> str | None:
    return shutil.which("postfix") or (
        "/usr/sbin/postfix" if os.path.exists("/usr/sbin/postfix") else None
    )


class PostfixServer:
    """A Postfix of its own in a temporary folder. ``mynetworks`` says
    which clients may relay anywhere; ``extra`` is more of main.cf (a
    relayhost, restrictions) for the test's story."""

    def __init__(self, binary: str, lmtp_port: int, mynetworks: str, extra: str) -> None:
        # postconf and postqueue sit next to postfix (/usr/sbin, maybe not on PATH).
        self.programs = Path(binary).parent
        self.port = free_port()
        self.lmtp_port = lmtp_port
        self.mynetworks = mynetworks
        self.extra = extra
        # Not under pytest's tmp_path: Postfix's own user must reach the queue.
        self.root = Path(tempfile.mkdtemp(prefix="mailflow-postfix-"))
        self.root.chmod(0o755)
        self.config = self.root / "etc"
        self.maps = self.root / "mailflow"

    def write_config(self) -> None:
        """What an operator's Postfix has before mailflow (Debian's
        compatibility level, loopback only), then mailflow's settings
        applied exactly as deploy/README.md says."""
        self.config.mkdir()
        (self.root / "queue").mkdir()
        data = self.root / "data"
        data.mkdir()
        shutil.chown(data, "postfix")
        shutil.copyfile("/usr/share/postfix/master.cf.dist", self.config / "master.cf")
        (self.config / "main.cf").write_text(
            f"""compatibility_level = 3.6
queue_directory = {self.root}/queue
data_directory = {data}
maillog_file = {self.root}/maillog
maillog_file_prefixes = {self.root}
myhostname = postfix.test
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = {self.mynetworks}
smtpd_peername_lookup = no
# A stopped mailflow is tried again at once when the test flushes the queue,
# not over a connection Postfix kept open to the mailflow of the test before.
lmtp_connection_cache_on_demand = no
{self.extra}"""
        )
        self.postconf("-MX", "smtp/inet")
        listener = f"127.0.0.1:{self.port}"
        self.postconf("-M", "-e", f"{listener}/inet = {listener} inet n - n - - smtpd")
        # Daemons run without chroot: the chroot would need copies of /etc files.
        self.postconf("-F", "-e", "*/*/chroot = n")
        settings = self.root / "mailflow.toml"
        settings.write_text(f'[smtp]\nhost = "127.0.0.1"\nport = {self.lmtp_port}\nlmtp = true\n')
        assert mailflow(["postfix", "--output", str(self.maps), "--config", str(settings)]) == 0
        apply = f"sed -e '/^#/d' -e '/^$/d' {self.maps}/main.cf | xargs -d '\\n' postconf -e"
        apply = apply.replace("postconf -e", f"{self.programs}/postconf -c {self.config} -e")
        subprocess.run(apply, shell=True, check=True)

    def postconf(self, *arguments: str) -> None:
        subprocess.run([self.programs / "postconf", "-c", self.config, *arguments], check=True)

    def start(self) -> None:
        subprocess.run([self.programs / "postfix", "-c", self.config, "start"], check=True)
        wait_until(self._listening, 10, f"Postfix on port {self.port}")

    def _listening(self) -> bool:
        try:
            with smtplib.SMTP("127.0.0.1", self.port, timeout=5):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        subprocess.run([self.programs / "postfix", "-c", self.config, "stop"], check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def queue(self) -> list[dict[str, object]]:
        """The messages Postfix holds, bounces included (postqueue -j)."""
        listing = subprocess.run(
            [self.programs / "postqueue", "-c", self.config, "-j"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        return [json.loads(line) for line in listing.splitlines()]

    def flush(self) -> None:
        subprocess.run([self.programs / "postqueue", "-c", self.config, "-f"], check=True)

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def postfix_running(
    lmtp_port: int, mynetworks: str = "127.0.0.2/32", extra: str = ""
) -> Iterator[PostfixServer]:
    """A started private Postfix handing mailflow's addresses to
    ``lmtp_port``, or the test skipped (failed, when required) where
    Postfix cannot run."""
    binary, why = postfix_binary(), ""
    if binary is None:
        why = "postfix is not installed (apt-get install postfix)"
    elif os.geteuid() != 0:
        why = "a private Postfix starts its master as root"
    if binary is None or why:
        if os.environ.get("MAILFLOW_TEST_REQUIRE_POSTFIX") == "1":
            pytest.fail(why)
        pytest.skip(why)
    server = PostfixServer(binary, lmtp_port, mynetworks, extra)
    try:
        server.write_config()
        server.start()
        yield server
    finally:
        server.stop()
