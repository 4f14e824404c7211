"""Console passwords: scrypt hashes as the config stores them, and checking one.

Format (one string, so it fits in YAML as is)::

    scrypt$<log2 N>$<r>$<p>$<salt, base64>$<hash, base64>

`smartswitch hash-password` prints one. hashlib.scrypt is in the standard
library (OpenSSL), so nothing else is needed; argon2 is not supported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
from dataclasses import dataclass

SCHEME = "scrypt"
# 2^15 x 8 x 1: ~32 MiB and some tens of ms per login, so guessing is slow.
DEFAULT_LOG2_N = 15
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
_MAXMEM = 256 * 1024**2
EXPECTED = ("a scrypt hash like scrypt$15$8$1$<salt>$<hash> "
            "(make one with `smartswitch hash-password`)")


@dataclass(frozen=True)
class PasswordHash:
    """A parsed scrypt hash."""

    log2_n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        b64 = base64.b64encode
        return (f"{SCHEME}${self.log2_n}${self.r}${self.p}$"
                f"{b64(self.salt).decode()}${b64(self.digest).decode()}")


def parse(text: str) -> PasswordHash:
    """Parse a stored hash.

    Raises:
        ValueError: not of the form above (the message is what was expected).
    """
    parts = text.split("$") if isinstance(text, str) else []
    if len(parts) != 6 or parts[0] != SCHEME:
        raise ValueError(EXPECTED)
    try:
        log2_n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt = base64.b64decode(parts[4], validate=True)
        digest = base64.b64decode(parts[5], validate=True)
    except (ValueError, binascii.Error):
        raise ValueError(EXPECTED) from None
    # Bounds keep a hostile or mistyped config from asking for gigabytes.
    if not (10 <= log2_n <= 20 and 1 <= r <= 16 and 1 <= p <= 4 and len(salt) >= 8
            and len(digest) >= 16 and 128 * r * (2**log2_n) <= _MAXMEM // 2):
        raise ValueError(EXPECTED + " with log2 N 10..20, r 1..16, p 1..4")
    return PasswordHash(log2_n, r, p, salt, digest)


def _derive(password: str, salt: bytes, log2_n: int, r: int,
            p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2**log2_n, r=r, p=p,
                          maxmem=_MAXMEM, dklen=length)


def hash_password(password: str, log2_n: int = DEFAULT_LOG2_N) -> str:
    """A fresh stored hash of password (random salt)."""
    if not password:
        raise ValueError("the password is empty")
    salt = os.urandom(SALT_BYTES)
    digest = _derive(password, salt, log2_n, DEFAULT_R, DEFAULT_P, HASH_BYTES)
    return PasswordHash(log2_n, DEFAULT_R, DEFAULT_P, salt, digest).encode()


def verify(password: str, stored: PasswordHash) -> bool:
    """Whether password matches stored (constant-time comparison)."""
    got = _derive(password, stored.salt, stored.log2_n, stored.r, stored.p,
                  len(stored.digest))
    return hmac.compare_digest(got, stored.digest)
