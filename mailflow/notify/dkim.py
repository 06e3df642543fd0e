"""DKIM (RFC 6376): the signature every outgoing email carries when
``[outbound].dkim_selector`` is set, the key it is made with, and the DNS
record that lets receivers check it. The only importer of dkimpy and of
cryptography.

The outbox signs the bytes it stored as it hands them to the transport;
nothing may change a signed header or the body afterwards (the transports
only add ``Return-Path`` and ``Delivered-To``, which are not signed). The
maildir's copy ends its lines in LF: the signature is made over CR LF, as
SMTP carries the email, and a verifier reading a file puts CR LF back.
"""

from __future__ import annotations

import base64
import functools
import os
import secrets
from pathlib import Path
from typing import Any

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from mailflow.errors import ConfigError, PermanentFailure

KEY_BITS = 2048

# What a reader sees and what a forwarder must not alter; signed where
# present (an absent header is left unsigned, so that a list that adds
# List-Id, say, does not break the signature).
SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "Reply-To",
    "In-Reply-To",
    "References",
    "MIME-Version",
    "Content-Type",
    "Auto-Submitted",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
    "Feedback-ID",
)

# A DNS TXT record holds strings of at most 255 bytes each (RFC 1035 3.3).
TXT_STRING_BYTES = 255


class Signer:
    """Signs finished emails for one domain with one selector and key."""

    def __init__(self, selector: str, domain: str, private_key: bytes) -> None:
        self._selector = selector.encode("ascii")
        self._domain = domain.encode("idna")
        self._private_key = private_key
        key = serialization.load_pem_private_key(private_key, password=None)
        assert isinstance(key, rsa.RSAPrivateKey)  # load_key made sure
        _OPENSSL_KEYS[key.private_numbers().public_numbers.n] = key

    def sign(self, raw: bytes) -> bytes:
        """``raw`` with its DKIM-Signature header in front (rsa-sha256,
        relaxed/relaxed: a relay that refolds a header keeps it valid).
        Bytes dkimpy cannot sign never will be: a permanent failure (any
        other error of dkimpy's is mailflow's, and is raised as it is)."""
        try:
            signature = dkim.sign(
                raw,
                self._selector,
                self._domain,
                self._private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=[name.encode() for name in _present(raw, SIGNED_HEADERS)],
                linesep=b"\r\n",
            )
        except (dkim.MessageFormatError, dkim.ParameterError) as exc:
            raise PermanentFailure(f"DKIM could not sign this email: {exc}") from exc
        return bytes(signature) + raw


# dkimpy canonicalizes and hashes the email well, then signs the hash with
# RSA in pure Python: 7 to 15 ms a signature, so that a digest to 100,000
# subscribers took half an hour of CPU for the signatures alone. OpenSSL
# (through cryptography) takes about 0.7 ms. dkimpy has no way to be handed
# a key object, so its one RSA step is replaced here, for the keys a Signer
# holds; a PKCS #1 v1.5 signature is deterministic, so the bytes are the
# very ones dkimpy would have made (tests/test_deliverability.py compares).
_OPENSSL_KEYS: dict[int, rsa.RSAPrivateKey] = {}
_PURE_PYTHON_SIGN = dkim.RSASSA_PKCS1_v1_5_sign


def _sign_with_openssl(digest: Any, private_key: dict[str, int]) -> bytes:
    key = _OPENSSL_KEYS.get(private_key["modulus"])
    if key is None or digest.name != "sha256":
        return bytes(_PURE_PYTHON_SIGN(digest, private_key))
    return key.sign(digest.digest(), padding.PKCS1v15(), Prehashed(hashes.SHA256()))


dkim.RSASSA_PKCS1_v1_5_sign = _sign_with_openssl
# dkimpy also reads the PEM key anew, in Python, for every signature (a
# fifth of a signed digest's time); the same bytes give the same key.
dkim.parse_pem_private_key = functools.lru_cache(maxsize=4)(dkim.parse_pem_private_key)


def load_key(path: Path) -> bytes:
    """The RSA private key as dkimpy reads it (PKCS#1 PEM), whichever PEM
    form the file holds (`openssl genpkey` writes PKCS#8); a missing or
    unusable one is named when mailflow starts, not when it first sends."""
    try:
        pem = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"[outbound] dkim_key_file {path}: {exc.strerror}; `mailflow dkim` creates it"
        ) from exc
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"[outbound] dkim_key_file {path}: not an unencrypted PEM private key"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"[outbound] dkim_key_file {path}: not an RSA key")
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def create_key(path: Path) -> bool:
    """A new RSA key at ``path`` (mode 0600, its folder created), unless one
    is there already: replacing it would break every signature until DNS
    catches up. Returns whether a key was made. Written to a temporary file
    and linked into place, so no process ever reads half a key."""
    if path.exists():
        return False
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        # A relative path resolved under /etc, or run as the wrong user:
        # one line naming the key, not a traceback.
        raise ConfigError(
            f"[outbound] dkim_key_file {path}: cannot write it: {exc.strerror}"
        ) from exc
    with os.fdopen(descriptor, "wb") as file:
        file.write(pem)
        file.flush()
        os.fsync(file.fileno())
    try:
        os.link(temporary, path)
    except FileExistsError:
        return False  # another process was first: its key stands
    finally:
        temporary.unlink()
    return True


def dns_record(selector: str, domain: str, private_key: bytes) -> str:
    """The TXT record to publish, in zone-file form, its value split into
    strings a DNS server accepts."""
    key = serialization.load_pem_private_key(private_key, password=None)
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    value = "v=DKIM1; k=rsa; p=" + base64.b64encode(public).decode("ascii")
    strings = [value[i : i + TXT_STRING_BYTES] for i in range(0, len(value), TXT_STRING_BYTES)]
    quoted = " ".join(f'"{string}"' for string in strings)
    return f"{selector}._domainkey.{domain} IN TXT {quoted}"


def _present(raw: bytes, names: tuple[str, ...]) -> list[str]:
    """Which of ``names`` the header of ``raw`` has."""
    header = raw.partition(b"\r\n\r\n")[0]
    found = {
        line.partition(b":")[0].strip().lower()
        for line in header.split(b"\r\n")
        if line and line[:1] not in b" \t"
    }
    return [name for name in names if name.lower().encode() in found]
