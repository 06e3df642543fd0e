"""Deterministic, realistic submissions: multipart/mixed, the SPEC form in
the body, one PDF-looking attachment of a chosen size. The same seed gives
the same bytes, so runs compare."""

from __future__ import annotations

import random
from email.message import EmailMessage
from email.policy import SMTP

AREAS = ("Access to Financial Services", "Access to Technology", "Capacity Building")
ECONOMIES = ("Chile", "Viet Nam", "Peru", "Mexico", "Thailand", "Indonesia")


def submission(number: int, attachment_bytes: int, seed: int = 2026) -> bytes:
    rng = random.Random(seed * 1_000_003 + number)
    mail = EmailMessage()
    mail["From"] = f"Delegate {number} <delegate{number}@example.org>"
    mail["To"] = "submit@mailflow.localhost"
    mail["Subject"] = f"Practice number {number}: {rng.choice(AREAS).lower()}"
    mail["Message-ID"] = f"<bench-{seed}-{number}@example.org>"
    mail.set_content(
        "Kind: Best practice\n"
        f"Economy: {rng.choice(ECONOMIES)}\n"
        f"Priority area: {rng.choice(AREAS)}\n"
        f"Organization: Organization {rng.randint(1, 500)}\n"
        "Summary: "
        + " ".join(
            rng.choice(
                ("micro", "finance", "training", "women", "export", "market", "mentoring", "credit")
            )
            for _ in range(60)
        )
        + "\n"
    )
    body = rng.randbytes(max(0, attachment_bytes - 20))
    mail.add_attachment(
        b"%PDF-1.4\n" + body + b"\n%%EOF\n",
        maintype="application",
        subtype="pdf",
        filename=f"practice-{number}.pdf",
    )
    return mail.as_bytes(policy=SMTP)
