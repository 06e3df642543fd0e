"""An address as our outgoing mail writes it, in its headers and on the
SMTP envelope.

A person's address is kept as they wrote it (``juan@例子.中国``,
``josé@ejemplo.cl``). On the way out, a domain in Unicode is written as its
A-labels when the local part is ASCII (RFC 5890: ``juan@xn--fsqu00a.xn--fiqs8s``),
so that the email asks nothing new of any server. A local part beyond ASCII
has no ASCII form: that email is an SMTPUTF8 message (RFC 6531, RFC 6532),
its header written in raw UTF-8, and a relay that cannot carry one must
refuse it rather than receive it mangled.
"""

from __future__ import annotations


def outgoing_address(address: str) -> str:
    """``address`` with its domain in A-labels where that makes it ASCII."""
    local, at, domain = address.rpartition("@")
    if address.isascii() or not at or not local.isascii():
        return address
    try:
        labels = domain.encode("idna").decode("ascii")
        # Python's codec is IDNA 2003, which maps some names to others
        # (straße to strasse) that IDNA 2008 keeps apart: only a name that
        # comes back unchanged is converted, any other stays in UTF-8.
        same = labels.encode("ascii").decode("idna") == domain
    except UnicodeError:
        return address
    return f"{local}@{labels}" if same else address


def needs_smtputf8(address: str) -> bool:
    """True when the address cannot be written in ASCII at all."""
    return not outgoing_address(address).isascii()
