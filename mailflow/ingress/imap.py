"""The IMAP ingress: mailflow reading an existing mailbox (SPEC sections 2, 9).

For each message in ``[imap].folder``: fetch it, put it in the spool
(fsynced, exactly as SMTP does before its 250), and only then move it to
``[imap].processed_folder``. So "moved out of the inbox" means "on disk".
A crash or a dropped connection between the spool write and the move
leaves the message in the folder; it is spooled again next time, and the
runner's delivery key makes the second copy a duplicate.

The folder itself is the queue: no UID is remembered between connections,
so a UIDVALIDITY change (a mailbox restored or recreated) can neither hide
a message nor replay one; UIDs are used only within one SELECT. IDLE
wakes the ingress when the server has it, polling otherwise, and any
network error means reconnecting with a growing pause. No database,
parsing or rendering happens here.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parseaddr

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailflow.config import ImapSettings
from mailflow.errors import SpoolError
from mailflow.header_text import unfolded
from mailflow.spool import Envelope, Spool

log = logging.getLogger(__name__)

SOCKET_TIMEOUT_SECONDS = 60.0
POLL_SECONDS = 60.0  # servers without IDLE
# Servers drop an IDLE after 30 minutes (RFC 2177) and NAT boxes sooner,
# and a server may miss a message that arrives as an IDLE begins: a fresh
# IDLE (and a look at the folder) every two minutes bounds both.
IDLE_SECONDS = 120.0
IDLE_CHECK_SECONDS = 0.2  # how soon a stop is noticed during an IDLE
FIRST_PAUSE_SECONDS = 1.0
LONGEST_PAUSE_SECONDS = 300.0

# Anything that means "the connection or the server is gone, or it said NO",
# as opposed to a bug: reconnecting (and logging what it said) is the answer.
# Timeouts are OSErrors; imapclient's errors are imaplib's.
NETWORK_ERRORS = (OSError, imaplib.IMAP4.error)


def mailbox_name(configured: str, prefix: str, delimiter: str | None) -> str:
    """The server's name for a folder written with '/' in config: the
    hierarchy delimiter put in, and the personal namespace's prefix
    (``INBOX.`` on some servers) in front unless it is already there."""
    name = configured.replace("/", delimiter) if delimiter else configured
    if prefix and not name.startswith(prefix) and name.upper() != "INBOX":
        name = prefix + name
    return name


def return_path(raw: bytes) -> str:
    """The envelope sender as the delivering server recorded it, or ""."""
    headers = BytesHeaderParser(policy=compat32).parsebytes(raw)
    # The raw value: the parser's own reading turns an SMTPUTF8 sender's
    # address (RFC 6531) into U+FFFD.
    found = (v for n, v in headers.raw_items() if n.lower() == "return-path")
    value = unfolded(next(found, "")).strip()
    return "" if value in ("", "<>") else parseaddr(value)[1]


class Pause:
    """Doubling pauses between reconnections, back to the first on success."""

    def __init__(self, first: float = FIRST_PAUSE_SECONDS) -> None:
        self.first = first
        self.current = first

    def next(self) -> float:
        pause, self.current = self.current, min(self.current * 2, LONGEST_PAUSE_SECONDS)
        return pause

    def reset(self) -> None:
        self.current = self.first


class ImapIngress:
    """The mailbox reader that `mailflow run` starts when ``[imap]`` is set."""

    def __init__(
        self,
        settings: ImapSettings,
        password: str,
        spool: Spool,
        on_spooled: Callable[[], None],
        max_message_bytes: int,
        *,
        poll_seconds: float = POLL_SECONDS,
        idle_seconds: float = IDLE_SECONDS,
        first_pause: float = FIRST_PAUSE_SECONDS,
    ) -> None:
        self.settings = settings
        self._password = password
        self._spool = spool
        self._on_spooled = on_spooled
        self._max_message_bytes = max_message_bytes
        self._poll_seconds = poll_seconds
        self._idle_seconds = idle_seconds
        self._pause = Pause(first_pause)
        # (UIDVALIDITY, UID) of messages spooled but not yet moved, so that a
        # failed move is retried without spooling the message again, and of
        # messages too big to take, so that they are reported once.
        self._spooled: set[tuple[int, int]] = set()
        self._too_big: set[tuple[int, int]] = set()
        self.connected = threading.Event()

    def run(self, stopping: threading.Event) -> None:
        """Read the mailbox until ``stopping`` is set (a thread's body)."""
        while not stopping.is_set():
            try:
                client = self.connect()
            except LoginError as exc:
                # Wrong credentials, or a server that cannot check them just
                # now (RFC 5530 UNAVAILABLE, an overloaded auth process): the
                # same growing pause either way, so a passing fault costs
                # seconds and a wrong password is not tried every second.
                pause = self._pause.next()
                log.error(
                    "IMAP login as %s at %s refused (%s); check [imap].username and $%s; "
                    "trying again in %.0f s",
                    self.settings.username,
                    self.settings.host,
                    exc,
                    self.settings.password_env,
                    pause,
                )
                stopping.wait(pause)
                continue
            except NETWORK_ERRORS as exc:
                self._pause_after(exc, stopping)
                continue
            try:
                self._pause.reset()
                self.connected.set()
                self._serve(client, stopping)
            except NETWORK_ERRORS as exc:
                self._pause_after(exc, stopping)
            except SpoolError as exc:
                log.error("IMAP: could not spool a message (%s); will try again", exc)
                stopping.wait(self._pause.next())
            except Exception:
                # A server's answer no one foresaw must not end the ingress
                # for good: whatever it was is logged, and a new connection
                # looks at the folder afresh after a pause.
                log.exception("IMAP: unexpected failure; reconnecting")
                stopping.wait(self._pause.next())
            finally:
                self.connected.clear()
                _close(client)

    def connect(self) -> IMAPClient:
        settings = self.settings
        context = ssl.create_default_context()
        client = IMAPClient(
            settings.host,
            settings.port,
            ssl=settings.ssl,
            ssl_context=context,
            timeout=SOCKET_TIMEOUT_SECONDS,
        )
        try:
            if settings.starttls:
                client.starttls(context)
            client.login(settings.username, self._password)
        except BaseException:
            _close(client)
            raise
        log.info("IMAP: logged in as %s at %s", settings.username, settings.host)
        return client

    def take_waiting(self, client: IMAPClient) -> int:
        """One pass over the folder: spool and move every message in it.
        Returns how many were moved."""
        status = client.select_folder(self.settings.folder)
        validity = int(status[b"UIDVALIDITY"])
        self._forget_other_validities(validity)
        target = self._processed_folder(client)
        moved = 0
        for uid in client.search(["NOT", "DELETED"]):
            key = (validity, int(uid))
            if key in self._too_big:
                continue
            if key not in self._spooled:
                if not self._spool_one(client, key):
                    continue
                self._spooled.add(key)
                self._on_spooled()
            self._move(client, uid, target)
            self._spooled.discard(key)
            moved += 1
        return moved

    def _forget_other_validities(self, validity: int) -> None:
        """UIDs of an earlier UIDVALIDITY name nothing any more (the folder
        was recreated or restored): what they remembered is dropped, and
        every message now in the folder is taken as if new; the runner's
        delivery key recognises those already handled."""
        stale = {key for key in self._spooled | self._too_big if key[0] != validity}
        if stale:
            log.info("IMAP: UIDVALIDITY of %s changed; looking at it afresh", self.settings.folder)
            self._spooled -= stale
            self._too_big -= stale

    def _serve(self, client: IMAPClient, stopping: threading.Event) -> None:
        idle = b"IDLE" in client.capabilities()
        while not stopping.is_set():
            moved = self.take_waiting(client)
            log.debug("IMAP: %s looked at, %d moved", self.settings.folder, moved)
            if _announced_during_pass(client):
                continue
            if idle:
                self._idle(client, stopping)
            else:
                stopping.wait(self._poll_seconds)
                client.noop()

    def _idle(self, client: IMAPClient, stopping: threading.Event) -> None:
        """Wait until the server tells of a change, stopping, or time for a
        fresh IDLE. Any untagged response is reason enough to look again."""
        client.idle()
        log.debug("IMAP: idling")
        try:
            # Mail that arrived since the pass is announced right behind
            # IDLE's continuation line; read together with it (a loaded
            # machine reads late), it waits in imaplib's buffer, which
            # idle_check's poll of the socket cannot see, and the server
            # does not announce it again.
            if waiting := _read_ahead(client):
                log.debug("IMAP: woken by %r, read with IDLE's continuation", waiting)
                return
            deadline = time.monotonic() + self._idle_seconds
            while not stopping.is_set() and time.monotonic() < deadline:
                responses = client.idle_check(timeout=IDLE_CHECK_SECONDS)
                if responses:
                    log.debug("IMAP: woken by %s", responses)
                    return
        finally:
            client.idle_done()

    def _spool_one(self, client: IMAPClient, key: tuple[int, int]) -> bool:
        uid = key[1]
        size = int(client.fetch([uid], ["RFC822.SIZE"])[uid][b"RFC822.SIZE"])
        if size > self._max_message_bytes:
            # The sender cannot be refused any more: the message stays in the
            # folder, flagged for the administrator, and is never taken.
            self._too_big.add(key)
            client.add_flags([uid], [b"\\Flagged"])
            log.error(
                "IMAP: message UID %d in %s is %d bytes, over [limits].max_message_bytes "
                "(%d); left there, flagged, for the administrator",
                uid,
                self.settings.folder,
                size,
                self._max_message_bytes,
            )
            return False
        raw = bytes(client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"])
        envelope = Envelope(
            sender=return_path(raw),
            recipients=(),
            received_at=datetime.now(UTC),
            source="imap",
        )
        self._spool.put(envelope, raw)
        return True

    def _processed_folder(self, client: IMAPClient) -> str:
        if client.has_capability("NAMESPACE"):
            prefix, delimiter = client.namespace().personal[0]
        else:
            prefix, delimiter = "", client.list_folders("", "")[0][1]
        name = mailbox_name(
            self.settings.processed_folder,
            _text(prefix),
            _text(delimiter) if delimiter else None,
        )
        if not client.folder_exists(name):
            try:
                client.create_folder(name)
            except IMAPClientError:
                # Created by someone else meanwhile is fine; anything else is not.
                if not client.folder_exists(name):
                    raise
            log.info("IMAP: created folder %s", name)
        return name

    def _move(self, client: IMAPClient, uid: int, target: str) -> None:
        if client.has_capability("MOVE"):
            client.move([uid], target)
            return
        client.copy([uid], target)
        client.add_flags([uid], [b"\\Deleted"])
        if client.has_capability("UIDPLUS"):
            client.uid_expunge([uid])
        else:
            client.expunge()

    def _pause_after(self, error: BaseException, stopping: threading.Event) -> None:
        pause = self._pause.next()
        log.warning(
            "IMAP %s:%d: %s; reconnecting in %.0f s",
            self.settings.host,
            self.settings.port,
            error or type(error).__name__,
            pause,
        )
        stopping.wait(pause)


def _announced_during_pass(client: IMAPClient) -> bool:
    """Whether the server announced more mail (EXISTS) after the pass's
    SELECT. Dovecot, for one, answers a SEARCH from the mailbox as it was
    when the command began and announces a message that arrived meanwhile
    at the end of that answer; IDLE does not announce it again."""
    # imapclient keeps no public record of unsolicited responses; imaplib
    # does, and its SELECT starts the record afresh.
    return len(client._imap.untagged_responses.get("EXISTS", [])) > 1


def _read_ahead(client: IMAPClient) -> bytes:
    """What imaplib has taken off the socket but not parsed yet: the lines
    that came in the same read as the last one it parsed."""
    sock = client.socket()
    timeout = sock.gettimeout()
    # With nothing buffered, peek reads the socket: that must not wait.
    sock.setblocking(False)
    try:
        return bytes(client._imap.file.peek())
    except ssl.SSLWantReadError:  # TLS's "nothing to read yet"
        return b""
    finally:
        sock.settimeout(timeout)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _close(client: IMAPClient) -> None:
    try:
        client.logout()
    except Exception:  # the connection is already gone: just drop the socket
        with suppress(OSError):
            client.shutdown()
