"""Decide, before any workflow code runs, what kind of message this is.

An ordered table of small named rules, first match wins (after Mailman's
chains): mail from ourselves, bounces, machine-generated mail and mail
from an address that says it takes no replies are kept and never answered,
so no two robots can ever talk to each other and no answer can only
bounce; mail for none of our addresses is kept as unroutable. Whatever
passes goes to the workflow handler of its route.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from mailflow.parse import ParsedMessage
from mailflow.routing import Destination, Router
from mailflow.spool import Envelope
from mailflow.store.models import InboundMessage

_AUTOMATED_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
_BOUNCE_SENDERS = ("mailer-daemon@", "postmaster@")
_SOURCES_WITHOUT_SENDER = frozenset({"ingest", "imap"})


@dataclass(frozen=True)
class Incoming:
    """One message on its way through the workflow."""

    parsed: ParsedMessage
    envelope: Envelope
    record: InboundMessage
    destination: Destination | None

    @property
    def sender(self) -> str:
        return self.parsed.sender


def is_from_ourselves(parsed: ParsedMessage, envelope: Envelope, router: Router) -> bool:
    return router.is_ours(parsed.sender) or router.is_ours(envelope.sender)


def carries_our_loop_marker(parsed: ParsedMessage, envelope: Envelope, router: Router) -> bool:
    return router.loop_marker in parsed.header("x-loop").lower()


def is_bounce(parsed: ParsedMessage, envelope: Envelope, router: Router) -> bool:
    content_type = parsed.header("content-type").lower()
    # A null return path marks a bounce whichever way the message came in
    # (SMTP, LMTP, or a pipe given --sender "" or MAILER-DAEMON by Postfix).
    # `mailflow ingest` without --sender and a mailbox message without a
    # Return-Path know no sender: "" is not null there (the Return-Path
    # header test below still sees a null one).
    sender = envelope.sender.strip().lower()
    null_sender = sender in ("<>", "mailer-daemon") or (
        sender == "" and envelope.source not in _SOURCES_WITHOUT_SENDER
    )
    return (
        null_sender
        or parsed.header("return-path").strip() == "<>"
        or parsed.sender.startswith(_BOUNCE_SENDERS)
        or sender.startswith(_BOUNCE_SENDERS)
        # Delivery and disposition notifications (read receipts) alike.
        or "multipart/report" in content_type
    )


# Local parts that say they take no replies, as words between separators
# (``-``, ``_``, ``.``, ``+``): noreply, no-reply, no_reply, donotreply,
# do-not-reply, donotrespond, alone or with other words (gmail-noreply@,
# noreply-dmarc-support@, calendar.noreply@, noreply+tag@). Conservative on
# purpose: the word must stand alone, so noreen@ or tinoreply@ are people;
# and bounce@, info@ or notifications@ are not taken for robots by name.
_NO_REPLY_WORD = re.compile(r"(?:^|-)(?:no-?reply|do-?not-?reply|do-?not-?respond)(?:-|$)")


def takes_no_replies(address: str) -> bool:
    """Whether the local part of ``address`` says that it takes no replies."""
    local = address.rpartition("@")[0].lower()
    return bool(_NO_REPLY_WORD.search(re.sub(r"[_.+]", "-", local)))


def is_from_a_no_reply_address(parsed: ParsedMessage, envelope: Envelope, router: Router) -> bool:
    # Only From counts: it is where an answer would go.
    return takes_no_replies(parsed.sender)


def is_auto_submitted(parsed: ParsedMessage, envelope: Envelope, router: Router) -> bool:
    auto_submitted = parsed.header("auto-submitted").strip().lower()
    precedence = parsed.header("precedence").strip().lower()
    return (
        (auto_submitted not in ("", "no"))
        or precedence in _AUTOMATED_PRECEDENCE
        or bool(parsed.header("x-autoreply") or parsed.header("x-autorespond"))
        or bool(parsed.header("list-id"))
    )


# How common clients title an out-of-office reply that carries no header
# saying what it is (Outlook's "Automatic reply:", Lotus Notes' "Auto:").
_AWAY_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[ -]?(reply|response)|autoreply"
    r"|auto:|away from|on (vacation|holiday|leave)|abwesen|absen(ce|t)|r[ée]ponse automatique"
    r"|respuesta autom[áa]tica|fuera de la oficina|ausente)",
    re.IGNORECASE,
)


def is_out_of_office(parsed: ParsedMessage, envelope: Envelope, router: Router) -> bool:
    """An automatic answer to one of our emails that says its writer is
    away: RFC 3834's ``auto-replied``, the headers vacation programs add,
    or the subject the common clients give it."""
    return (
        parsed.header("auto-submitted").strip().lower().startswith("auto-replied")
        or bool(parsed.header("x-autoreply") or parsed.header("x-autorespond"))
        or parsed.header("precedence").strip().lower() == "auto_reply"
        or bool(_AWAY_SUBJECT.match(parsed.subject))
    )


Rule = Callable[[ParsedMessage, Envelope, Router], bool]

# (outcome recorded on the message, rule): first match wins.
SILENT_RULES: tuple[tuple[str, Rule], ...] = (
    ("ignored: from ourselves", is_from_ourselves),
    ("ignored: our own X-Loop", carries_our_loop_marker),
    ("ignored: bounce", is_bounce),
    ("ignored: out-of-office reply", is_out_of_office),
    ("ignored: auto-submitted", is_auto_submitted),
    ("ignored: a no-reply sender", is_from_a_no_reply_address),
)


def must_stay_silent(parsed: ParsedMessage, envelope: Envelope, router: Router) -> str | None:
    """The outcome for a message that must never be answered, else None."""
    for outcome, rule in SILENT_RULES:
        if rule(parsed, envelope, router):
            return outcome
    return None


def destinations(parsed: ParsedMessage, envelope: Envelope, router: Router) -> list[Destination]:
    """Every one of our addresses the message was delivered to. The envelope
    decides when there is one; otherwise the first of ours in the headers,
    in the order of SPEC section 2."""
    if envelope.recipients:
        found = [router.first([r]) for r in envelope.recipients]
        return list(dict.fromkeys(d for d in found if d is not None))
    first = router.first(parsed.recipients)
    return [first] if first else []


_DMARC_FAIL = re.compile(r"\bdmarc\s*=\s*fail\b", re.IGNORECASE)


def failed_dmarc(parsed: ParsedMessage, authserv_id: str) -> bool:
    """Whether our own front MTA (``[security].authserv_id``) says DMARC
    failed for the sender's domain. Authentication-Results written by
    anyone else are ignored: a sender can add any header it likes."""
    if not authserv_id:
        return False
    for result in parsed.authentication_results:
        server = result.split(";", 1)[0].split()
        if server and server[0].lower() == authserv_id.lower() and _DMARC_FAIL.search(result):
            return True
    return False
