"""The digest list (SPEC section 6): ``subscribe@`` with double opt-in,
``unsubscribe@`` and the one-step ``unsubscribe+SECRET@`` (and the
one-click URL, which calls ``leave_by_secret``), and bounces to
``bounces+SECRET@`` that suspend a subscriber whose digests keep bouncing.

Addresses are stored lower-case; subscribing again is harmless.
"""

from __future__ import annotations

import re
import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mailflow.forms import DIGEST_KEYS, parse_form
from mailflow.notify.outbox import Outgoing
from mailflow.routing import Route
from mailflow.store.models import DigestRun, Subscriber, Token
from mailflow.triage import Incoming, is_bounce, must_stay_silent
from mailflow.words import leading
from mailflow.workflow.context import Workflow

SUSPEND_AFTER_BOUNCES = 3
_DELAYED = re.compile(r"^\s*Action:\s*(delayed|relayed|delivered|expanded)\b", re.I | re.M)


def find(session: Session, email: str) -> Subscriber | None:
    return session.scalar(select(Subscriber).where(Subscriber.email == email.strip().lower()))


def by_secret(session: Session, secret: str) -> Subscriber | None:
    if not secret or len(secret) > 40:
        return None
    return session.scalar(select(Subscriber).where(Subscriber.secret == secret.lower()))


def is_active(subscriber: Subscriber | None) -> bool:
    return bool(
        subscriber
        and subscriber.confirmed_at
        and subscriber.left_at is None
        and subscriber.suspended_at is None
    )


def handle_subscribe(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    subscriber = find(session, incoming.sender)
    if is_active(subscriber):
        workflow.send(session, Outgoing("already_subscribed", incoming.sender, answering=incoming))
        return "subscribe: already subscribed"
    if subscriber is None:
        subscriber = Subscriber(
            email=incoming.sender.strip().lower(),
            secret=secrets.token_hex(16),
            created_at=workflow.clock.now(),
        )
        session.add(subscriber)
        session.flush()
    token = workflow.tokens.issue(session, "subscribe", subscriber.email)
    address = workflow.action_address(token)
    workflow.send(
        session,
        Outgoing(
            "subscribe_confirm",
            subscriber.email,
            {"confirm_address": address},
            answering=incoming,
            reply_to=address,
        ),
    )
    return "subscribe: waiting for the reply that confirms"


_YES = frozenset({"yes", "y", "please", "true", "1", "ok"})


def wants_digests(text: str) -> bool:
    """A "Digests: yes" line in a registration."""
    answer = parse_form(text, DIGEST_KEYS).get("digests", "")
    said = answer.strip().lower().rstrip(".!")
    return said in _YES or leading(answer, "action", ["yes"])[0] == "yes"  # "sí", "はい"


def join_when_registered(session: Session, email: str, workflow: Workflow) -> None:
    """Registering with "Digests: yes": subscribed once the address is
    confirmed, which the registration already asks for."""
    if find(session, email) is None:
        session.add(
            Subscriber(
                email=email.strip().lower(),
                secret=secrets.token_hex(16),
                created_at=workflow.clock.now(),
            )
        )


def registered(session: Session, email: str, workflow: Workflow) -> None:
    """The address was confirmed by registering: a subscription waiting
    for that confirmation starts (one left on purpose stays left)."""
    subscriber = find(session, email)
    if subscriber is not None and subscriber.confirmed_at is None and subscriber.left_at is None:
        subscriber.confirmed_at = subscriber.digest_from = workflow.clock.now()


def confirm(session: Session, incoming: Incoming, workflow: Workflow, token: Token) -> str:
    """The reply to the confirmation: from now on, digests. Someone who had
    left or was suspended starts afresh."""
    subscriber = find(session, token.person)
    if subscriber is None:
        return "subscribe: no such subscriber any more"
    now = workflow.clock.now()
    subscriber.confirmed_at, subscriber.left_at, subscriber.suspended_at = now, None, None
    subscriber.bounces = 0
    subscriber.digest_from = now
    workflow.send(
        session,
        Outgoing(
            "subscribed",
            subscriber.email,
            {"leave_address": leave_address(subscriber.secret, workflow)},
            answering=incoming,
        ),
    )
    return f"subscribed {subscriber.email}"


def handle_unsubscribe(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    """``unsubscribe+SECRET@`` removes that subscriber, whoever sends it
    (the secret is the proof, as in RFC 8058); ``unsubscribe@`` removes the
    sender."""
    assert incoming.destination is not None
    tag = incoming.destination.tag
    subscriber = by_secret(session, tag) if tag else find(session, incoming.sender)
    if subscriber is None:
        if tag:
            return "unsubscribe: unknown address tag"
        workflow.send(
            session,
            Outgoing("unsubscribed", incoming.sender, {"was": False}, answering=incoming),
        )
        return "unsubscribe: was not subscribed"
    return leave(session, subscriber, workflow, incoming)


def leave(
    session: Session, subscriber: Subscriber, workflow: Workflow, incoming: Incoming | None
) -> str:
    """At once, with one short goodbye; leaving twice says goodbye once."""
    if subscriber.left_at is not None:
        return f"unsubscribe: {subscriber.email} had already left"
    subscriber.left_at = workflow.clock.now()
    if incoming is not None and must_stay_silent(
        incoming.parsed, incoming.envelope, workflow.router
    ):
        return f"unsubscribed {subscriber.email} (machine mail: no goodbye)"
    workflow.send(
        session,
        Outgoing("unsubscribed", subscriber.email, {"was": True}, answering=incoming),
    )
    return f"unsubscribed {subscriber.email}"


def leave_by_secret(session: Session, secret: str, workflow: Workflow) -> str | None:
    """The one-click URL: the address that left, or None for a wrong link."""
    subscriber = by_secret(session, secret)
    if subscriber is None:
        return None
    leave(session, subscriber, workflow, None)
    return subscriber.email


def record_bounce(session: Session, incoming: Incoming, workflow: Workflow) -> str:
    """A digest bounced (its return path names the subscriber). Never
    answered. A failure counts once per digest period; auto-replies and
    delay warnings do not count. Bounces in three periods suspend the
    subscriber, and the daily summary tells the administrator."""
    assert incoming.destination is not None
    subscriber = by_secret(session, incoming.destination.tag)
    if subscriber is None:
        return "kept: mail to the bounce address"
    if not is_bounce(incoming.parsed, incoming.envelope, workflow.router):
        return f"kept: not a bounce (an auto-reply?) for {subscriber.email}"
    if _DELAYED.search(incoming.parsed.text):
        return f"kept: a delay warning for {subscriber.email}"
    period = session.scalar(select(func.max(DigestRun.started_at)))
    if subscriber.last_bounce_at and (period is None or subscriber.last_bounce_at >= period):
        return f"kept: {subscriber.email} bounced in this digest period already"
    subscriber.last_bounce_at = workflow.clock.now()
    subscriber.bounces += 1
    if subscriber.bounces >= SUSPEND_AFTER_BOUNCES and subscriber.suspended_at is None:
        subscriber.suspended_at = workflow.clock.now()
        return f"bounce {subscriber.bounces} for {subscriber.email}: suspended"
    return f"bounce {subscriber.bounces} for {subscriber.email}"


def leave_address(secret: str, workflow: Workflow) -> str:
    return workflow.router.address(Route.UNSUBSCRIBE, secret)


def bounce_address(secret: str, workflow: Workflow) -> str:
    return workflow.router.address(Route.BOUNCES, secret)
