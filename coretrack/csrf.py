"""CSRF tokens for forms: stateless, bound to the user, signed, valid for a day.

Basic auth makes browsers send credentials with any cross-site form post, so
every state-changing form carries ``<input name=csrf_token>``.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from .validation import whole_number

MAX_AGE_SECONDS = 24 * 3600
MAX_ISSUED = 2**40  # seconds: far past any clock, still an exact float


def _mac(secret: bytes, user: str, issued: str) -> str:
    return hmac.new(secret, f"coretrack-csrf:{user}:{issued}".encode(), hashlib.sha256).hexdigest()


def make_token(secret: bytes, user: str, now: float | None = None) -> str:
    issued = str(int(time.time() if now is None else now))
    return f"{issued}.{_mac(secret, user, issued)}"


def check_token(secret: bytes, user: str, token: str, now: float | None = None) -> bool:
    issued, _, mac = (token or "").partition(".")
    try:
        issued_at = whole_number(issued, 0, MAX_ISSUED)
    except ValueError:
        return False
    age = (time.time() if now is None else now) - issued_at
    if not 0 <= age <= MAX_AGE_SECONDS:
        return False
    # Bytes: compare_digest refuses str with non-ASCII characters, and a posted form is anyone's.
    return hmac.compare_digest(_mac(secret, user, issued).encode(), mac.encode())
