"""Action tokens: the secret in ``actions+TOKEN@``.

A token is 160 random bits, written in lower-case base32 so that it
survives mail systems that fold the case of local parts. Only an HMAC of it
(keyed by ``[security].token_key_file``) is stored: a leaked database gives
nothing that can be replayed. A token is bound to an action, a person, a
case and the case's state when it was issued; it expires, and it is used
up by the one transaction that acts on it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from pathlib import Path

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mailflow.clock import Clock
from mailflow.errors import ConfigError
from mailflow.store.models import Case, Participant, Token

TOKEN_BYTES = 20


def load_or_create_key(path: Path) -> bytes:
    """The HMAC key, created (mode 0600) on first use. Written to a
    temporary file and linked into place, so a process starting at the same
    moment never reads a half-written key."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            file.write(secrets.token_hex(32) + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass  # another process was first: use its key
        finally:
            temporary.unlink()
    key = bytes.fromhex(path.read_text().strip())
    if len(key) != 32:
        raise ConfigError(f"{path}: [security] token_key_file must hold 64 hex digits")
    return key


class Refusal(StrEnum):
    UNKNOWN = "unknown"
    USED = "used"
    EXPIRED = "expired"
    STALE = "stale"
    WRONG_SENDER = "wrong_sender"
    NOT_REVIEWER = "not_reviewer"  # a review token of someone no longer named a reviewer
    UNAUTHENTICATED = "unauthenticated"  # the front MTA says DMARC failed


@dataclass(frozen=True)
class Verdict:
    token: Token | None
    refusal: Refusal | None

    @property
    def ok(self) -> bool:
        return self.refusal is None


class Tokens:
    def __init__(self, key: bytes, clock: Clock, valid_for: timedelta, token_only: bool) -> None:
        self._key = key
        self._clock = clock
        self._valid_for = valid_for
        self._token_only = token_only

    def _digest(self, secret: str) -> str:
        return hmac.new(self._key, secret.lower().encode(), hashlib.sha256).hexdigest()

    def issue(
        self,
        session: Session,
        action: str,
        person: str,
        *,
        case: Case | None = None,
        participant: Participant | None = None,
        stage: str | None = None,
    ) -> str:
        """A new secret. ``stage`` defaults to the case's state; "" binds the
        token to the case but not to a stage (the author's reply address)."""
        secret = base64.b32encode(secrets.token_bytes(TOKEN_BYTES)).decode().lower()
        now = self._clock.now()
        if case is not None and case.id is None:
            session.flush()  # a case not written yet (Engine.open_case): its id first
        session.add(
            Token(
                digest=self._digest(secret),
                action=action,
                person=person.lower(),
                case_id=case.id if case else None,
                participant_id=participant.id if participant else None,
                stage=stage if stage is not None else (case.state if case else ""),
                issued_at=now,
                expires_at=now + self._valid_for,
            )
        )
        return secret

    def verify(self, session: Session, secret: str, sender: str) -> Verdict:
        """Check without using up: a refused attempt never spends the token
        of its rightful owner."""
        token = session.scalar(select(Token).where(Token.digest == self._digest(secret)))
        if token is None:
            return Verdict(None, Refusal.UNKNOWN)
        if token.used_at is not None:
            return Verdict(token, Refusal.USED)
        if token.expires_at <= self._clock.now():
            return Verdict(token, Refusal.EXPIRED)
        if token.case_id is not None and token.stage:
            case = session.get(Case, token.case_id)
            if case is None or case.state != token.stage:
                return Verdict(token, Refusal.STALE)
        if not self._token_only and sender.lower() != token.person:
            return Verdict(token, Refusal.WRONG_SENDER)
        return Verdict(token, None)

    def follow(self, session: Session, secret: str, action: str) -> Token | None:
        """A token carried by a web link (a document to download): the
        secret alone is the proof, and following it spends nothing, so a
        reviewer may open it again; it ends as the token expires or its
        case leaves the stage. None for anything else, whatever the
        reason, so that a link tells a stranger nothing."""
        token = session.scalar(select(Token).where(Token.digest == self._digest(secret)))
        if token is None or token.action != action or token.used_at is not None:
            return None
        if token.expires_at <= self._clock.now() or token.case_id is None:
            return None
        case = session.get(Case, token.case_id)
        if case is None or case.state != token.stage:
            return None
        return token

    def use(self, session: Session, token: Token) -> bool:
        """Spend the token; False if a concurrent transaction spent it first."""
        result = session.execute(
            update(Token)
            .where(Token.id == token.id, Token.used_at.is_(None))
            .values(used_at=self._clock.now())
            .execution_options(synchronize_session=False)
        )
        return bool(getattr(result, "rowcount", 0))
