"""A private Dovecot for the IMAP tests: its own config, passwd-file user,
maildir and free loopback port, started and stopped by the test.

Debian's ``dovecot-imapd`` provides the binaries (`.ci/run` installs it).
The mail folders live in a directory of their own, not under pytest's
tmp_path, because the mail processes run as the ``dovecot`` user when the
tests run as root, and pytest's folders are private to root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

USER, PASSWORD = "mailflow@example.org", "imap-secret"


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
    )


class Dovecot:
    def __init__(self, binary: str, port: int, capabilities: str = "") -> None:
        self.binary = binary
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="mailflow-dovecot-"))
        self.root.chmod(0o755)
        self.config = self.root / "dovecot.conf"
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config(capabilities)

    def _write_config(self, capabilities: str) -> None:
        mail = self.root / "mail"
        mail.mkdir()
        if os.geteuid() == 0:
            # Dovecot refuses to open mail as root; its own user will do.
            account = pwd.getpwnam("dovecot")
            os.chown(mail, account.pw_uid, account.pw_gid)
            users = ""
        else:
            account = pwd.getpwuid(os.geteuid())
            name = account.pw_name
            users = f"default_login_user = {name}\ndefault_internal_user = {name}\n"
        (self.root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
        self.config.write_text(
            f"""
base_dir = {self.root}/run
state_dir = {self.root}/state
log_path = {self.root}/dovecot.log
instance_name = mailflow-test-{self.port}
{users}protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
# Dovecot can miss a message delivered in the instant an IDLE begins (seen
# here: the APPEND of another session racing the IDLE's start) and then
# tells only at its next check, 30 s by default; the tests wait less.
mailbox_idle_check_interval = 1 secs
mail_location = maildir:{mail}/%n
{"imap_capability = " + capabilities if capabilities else ""}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.root}/passwd
}}
userdb {{
  driver = static
  args = uid={account.pw_uid} gid={account.pw_gid} home={mail}/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
"""
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [self.binary, "-F", "-c", str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # it logs to log_path
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dovecot did not start:\n{self.log()}")
            try:
                self.connect().logout()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"dovecot is not answering on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def kick(self) -> None:
        """Drop every connection of the user, as a server restart or a
        network fault would, while the server stays up."""
        subprocess.run(
            ["doveadm", "-c", str(self.config), "kick", USER],
            check=False,
            capture_output=True,
        )

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text() if path.exists() else ""

    def connect(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", self.port, ssl=False, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, message: EmailMessage | bytes, folder: str = "INBOX") -> None:
        raw = message if isinstance(message, bytes) else message.as_bytes()
        with self.session() as client:
            client.append(folder, raw)

    def uids(self, folder: str) -> list[int]:
        with self.session() as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            return [int(uid) for uid in client.search(["NOT", "DELETED"])]

    def flags(self, folder: str) -> list[tuple[bytes, ...]]:
        with self.session() as client:
            client.select_folder(folder, readonly=True)
            fetched = client.fetch(client.search("ALL"), ["FLAGS"])
            return [data[b"FLAGS"] for data in fetched.values()]

    @contextmanager
    def session(self) -> Iterator[IMAPClient]:
        client = self.connect()
        try:
            yield client
        finally:
            client.logout()


class MailboxClient:
    """Stands in for the tests' SMTP ``Client``: "sending" delivers the
    message into the mailbox, as the organisation's mail server would, and
    returns once mailflow has taken it out of the inbox (then it is in the
    spool, as after an SMTP 250)."""

    def __init__(self, server: Dovecot, timeout: float = 15) -> None:
        self.server = server
        self.timeout = timeout

    def send(self, message: EmailMessage, *_: object, **__: object) -> dict[str, Any]:
        self.server.append(with_delivery_headers(message))
        deadline = time.monotonic() + self.timeout
        while self.server.uids("INBOX"):
            if time.monotonic() > deadline:
                raise AssertionError("mailflow did not take the message out of INBOX")
            time.sleep(0.05)
        return {}


def with_delivery_headers(message: EmailMessage) -> bytes:
    """What a delivering server adds on top: Return-Path and Delivered-To."""
    sender = message["From"].addresses[0].addr_spec
    recipient = message["To"].addresses[0].addr_spec
    head = f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()
    return head + message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
