"""Digest readers as people are: they subscribe with one email and one
reply, and the administrator sends the digests from the shell. Shared by
the tests of digests and of deliverability."""

from __future__ import annotations

from email.message import EmailMessage

from conftest import Client, Mailbox
from mails import message, reply

from mailflow.cli import main
from mailflow.config import Settings

READER = "reader@example.org"
SUBSCRIBE = "subscribe@mailflow.localhost"


def subscribed(client: Client, outbox: Mailbox, address: str = READER) -> EmailMessage:
    """Subscribe with one email and one reply, as a person would; the
    welcome email."""
    before = len(outbox.to(address))
    client.send(message(address, SUBSCRIBE, "subscribe", ""))
    confirm = outbox.wait_for(before + 1, address)[-1]
    assert confirm["Subject"] == "Please confirm: digests of new cases"
    client.send(reply(confirm, address))
    welcome = outbox.wait_for(before + 2, address)[-1]
    assert welcome["Subject"] == "You are subscribed"
    return welcome


def digest_send(settings: Settings, *extra: str) -> None:
    """`mailflow digest send` as the administrator types it."""
    assert main(["digest", "send", *extra, "--config", str(settings.source)]) == 0
