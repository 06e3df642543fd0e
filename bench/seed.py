"""Fill a database with published cases, quickly and deterministically,
through mailflow's own publishing code (so the archive's places are the
real ones). For the archive benchmark and for the tests that need an
archive of thousands."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session

from mailflow.app import App
from mailflow.store.files import files_of
from mailflow.store.models import Case, Document, InboundMessage, Participant, Subscriber
from mailflow.vocab import AREAS, Kind
from mailflow.workflow import publishing
from mailflow.workflow.states import State

ECONOMIES = ("CL", "VN", "PE", "MX", "TH", "ID", "AU", "JP", "PH", "MY")
WORDS = [
    "micro",
    "finance",
    "training",
    "women",
    "export",
    "market",
    "mentoring",
    "credit",
    "cooperative",
    "digital",
    "payments",
    "rural",
    "youth",
    "supply",
    "chain",
    "tourism",
    "craft",
    "agriculture",
    "logistics",
    "incubator",
]
PDF = b"%PDF-1.4\n%seeded\n" + b"0" * 2000 + b"\n%%EOF\n"
BATCH = 500


def seed_published(
    app: App,
    count: int,
    *,
    seed: int = 2026,
    title: Callable[[int], str] | None = None,
    summary: Callable[[int], str] | None = None,
    organization: Callable[[int], str] | None = None,
) -> list[str]:
    """Publish ``count`` cases; returns their IDs in publishing order."""
    rng = random.Random(seed)
    workflow = app.workflow
    ids: list[str] = []
    for start in range(0, count, BATCH):
        with app.database.transaction() as session:
            author = Participant(
                email=f"seed{seed}-{start}@example.org",
                name="Seeded author",
                economy="CL",
                created_at=workflow.clock.now(),
                confirmed_at=workflow.clock.now(),
            )
            source = InboundMessage(
                delivery_key=hashlib.sha256(f"seed-{seed}-{start}".encode()).hexdigest(),
                received_at=workflow.clock.now(),
                outcome="seeded",
                raw_sha256=files_of(session).put(b""),
            )
            session.add_all([author, source])
            session.flush()
            for number in range(start, min(count, start + BATCH)):
                words = " ".join(rng.choice(WORDS) for _ in range(60))
                kind = rng.choice([Kind.BEST_PRACTICE, Kind.EXPERIENCE])
                case = workflow.engine.open_case(
                    session,
                    kind=kind,
                    author=author,
                    state=State.PUBLISHED,
                    message=None,
                    thread_id="",
                )
                case.title = title(number) if title else f"Case {number}: {words[:60]}"
                case.economy = rng.choice(ECONOMIES)
                case.area = rng.choice(AREAS).number
                numbered = f"Organization {rng.randint(1, 300)}"
                case.organization = organization(number) if organization else numbered
                case.summary = summary(number) if summary else words
                session.add(_document(session, case, source))
                publishing.publish(session, case, workflow)
                ids.append(case.public_id)
    return ids


def seed_subscribers(app: App, count: int, batch: int = 10_000) -> None:
    """Confirmed subscribers since yesterday, reader0@example.org and on."""
    joined = datetime.now(UTC) - timedelta(days=1)
    for first in range(0, count, batch):
        with app.database.transaction() as session:
            session.add_all(
                Subscriber(
                    email=f"reader{n}@example.org",
                    secret=f"{n:032x}",
                    created_at=joined,
                    confirmed_at=joined,
                    digest_from=joined,
                )
                for n in range(first, min(count, first + batch))
            )


def _document(session: Session, case: Case, source: InboundMessage) -> Document:
    return Document(
        case_id=case.id,
        message_id=source.id,
        filename=f"{case.public_id}.pdf",
        content_type="application/pdf",
        size=len(PDF),
        sha256=files_of(session).put(PDF),
        created_at=case.created_at,
    )
