"""The durable spool and the action tokens, on their own."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mailflow.app import App
from mailflow.clock import FixedClock
from mailflow.runner import Result
from mailflow.spool import Envelope, Spool
from mailflow.store.models import Participant
from mailflow.tokens import Refusal, Tokens, load_or_create_key

ENVELOPE = Envelope(
    "ana@example.org", ("submit@mailflow.localhost",), datetime(2026, 11, 28, tzinfo=UTC), "smtp"
)


def test_spool_keeps_envelope_and_bytes_together(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_tries=3)
    stem = spool.put(ENVELOPE, b"raw\r\nbytes\n")
    entry = spool.claim_by_id(stem)
    assert entry is not None and entry.tries == 1
    assert entry.read() == (ENVELOPE, b"raw\r\nbytes\n")
    assert spool.claim_by_id(stem) is None  # claimed once only


def test_a_crashed_claim_goes_back_and_counts_its_tries(tmp_path: Path) -> None:
    """After kill -9, claimed files return to new/; the try count survives,
    so a message that kills the worker is shunted in the end."""
    spool = Spool(tmp_path, max_tries=3)
    stem = spool.put(ENVELOPE, b"poison")
    (tmp_path / "tmp" / "half-written").write_bytes(b"never acknowledged")
    for expected in (1, 2, 3):
        entry = spool.claim_by_id(stem)
        assert entry is not None and entry.tries == expected
        os.close(entry.lock)  # what the kernel does when the claimer dies
        assert spool.recover() == 1
    assert list((tmp_path / "tmp").iterdir()) == []
    entry = spool.claim_by_id(stem)
    assert entry is not None and entry.tries == 4 > spool.max_tries
    spool.shunt_entry(entry)
    assert spool.shunted() == [stem] and spool.pending() == []
    spool.requeue(stem)
    assert spool.pending() == [f"{stem}.t0"]


def test_recovery_leaves_the_claims_of_a_live_worker_alone(tmp_path: Path) -> None:
    """While the host runs, the claims of a worker process that died go
    back to new/, and a live worker's claim stays with it."""
    spool = Spool(tmp_path, max_tries=3)
    live = spool.claim_by_id(spool.put(ENVELOPE, b"in hand"))
    dead = spool.claim_by_id(spool.put(ENVELOPE, b"orphaned"))
    assert live is not None and dead is not None
    os.close(dead.lock)
    assert spool.recover_claims_of_the_dead() == 1
    assert spool.pending() == [f"{dead.stem}.t1"]
    spool.ack(live)
    assert spool.depths() == {"waiting": 1, "processing": 0, "shunted": 0}


def test_database_outage_does_not_count_as_a_try(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_tries=3)
    stem = spool.put(ENVELOPE, b"fine")
    entry = spool.claim_by_id(stem)
    assert entry is not None
    spool.release(entry, count_try=False)
    assert spool.pending() == [f"{stem}.t0"]


def test_a_spool_file_damaged_on_disk_is_shunted_not_stuck(app: App) -> None:
    """A file that no longer reads as envelope and message is kept in
    shunt/ for the administrator, and its claim lets go of the file."""
    stem = app.spool.put(ENVELOPE, b"fine")
    (app.spool.new / f"{stem}.t0").write_bytes(b"{not json\nbytes")
    assert app.runner.run_pending() == [Result.SHUNTED]
    assert app.spool.shunted() == [stem]
    assert app.spool.depths() == {"waiting": 0, "processing": 0, "shunted": 1}
    assert app.spool.recover_claims_of_the_dead() == 0


def test_token_key_is_created_private(tmp_path: Path) -> None:
    path = tmp_path / "var" / "token.key"
    key = load_or_create_key(path)
    assert len(key) == 32 and load_or_create_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_tokens_are_single_use_bound_and_expiring(app: App) -> None:
    """Checked on both databases: a wrong sender, an expired or used token
    is refused, and a refusal does not spend the token."""
    clock = FixedClock(datetime(2026, 11, 28, 12, tzinfo=UTC))
    tokens = Tokens(b"k" * 32, clock, timedelta(days=30), token_only=False)
    with app.database.transaction() as session:
        ana = Participant(email="ana@example.org", created_at=clock.now())
        session.add(ana)
        session.flush()
        secret = tokens.issue(session, "confirm", "Ana@Example.org", participant=ana)
    assert len(secret) == 32  # 160 bits in base32
    with app.database.transaction() as session:
        assert tokens.verify(session, secret, "eve@example.org").refusal is Refusal.WRONG_SENDER
        assert tokens.verify(session, "x" * 32, "ana@example.org").refusal is Refusal.UNKNOWN
        verdict = tokens.verify(session, secret.upper(), "ana@example.org")
        assert verdict.ok and verdict.token is not None
        assert tokens.use(session, verdict.token)
        assert not tokens.use(session, verdict.token)
    with app.database.transaction() as session:
        assert tokens.verify(session, secret, "ana@example.org").refusal is Refusal.USED
        fresh = tokens.issue(session, "confirm", "ana@example.org")
    clock.advance(timedelta(days=31))
    with app.database.transaction() as session:
        assert tokens.verify(session, fresh, "ana@example.org").refusal is Refusal.EXPIRED


def test_a_token_is_useless_once_its_case_has_left_the_stage(app: App) -> None:
    """A token issued while the case was in admin_review is stale after it moved."""
    from mailflow.store.models import Case

    clock = FixedClock(datetime(2026, 11, 28, 12, tzinfo=UTC))
    tokens = Tokens(b"k" * 32, clock, timedelta(days=30), token_only=True)
    with app.database.transaction() as session:
        ana = Participant(email="ana@example.org", created_at=clock.now())
        session.add(ana)
        session.flush()
        case = Case(
            public_id="BP-2026-0001",
            state="admin_review",
            state_since=clock.now(),
            author_id=ana.id,
            created_at=clock.now(),
        )
        session.add(case)
        session.flush()
        secret = tokens.issue(session, "approve", "admin@mailflow.localhost", case=case)
        assert tokens.verify(session, secret, "anyone@example.org").ok  # token_only
        case.state = "focal_review"
        session.flush()
        assert tokens.verify(session, secret, "admin@mailflow.localhost").refusal is Refusal.STALE
