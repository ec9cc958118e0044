"""Encryption of stored secrets (the SMTP password) with a key derived from the install's key."""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF


def _fernet(secret: bytes) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"coretrack-settings").derive(secret)
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt(secret: bytes, plaintext: str) -> str:
    return _fernet(secret).encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(secret: bytes, ciphertext: str) -> str:
    """The plaintext; an empty string when the value cannot be decrypted (key changed)."""
    try:
        return _fernet(secret).decrypt(ciphertext.encode("ascii")).decode("utf-8")
    except (InvalidToken, ValueError):
        return ""
