"""Participants: found by their normalised address, registered only by a
confirmed reply (double opt-in). Until then what they tell us about
themselves may change with each message; afterwards it is theirs."""

from __future__ import annotations

from sqlalchemy.orm import Session

from mailflow import languages
from mailflow.clock import Clock
from mailflow.economies import Economies
from mailflow.forms import parse_form
from mailflow.parse import ParsedMessage
from mailflow.store import queries
from mailflow.store.models import Participant
from mailflow.workflow.fields import Submission, read_submission


def find_or_add(session: Session, email: str, clock: Clock) -> Participant:
    address = email.strip().lower()
    participant = queries.participant(session, address)
    if participant is None:
        participant = Participant(email=address, created_at=clock.now())
        session.add(participant)
        session.flush()
    return participant


def introduce(
    session: Session, parsed: ParsedMessage, economies: Economies, clock: Clock
) -> tuple[Participant, Submission]:
    """The sender and what the form of their message says. An unconfirmed
    sender's name (else the From display name), economy and organization
    are taken from it."""
    participant = find_or_add(session, parsed.sender, clock)
    form = read_submission(parse_form(parsed.text), economies)
    learn(
        participant,
        name=form.name or parsed.sender_name,
        economy=form.economy,
        organization=form.organization,
    )
    return participant, form


def learn_from_confirming(
    participant: Participant, parsed: ParsedMessage, economies: Economies
) -> None:
    """What the reply that confirms an address says about its sender (an
    Economy: line the first message lacked, say), taken as a first
    message's would be: the sender is not registered until this reply, and
    its answer is already in their economy's language (SPEC section 3a).
    The From line's name is not taken: it may be shorter than the first's.
    Nor is anything from another address ([security].token_only lets one
    use the token): it says nothing about this participant."""
    if parsed.sender.strip().lower() != participant.email:
        return
    form = read_submission(parse_form(parsed.text), economies)
    learn(participant, name=form.name, economy=form.economy, organization=form.organization)


def learn(
    participant: Participant, *, name: str | None, economy: str | None, organization: str | None
) -> None:
    """Take what an unconfirmed sender says about themselves. A registered
    participant's details are theirs; only what is still missing is taken
    (a participant registered by a comment has no economy until they say).
    A different economy given later never replaces theirs, since anyone can
    write a From line: an internship application keeps it for itself, and
    its reviewers see both (``templates/mail/_application.txt.j2``)."""
    if participant.confirmed_at is not None:
        participant.name = participant.name or (name or "")[:200]
        participant.economy = participant.economy or economy or ""
        participant.organization = participant.organization or (organization or "")[:300]
        return
    participant.name = (name or participant.name)[:200]
    participant.economy = economy or participant.economy
    participant.organization = (organization or participant.organization)[:300]


def note_language(session: Session, parsed: ParsedMessage, clock: Clock) -> str | None:
    """A ``Language:`` line in any message, from anyone, sets the language
    they read from now on, this message's answer included (SPEC section
    3a). Returns the tag it set; a line naming no shipped language is
    ignored, so a typo never changes what someone reads."""
    written = parse_form(parsed.text).get("language")
    tag = languages.match(written) if written else None
    if tag is not None:
        find_or_add(session, parsed.sender, clock).language = tag
    return tag
