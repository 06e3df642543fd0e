"""Loops with robots that do not say they are robots (issue 11).

A hostile auto-responder answers every email it gets, strips every header
that would mark it as a robot (Auto-Submitted, Precedence, our X-Loop) and
threads its answer under ours, so the triage cannot tell it from a person.
What stops the conversation is the outbox's limit on automatic answers to
one address. And two mailflow instances pointed at each other stop on the
robot headers each one writes."""

from __future__ import annotations

import email
import smtplib
from collections.abc import Callable
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import parseaddr
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope
from conftest import Client, Mailbox, free_port, wait_until
from mails import address, message, submission
from sqlalchemy import func, select

from mailflow.app import App, Service, build
from mailflow.config import load_settings
from mailflow.store.models import InboundMessage, OutboxMessage

pytestmark = pytest.mark.torture

ROBOT = "robot@example.org"
# Far more than any limit: the test stops the conversation itself only if
# mailflow does not.
MAX_TURNS = 30


def settled(app: App) -> bool:
    return not app.spool.pending() and not any(app.spool.cur.iterdir())


def unsent(app: App) -> int:
    with app.database.transaction() as session:
        return int(
            session.scalar(
                select(func.count(OutboxMessage.id)).where(
                    OutboxMessage.sent_at.is_(None), OutboxMessage.failed_at.is_(None)
                )
            )
            or 0
        )


def drained(app: App) -> bool:
    """Every message processed and every email it caused sent."""
    return settled(app) and unsent(app) == 0


def auto_reply(ours: EmailMessage) -> tuple[EmailMessage, str]:
    """What a careless vacation robot sends back: to Reply-To or From,
    threaded, quoting us, with no robot header at all."""
    to = parseaddr(str(ours["Reply-To"] or ours["From"]))[1]
    quoted = "\n".join(
        "> " + line for line in str(ours.get_body(("plain",)).get_content()).splitlines()
    )  # type: ignore[union-attr]
    answer = message(
        ROBOT, to, "Re: " + str(ours["Subject"]), "I am out of the office.\n\n" + quoted
    )
    answer["In-Reply-To"] = str(ours["Message-ID"])
    answer["References"] = str(ours["Message-ID"])
    return answer, to


def converse(
    client: Client, outbox: Mailbox, app: App, first: EmailMessage
) -> tuple[int, int, int]:
    """Send ``first`` as the robot, then answer every email mailflow sends
    it until mailflow falls silent. Returns the emails from mailflow, the
    emails from the robot that mailflow accepted, and the turns taken."""
    client.send(first)
    answered: set[str] = set()
    robot_sent = 1
    for turn in range(MAX_TURNS):
        wait_until(lambda: drained(app), what="the spool drained and its emails sent")
        new = [m for m in outbox.to(ROBOT) if str(m["Message-ID"]) not in answered]
        if not new:
            return len(outbox.to(ROBOT)), robot_sent, turn
        for ours in new:
            answered.add(str(ours["Message-ID"]))
            answer, to = auto_reply(ours)
            try:
                client.send(answer, to=[to])
                robot_sent += 1
            except smtplib.SMTPRecipientsRefused:
                pass  # noreply@ is no mailbox: the robot's answer bounces at RCPT
    return len(outbox.to(ROBOT)), robot_sent, MAX_TURNS


def registered_robot(client: Client, outbox: Mailbox, app: App) -> None:
    form = "Name: Robo\nEconomy: Chile\nOrganization: Robots Inc\n"
    client.send(message(ROBOT, address("register"), "Register", form))
    confirm = outbox.wait_for(1, ROBOT)[-1]
    client.send(auto_reply(confirm)[0])  # a robot confirms by answering
    outbox.wait_for(2, ROBOT)  # welcome
    wait_until(lambda: settled(app))


STARTS: dict[str, Callable[[], EmailMessage]] = {
    "an incomplete submission": lambda: submission(sender=ROBOT, body="Kind: Best practice\n"),
    "a complete submission": lambda: submission(sender=ROBOT),
    "a question to help@": lambda: message(ROBOT, address("help"), "How?", "How does it work?"),
    "subscribe@": lambda: message(ROBOT, address("subscribe"), "Subscribe", "Please"),
    "an incomplete registration": lambda: message(ROBOT, address("register"), "Hi", "Hello"),
    "a comment on no case": lambda: message(
        ROBOT, address("comment+BP-2026-0999"), "Comment", "Nice."
    ),
}


@pytest.mark.parametrize("registered", [False, True], ids=["unknown", "registered"])
@pytest.mark.parametrize("start", list(STARTS))
def test_a_hostile_auto_responder_is_soon_met_with_silence(
    start: str, registered: bool, client: Client, outbox: Mailbox, app: App
) -> None:
    if registered:
        registered_robot(client, outbox, app)
    before = len(outbox.to(ROBOT))
    ours, robots, turns = converse(client, outbox, app, STARTS[start]())
    answers = answers_to(app, ROBOT)[before:]
    print(
        f"\n{start} ({'registered' if registered else 'unknown'}): {ours - before} from"
        f" mailflow, {robots} from the robot, {turns} turns: {', '.join(t for t, _ in answers)}"
    )
    assert turns < MAX_TURNS, "mailflow never fell silent"
    # On top, at most one "a person will answer you" a day (SPEC section 2):
    # the robot's answers to our emails that ask no reply at a token reach
    # help@, and from there a person.
    told = sum(1 for template, _ in answers if template == "question_received")
    assert told <= 1
    assert ours - before - told <= 3
    assert all(answers.count(answer) <= 2 for answer in answers)


