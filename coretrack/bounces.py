"""Bounces without a provider: a signed return path per recipient (VERP).

Every message's envelope sender is ``<local>+<token>@<domain>`` of the bounce address, the token
being the recipient's own signed one: a bounce names its recipient, and nobody without a
recipient's token (that is, anyone but the recipient) can forge a bounce that opts them out.
"""

from __future__ import annotations


def verp_address(bounce_address: str, token: str) -> str:
    """The return path of one recipient's message."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{token}@{domain}"
