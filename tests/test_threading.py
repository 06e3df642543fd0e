"""Threading of our answers (SPEC section 7, issue 19): an answer's
In-Reply-To is the Message-ID of the message it answers, and its References
start with the case's thread and end with that message, however long the
conversation before it was."""

from __future__ import annotations

from conftest import Client, Mailbox
from mails import reply, submission

ANA = "ana@example.org"


def ids(header: object) -> list[str]:
    return str(header or "").split()


def test_an_answer_to_a_message_that_is_itself_a_reply_names_that_message(
    client: Client, outbox: Mailbox
) -> None:
    """A submission sent as a reply to a colleague's email is answered with
    In-Reply-To naming the submission, not the colleague's email."""
    mail = submission()
    mail["In-Reply-To"] = "<colleague-1@example.org>"
    mail["References"] = "<colleague-0@example.org> <colleague-1@example.org>"
    client.send(mail)
    [confirm] = outbox.wait_for(1, ANA)
    assert confirm["In-Reply-To"] == mail["Message-ID"]
    assert ids(confirm["References"])[-1] == mail["Message-ID"]


def test_references_keep_the_thread_first_and_the_answered_message_last(
    client: Client, outbox: Mailbox
) -> None:
    """A reply that carries a long References list: the answer's References
    stay bounded, begin with the case's thread and end with the reply."""
    first = submission()
    client.send(first)
    [confirm] = outbox.wait_for(1, ANA)
    answer = reply(confirm, "Ana Perez <ana@example.org>", "yes")
    earlier = " ".join(f"<earlier-{n}@example.org>" for n in range(15))
    answer.replace_header("References", f"{earlier} {confirm['Message-ID']}")
    client.send(answer)
    ack = outbox.wait_for(2, ANA)[-1]
    references = ids(ack["References"])
    assert ack["In-Reply-To"] == answer["Message-ID"]
    assert references[0] == first["Message-ID"]
    assert references[-1] == answer["Message-ID"]
    assert len(references) <= 10
