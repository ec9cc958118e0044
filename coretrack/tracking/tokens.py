"""Tracking tokens: one per recipient, random and signed with the install's key.

A token is ``<id>.<mac>``: ``id`` is 16 random bytes, ``mac`` the first 16
bytes of HMAC-SHA256(secret, id), both base64url without padding, so every
token is exactly ``TOKEN_LENGTH`` characters.  The endpoint checks the MAC
(in constant time) before it touches the database, so forged or random
tokens cost one HMAC and nothing else, and nothing in a token can be
enumerated or derived from another.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

_ID_BYTES = 16
_MAC_BYTES = 16
_ID_CHARS = 22  # len(b64url(16 bytes)) without padding
TOKEN_LENGTH = _ID_CHARS + 1 + _ID_CHARS
TOKEN_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _mac(secret: bytes, token_id: str) -> str:
    digest = hmac.new(secret, b"coretrack-track:" + token_id.encode("ascii"), hashlib.sha256).digest()
    return _b64(digest[:_MAC_BYTES])


def new_token(secret: bytes) -> str:
    token_id = _b64(secrets.token_bytes(_ID_BYTES))
    return f"{token_id}.{_mac(secret, token_id)}"


def verify(secret: bytes, token: object) -> bool:
    """True only for a token this install signed.  Never raises."""
    if not isinstance(token, str) or len(token) != TOKEN_LENGTH or token[_ID_CHARS] != ".":
        return False
    if not TOKEN_ALPHABET.issuperset(token):
        return False
    token_id, mac = token[:_ID_CHARS], token[_ID_CHARS + 1 :]
    return hmac.compare_digest(_mac(secret, token_id), mac)
