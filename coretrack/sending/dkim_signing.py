"""DKIM (RFC 6376): the install's signing key, the DNS record that publishes it, and the signature
every message carries when coretrack hands it to its mail server (smtp.py:SmtpSender.send).

The key is an RSA key made here (``new_key``), kept encrypted in the settings like the SMTP password
and never shown; what the configuration editor shows is its public half as the TXT record to publish
at ``<selector>._domainkey.<domain>`` (``dns_record``)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

# 2048 bits: what Gmail, Yahoo and Outlook.com ask for; longer keys do not fit every DNS provider's TXT form.
KEY_BITS = 2048
# Each of these is signed once for each copy in the message, then once more: a receiver then refuses
# the signature of a message that gained a copy on the way (RFC 6376 8.15, "oversigning").
# List-Unsubscribe and List-Unsubscribe-Post must be signed for one-click unsubscribe (RFC 8058 4).
SIGNED_HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type",
                  "Content-Transfer-Encoding", "List-Id", "List-Unsubscribe", "List-Unsubscribe-Post")
# A selector and a domain are DNS labels: letters, digits, hyphens, dots between labels.
_LABEL = r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)"
_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z")
_HEADER_NAME = re.compile(rb"^([!-9;-~]+):", re.MULTILINE)


def new_key() -> str:
    """A new private key, PEM (PKCS #1, the form dkimpy reads)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                             serialization.NoEncryption()).decode("ascii")


def public_key(private_pem: str) -> str:
    """The key's public half as a DKIM record's p= value: base64 of its SubjectPublicKeyInfo."""
    key = serialization.load_pem_private_key(private_pem.encode("ascii"), password=None)
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode("ascii")


def record_name(selector: str, domain: str) -> str:
    return f"{selector}._domainkey.{domain}"


def dns_record(private_pem: str) -> str:
    """The TXT record's text that publishes the key."""
    return f"v=DKIM1; k=rsa; p={public_key(private_pem)}"


def zone_strings(text: str) -> str:
    """The record as a zone file writes it: quoted strings of at most 255 characters (a longer TXT
    string does not exist in DNS; resolvers join them)."""
    return " ".join(f'"{text[start:start + 255]}"' for start in range(0, len(text), 255))


def check_name(value: str, what: str) -> str:
    """``value`` as a selector or domain name, or ValueError saying what is wrong."""
    value = value.strip().rstrip(".").lower()
    if len(value) > 253 or not _NAME.match(value):
        raise ValueError(f"the {what} may hold only letters, digits, hyphens and dots between them")
    return value


class SigningError(Exception):
    """A message that could not be signed; the text says why."""


@dataclass(frozen=True)
class Signer:
    """Signs whole messages (bytes, CRLF lines) for ``domain`` with the key published under ``selector``."""

    selector: str
    domain: str
    private_pem: str = field(repr=False)  # never in a log line or a traceback's repr

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header in front; SigningError when it cannot be signed."""
        head = message.split(b"\r\n\r\n", 1)[0]
        present = [name.decode("ascii").lower() for name in _HEADER_NAME.findall(head)]
        wanted = [name.lower() for name in SIGNED_HEADERS]
        signed = [name for name in present if name in wanted]
        signed += [name for name in wanted if name in present]  # each once more: see SIGNED_HEADERS
        try:
            signature = dkim.sign(message, self.selector.encode("ascii"), self.domain.encode("ascii"),
                                  self.private_pem.encode("ascii"), canonicalize=(b"relaxed", b"relaxed"),
                                  include_headers=[name.encode("ascii") for name in signed])
        except dkim.DKIMException as exc:
            raise SigningError(str(exc) or exc.__class__.__name__) from None
        return bytes(signature) + message
