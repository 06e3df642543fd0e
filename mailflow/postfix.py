"""The Postfix settings and maps that put Postfix in front of mailflow
(SPEC section 8, ``mailflow postfix --output DIR``).

Postfix must refuse at RCPT whatever mailflow would refuse, or it accepts
the message, fails to hand it over and bounces it to a sender who may be
forged (backscatter). So the maps are derived from the same Router that
answers mailflow's own RCPT. This module only writes files for an operator
to apply with ``postconf -e``; it never runs or changes Postfix itself.
The wording of the files lives in ``templates/postfix``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from mailflow.config import Settings
from mailflow.errors import ConfigError
from mailflow.notify.render import Renderer
from mailflow.routing import Router
from mailflow.workflow.dispatch import HANDLERS

# Postfix counts a message with its queue file's envelope records and the
# Received: header it adds, mailflow counts the bytes of DATA: a margin
# keeps Postfix from refusing anything mailflow would take.
SIZE_HEADROOM = 1_048_576
# Postfix's own default; its local delivery refuses to run with a
# message_size_limit above it.
POSTFIX_MAILBOX_SIZE_LIMIT = 51_200_000
# The characters of local parts and domains that a POSIX regular expression
# reads as operators: config.py allows no others but letters, digits, '-'
# and '_'.
_ERE_OPERATORS = re.compile(r"([.+])")
# mailflow listening on every address is reached on loopback.
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1"}

FILES = ("main.cf", "transport", "recipients", "README")


def postfix_files(settings: Settings, output: Path) -> dict[str, str]:
    """Each file's name and text, for maps that will live in ``output``."""
    if not settings.smtp.lmtp:
        raise ConfigError(
            f"{settings.source}: [smtp].lmtp is false; Postfix hands mail to mailflow "
            "over LMTP: set [smtp].lmtp = true"
        )
    renderer = Renderer()
    message_size_limit = settings.limits.max_message_bytes + SIZE_HEADROOM
    values: dict[str, Any] = {
        "source": settings.source,
        "domain": settings.site.domain,
        "output": output,
        "pattern": address_pattern(settings),
        "nexthop": lmtp_nexthop(settings.smtp.host, settings.smtp.port),
        "max_message_bytes": settings.limits.max_message_bytes,
        "headroom": SIZE_HEADROOM,
        "message_size_limit": message_size_limit,
        "mailbox_size_limit": (
            message_size_limit if message_size_limit > POSTFIX_MAILBOX_SIZE_LIMIT else None
        ),
    }
    return {name: renderer.render(f"postfix/{name}.j2", **values) for name in FILES}


def address_pattern(settings: Settings) -> str:
    """An anchored POSIX regular expression for exactly the addresses
    mailflow accepts at RCPT: each handled local part, with or without a
    plus-tag (``actions+TOKEN@``, ``mailflow+actions+TOKEN@``). Postfix's
    regexp tables ignore case unless told otherwise, as mailflow does."""
    router = Router(settings.site.domain, settings.addresses, HANDLERS)
    locals_ = sorted({router.address(route).rpartition("@")[0] for route in router.handled})
    alternatives = "|".join(_escaped(local) for local in locals_)
    return f"^({alternatives})(\\+[^@]*)?@{_escaped(router.domain)}$"


def lmtp_nexthop(host: str, port: int) -> str:
    """Postfix's name for mailflow's LMTP listener (an IPv6 address in brackets)."""
    host = _ANY_ADDRESS.get(host, host)
    return f"lmtp:inet:[{host}]:{port}" if ":" in host else f"lmtp:inet:{host}:{port}"


def write_postfix_files(settings: Settings, output: Path) -> list[Path]:
    """Write the files into ``output`` (created if missing), each replaced
    by a rename so Postfix never reads half a map. Same config, same bytes."""
    output = output.resolve()
    files = postfix_files(settings, output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in files.items():
        path = output / name
        partial = path.with_name(f".{name}.tmp")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, path)
        written.append(path)
    return written


def _escaped(text: str) -> str:
    return _ERE_OPERATORS.sub(r"\\\1", text)
