"""Which of our addresses a message was sent to (SPEC section 2).

Local parts come from ``[addresses]``; a plus-tag carries a token or a case
ID (``actions+TOKEN@``, ``comment+BP-2026-0001@``). A local part may hold a
'+' itself, for a single shared mailbox read over IMAP
(``mailflow+submit@``, ``mailflow+actions+TOKEN@``): the longest local part
that matches wins. Routing is by address only; what a route does is the
workflow's business.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import parseaddr
from enum import StrEnum

from mailflow.config import AddressSettings


class Route(StrEnum):
    SUBMIT = "submit"
    REGISTER = "register"
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    INTERNSHIP = "internship"
    COMMENT = "comment"
    HELP = "help"
    ACTIONS = "actions"
    BOUNCES = "bounces"
    STATUS = "status"
    FOCAL_POINTS = "focal_points"
    POSTMASTER = "postmaster"
    ABUSE = "abuse"


@dataclass(frozen=True)
class Destination:
    route: Route
    tag: str
    address: str


class Router:
    def __init__(
        self,
        domain: str,
        addresses: AddressSettings,
        handled: Iterable[Route],
        own_senders: Iterable[str] = (),
    ) -> None:
        self.domain = domain.lower()
        self.handled = frozenset(handled)
        # Addresses we send from: never a route, but always ours.
        self._own_senders = frozenset(parseaddr(a)[1].lower() for a in own_senders)
        local_parts = addresses.model_dump(by_alias=True)
        self._local_of = {route: str(local_parts[route.value]) for route in Route}
        self._by_local = {local: route for route, local in self._local_of.items()}

    def resolve(self, address: str) -> Destination | None:
        """The destination of one of our addresses, None for anything else."""
        local, _, domain = parseaddr(address)[1].lower().rpartition("@")
        if domain != self.domain or not local:
            return None
        for base in _bases_longest_first(local):
            route = self._by_local.get(base)
            if route is not None:
                return Destination(route, local[len(base) + 1 :], f"{local}@{domain}")
        return None

    def first(self, addresses: Iterable[str]) -> Destination | None:
        for address in addresses:
            destination = self.resolve(address)
            if destination is not None and destination.route in self.handled:
                return destination
        return None

    def address(self, route: Route, tag: str = "") -> str:
        local = self._local_of[route]
        return f"{local}+{tag}@{self.domain}" if tag else f"{local}@{self.domain}"

    def accepts(self, address: str) -> bool:
        """Whether mail to this address has somewhere to go (RCPT check)."""
        return self.first([address]) is not None

    @property
    def loop_marker(self) -> str:
        """What our ``X-Loop`` header says: mail carrying it came from us."""
        return f"mailflow@{self.domain}"

    def is_ours(self, address: str) -> bool:
        return (
            self.resolve(address) is not None or parseaddr(address)[1].lower() in self._own_senders
        )


def _bases_longest_first(local: str) -> list[str]:
    """``a+b+c`` -> ``a+b+c``, ``a+b``, ``a``: the local part and each of its
    plus-prefixes, whichever of them is one of ours."""
    parts = local.split("+")
    return ["+".join(parts[:n]) for n in range(len(parts), 0, -1)]
