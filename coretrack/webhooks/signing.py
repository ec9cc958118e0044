"""How a delivery is signed: an HMAC-SHA256 over "<timestamp>.<body>" with the endpoint's secret, in
hex, in the Coretrack-Signature header as ``v1=<hex>``; during a secret's rotation window the old
secret's signature follows, comma-separated, so a receiver holding either secret accepts it.
docs/webhooks.md has the receiver's side.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

EVENT_ID_HEADER = "Coretrack-Event-Id"
TIMESTAMP_HEADER = "Coretrack-Timestamp"
SIGNATURE_HEADER = "Coretrack-Signature"
SCHEME = "v1"


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret's UTF-8 bytes."""
    return hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256).hexdigest()


def headers(event_id: str, signing_secrets: Sequence[str], timestamp: int, body: bytes) -> dict[str, str]:
    """The headers of one attempt: the event id, the time it was signed (Unix seconds) and a
    signature with each secret valid now (the current one first)."""
    return {
        "Content-Type": "application/json",
        EVENT_ID_HEADER: event_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: ", ".join(f"{SCHEME}={signature(secret, timestamp, body)}" for secret in signing_secrets),
    }
