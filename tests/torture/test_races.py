"""Racing decisions (issue 11): the administrator's Approve, Request changes
and Reject clicks for one case, processed at the same instant by three
workers, move the case exactly once; the two late clicks change nothing and
their sender is told which decision came first. Repeated over several
cases, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from conftest import Mailbox, body_text, headline
from flows import ADMIN, ANA, links
from mails import message, reply, submission
from sqlalchemy import select

from mailflow.app import App
from mailflow.spool import Envelope, SpoolEntry
from mailflow.store.models import Case, CaseEvent

pytestmark = pytest.mark.torture

CASES = 5
LABELS = ("Approve", "Request changes", "Reject")


def deliver(app: App, mail: bytes, sender: str, to: str) -> str:
    return app.spool.put(Envelope(sender, (to,), datetime.now(UTC), "smtp"), mail)


def settle(app: App) -> None:
    """Process the spool to the end (a loser of a race is retried) and send."""
    while app.runner.run_pending():
        pass
    app.drain_outbox()


def review_email(app: App, outbox: Mailbox, number: int) -> object:
    mail = submission(subject=f"Practice number {number}")
    deliver(app, bytes(mail), ANA, "submit@mailflow.localhost")
    settle(app)
    if number == 0:  # the first submission asks Ana to confirm her address
        confirm = outbox.to(ANA)[-1]
        deliver(app, bytes(reply(confirm, ANA)), ANA, str(confirm["Reply-To"]))
        settle(app)
    return outbox.to(ADMIN)[-1]


def clicks(review: object) -> list[tuple[str, bytes]]:
    found = []
    for label in LABELS:
        url = urlsplit(links(review)[label])  # type: ignore[arg-type]
        subject = parse_qs(url.query)["subject"][0]
        found.append((unquote(url.path), bytes(message(ADMIN, unquote(url.path), subject, ""))))
    return found


def at_once(app: App, barrier: threading.Barrier, entry: SpoolEntry) -> None:
    barrier.wait()
    app.runner.process(entry)


def test_three_decisions_at_once_move_the_case_once(app: App, outbox: Mailbox) -> None:
    for number in range(CASES):
        review = review_email(app, outbox, number)
        stems = [deliver(app, raw, ADMIN, to) for to, raw in clicks(review)]
        entries = [app.spool.claim_by_id(stem) for stem in stems]
        assert all(entries)
        barrier = threading.Barrier(len(entries))

        threads = [threading.Thread(target=at_once, args=(app, barrier, e)) for e in entries]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        settle(app)

        with app.database.transaction() as session:
            case = session.scalars(select(Case).order_by(Case.id.desc())).first()
            assert case is not None
            moves = session.scalars(
                select(CaseEvent).where(
                    CaseEvent.case_id == case.id, CaseEvent.from_state == "admin_review"
                )
            ).all()
            assert len(moves) == 1, [m.event for m in moves]
            winner = moves[0].to_state
            assert case.state == winner
            late = session.scalars(
                select(CaseEvent.note).where(
                    CaseEvent.case_id == case.id, CaseEvent.to_state.is_(None)
                )
            ).all()
        print(f"case {number}: {winner} won; {len(late)} late clicks refused: {late}")
        assert len(late) == len(LABELS) - 1
    # The administrator is told once an hour, not once per refused click.
    explained = [m for m in outbox.to(ADMIN) if "changed nothing" in headline(m)]
    assert len(explained) == 1
    assert "already" in body_text(explained[0])