def answers_to(app: App, recipient: str) -> list[tuple[str, int | None]]:
    with app.database.transaction() as session:
        rows = session.execute(
            select(OutboxMessage.template, OutboxMessage.case_id)
            .where(OutboxMessage.recipient == recipient)
            .order_by(OutboxMessage.id)
        )
        return [(template, case) for template, case in rows]


# -- two instances pointed at each other ---------------------------------------


ROBOT_HEADERS = ("Auto-Submitted", "Precedence", "X-Loop", "X-Auto-Response-Suppress")


class Relay:
    """A mail server between the two instances: passes each message on to
    ``target``, dropping every robot header first when ``strip`` is set
    (a badly configured relay, or a mail client forwarding by hand)."""

    def __init__(self, target_port: int, strip: bool) -> None:
        self.target_port, self.strip = target_port, strip
        self.passed: list[tuple[str, str]] = []  # (from, to) of what got through
        self.refused: list[tuple[str, str]] = []  # and of what the other one refused
        self.passing = 0  # messages being passed on now

    async def handle_DATA(self, server: object, session: object, envelope: Envelope) -> str:
        self.passing += 1
        try:
            return self._pass_on(envelope)
        finally:
            self.passing -= 1

    def _pass_on(self, envelope: Envelope) -> str:
        mail = email.message_from_bytes(envelope.original_content or b"", policy=SMTP)
        if self.strip:
            for name in ROBOT_HEADERS:
                del mail[name]
        try:
            with smtplib.SMTP("127.0.0.1", self.target_port, timeout=30) as smtp:
                smtp.sendmail(envelope.mail_from, envelope.rcpt_tos, mail.as_bytes())
        except smtplib.SMTPRecipientsRefused as refused:
            code, text = next(iter(refused.recipients.values()))
            self.refused.append((str(mail["From"]), ", ".join(envelope.rcpt_tos)))
            return f"{code} {text.decode()}"
        self.passed.append((str(mail["From"]), ", ".join(envelope.rcpt_tos)))
        return "250 OK"


def instance(
    write: Callable[..., Path],
    root: Path,
    domain: str,
    admin: str,
    relay_port: int,
    sender: str = "noreply",
) -> tuple[App, int]:
    root.mkdir()
    port = free_port()
    config = write(
        f'[site]\ndomain = "{domain}"\n\n'
        f'[admin]\naddresses = ["{admin}"]\n\n'
        f'[outbound]\ntransport = "smtp"\nport = {relay_port}\n'
        f'from = "Best Practices <{sender}@{domain}>"\n',
        f"sqlite:///{root}/mailflow.db",
        port,
    )
    config.rename(root / "config.toml")  # its var/ folder is then the instance's own
    return build(load_settings(root / "config.toml", environ={})), port


def quiet(apps: list[App], relays: list[Relay]) -> Callable[[], bool]:
    """A condition that holds once nothing moves: every spool, outbox and
    relay idle, twice in a row with no mail handled or passed in between
    (a message can slip from a stage not yet looked at into one already
    looked at, but not without being counted)."""
    before: list[tuple[int, ...]] = []

    def check() -> bool:
        idle = all(drained(app) for app in apps) and not any(r.passing for r in relays)
        counts = tuple(len(r.passed) + len(r.refused) for r in relays) + tuple(
            handled(app) for app in apps
        )
        previous, before[:] = before[:], [counts] if idle else []
        return idle and previous == [counts]

    return check


def handled(app: App) -> int:
    with app.database.transaction() as session:
        return int(session.scalar(select(func.count(InboundMessage.id))) or 0)


@pytest.mark.parametrize(
    ("strip", "sender", "turns"),
    [(False, "noreply", 1), (True, "noreply", 1), (True, "mailflow", 2)],
    ids=["honest relay", "stripping relay", "stripping relay, a From that takes replies"],
)
def test_two_instances_pointed_at_each_other_stop_within_two_hops(
    strip: bool, sender: str, turns: int, write_config: Callable[..., Path], tmp_path: Path
) -> None:
    """Each instance's administrator is the other's submit@ address; a
    message that looks like it came from the other one starts them off."""
    to_a, to_b = free_port(), free_port()
    a, a_port = instance(
        write_config, tmp_path / "a", "a.localhost", "submit@b.localhost", to_b, sender
    )
    b, b_port = instance(
        write_config, tmp_path / "b", "b.localhost", "submit@a.localhost", to_a, sender
    )
    relays = {to_a: Relay(a_port, strip), to_b: Relay(b_port, strip)}
    controllers = [
        Controller(relay, hostname="127.0.0.1", port=port) for port, relay in relays.items()
    ]
    services = [Service(a), Service(b)]
    try:
        for running in [*controllers, *services]:
            running.start()
        first = message("submit@b.localhost", "submit@a.localhost", "Hello", "Please help.")
        with smtplib.SMTP("127.0.0.1", a_port, timeout=30) as smtp:
            smtp.send_message(first)
        wait_until(lambda: relays[to_b].passed, what="A's answer reaching B")
        # Then until any answer to the answer, and its answer, had its turn.
        wait_until(quiet([a, b], list(relays.values())), what="both instances to fall silent")
        hops = [*relays[to_b].passed, *relays[to_a].passed]
        refused = [*relays[to_b].refused, *relays[to_a].refused]
        print(f"\n{'stripping' if strip else 'honest'} relay: {hops} passed, {refused} refused")
        # Kept headers, or a noreply@ From: the second instance stays
        # silent. Stripped headers and a From that takes replies: it answers
        # once, to an address that the first one refuses.
        assert len(hops) + len(refused) == turns
    finally:
        for running in [*services, *controllers]:
            running.stop()
        a.database.dispose()
        b.database.dispose()
