"""A private Dovecot for the IMAP tests: its own config, passwd-file users,
maildirs and free loopback port. One server is shared by the tests of a
worker (stopping one takes Dovecot a second); each test gets a user, so a
mailbox, of its own, and a test that stops the server starts it again.

Debian's ``dovecot-imapd`` provides the binaries (`.ci/run` installs it).
The mail folders live in a directory of their own, not under pytest's
tmp_path, because the mail processes run as the ``dovecot`` user when the
tests run as root, and pytest's folders are private to root.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from imapclient import IMAPClient

PASSWORD = "imap-secret"
USERS = 200  # more than the IMAP tests of a run
INGRESS_LOGGER = "mailflow.ingress.imap"


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or (
        "/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None
    )


class DovecotServer:
    def __init__(self, binary: str, port: int, capabilities: str = "") -> None:
        self.binary = binary
        self.port = port
        self.root = Path(tempfile.mkdtemp(prefix="mailflow-dovecot-"))
        self.root.chmod(0o755)
        self.config = self.root / "dovecot.conf"
        self.process: subprocess.Popen[bytes] | None = None
        self._users = iter(self._all_users())
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
        # Users for the tests to come, written before the start: Dovecot
        # looks at a changed passwd-file at most once a second.
        (self.root / "passwd").write_text(
            "".join(f"{user}:{{PLAIN}}{PASSWORD}::::::\n" for user in self._all_users())
        )
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
# An IDLE hears of new mail through inotify, and where that fails (its
# limits reached, a filesystem without it) only at this check, 30 s by
# default; the tests wait less. (A message appended as an IDLE
# begins is not missed: Dovecot announces it right behind the continuation
# line, which mailflow must read; test_imap.py tests that.)
mailbox_idle_check_interval = 1 secs
# No "* OK Still here" during IDLE: it comes 0 to 2 minutes in (by the
# clock and the user's name), so it would by chance wake an IDLE that a
# lost announcement left asleep, and hide the loss.
imap_idle_notify_interval = 0
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

    @staticmethod
    def _all_users() -> list[str]:
        return [f"mailflow{number}@example.org" for number in range(USERS)]

    def account(self) -> Dovecot:
        """A user not used before, with an empty mailbox."""
        user = next(self._users, None)
        if user is None:
            raise RuntimeError(f"all {USERS} users of this Dovecot are taken; raise USERS")
        return Dovecot(self, user)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

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
                with socket.create_connection(("127.0.0.1", self.port), 1) as probe:
                    if probe.makefile("rb").readline().startswith(b"* OK"):
                        return  # the greeting: logins are served
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"dovecot is not answering on 127.0.0.1:{self.port}")

    def stop(self) -> None:
        """Stop the server and drop every connection, as a restart does.
        Dovecot's master exits within a second, but a session process left
        without it serves its client for ten more seconds: those are ended
        too (SIGTERM: each says BYE)."""
        if self.process is not None and self.process.poll() is None:
            pid = self.process.pid
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            self.process.terminate()
            self.process.wait(timeout=15)
            for child in children:
                with suppress(ProcessLookupError):
                    os.kill(int(child), signal.SIGTERM)
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text() if path.exists() else ""


class Dovecot:
    """One user's mailbox on a private Dovecot, as the tests use it."""

    def __init__(self, server: DovecotServer, user: str) -> None:
        self.server = server
        self.user = user
        self.port = server.port

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def log(self) -> str:
        return self.server.log()

    def user_log(self) -> str:
        """The lines of the server's log about this user's sessions."""
        return "".join(line for line in self.server.log().splitlines(True) if self.user in line)

    def kick(self) -> None:
        """Drop every connection of the user, as a server restart or a
        network fault would, while the server stays up."""
        subprocess.run(
            ["doveadm", "-c", str(self.server.config), "kick", self.user],
            check=False,
            capture_output=True,
        )

    def connect(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", self.port, ssl=False, timeout=10)
        client.login(self.user, PASSWORD)
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
        self.deliver(with_delivery_headers(message))
        return {}

    def deliver(self, raw: bytes) -> None:
        """The bytes into the inbox as they are (delivery headers and all);
        returns once mailflow has taken them out."""
        appended_at = datetime.now()
        self.server.append(raw)
        deadline = time.monotonic() + self.timeout
        # One session that asks again, not a login per look: NOOP makes
        # Dovecot report the other session's expunges.
        with self.server.session() as client:
            client.select_folder("INBOX", readonly=True)
            while waiting := client.search(["NOT", "DELETED"]):
                if time.monotonic() > deadline:
                    raise AssertionError(self._not_taken(waiting, appended_at))
                time.sleep(0.05)
                client.noop()

    def _not_taken(self, waiting: list[int], appended_at: datetime) -> str:
        """Why a wait failed, as far as both sides of the connection tell."""
        return (
            f"mailflow did not take the message out of INBOX in {self.timeout:.0f} s "
            f"(appended at {appended_at:%H:%M:%S.%f}; UIDs still there: {waiting})\n"
            f"-- mailflow's IMAP ingress log, last {IngressLog.SHOWN} records:\n"
            f"{INGRESS_LOG.recent()}\n"
            f"-- Dovecot's log for {self.server.user}:\n{self.server.user_log()}"
        )


class IngressLog(logging.Handler):
    """The IMAP ingress's recent records, at every level, so that a test
    that waited in vain can show when the ingress last looked at the folder,
    went idle, woke or reconnected. One per process: a worker runs one test
    at a time, so the last records are the failing test's."""

    SHOWN = 60

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: deque[logging.LogRecord] = deque(maxlen=self.SHOWN)
        self.setFormatter(
            logging.Formatter(
                "%(asctime)s.%(msecs)03d %(threadName)s %(levelname)s %(message)s", "%H:%M:%S"
            )
        )

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def recent(self) -> str:
        return "".join(self.format(record) + "\n" for record in list(self.records))


def _listening_to_the_ingress() -> IngressLog:
    handler = IngressLog()
    logger = logging.getLogger(INGRESS_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    return handler


# From the import on, so that the first test's ingress is heard from its login.
INGRESS_LOG = _listening_to_the_ingress()


def with_delivery_headers(message: EmailMessage) -> bytes:
    """What a delivering server adds on top: Return-Path and Delivered-To."""
    sender = message["From"].addresses[0].addr_spec
    recipient = message["To"].addresses[0].addr_spec
    return delivery_headers(sender, recipient) + message.as_bytes(
        policy=message.policy.clone(linesep="\r\n")
    )


def delivery_headers(sender: str, recipient: str) -> bytes:
    """Return-Path and Delivered-To as a delivering server writes them: raw
    UTF-8 for an SMTPUTF8 address (RFC 6532)."""
    return f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode()
