"""Whose network an address is in (Apple's relay, Microsoft's mail protection, a mail security
gateway, a cloud data centre), from the published ranges shipped beside this module (networks.txt),
for the verdict rules (verdicts.py, click_verdicts.py)."""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path

RANGES_FILE = Path(__file__).with_name("networks.txt")
KINDS = ("apple", "microsoft", "gateway", "cloud")


def _read(path: Path) -> list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
    ranges = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        kind, _, cidr = line.partition(" ")
        if kind not in KINDS:
            raise ValueError(f"{path}:{number}: unknown kind {kind!r}")
        ranges.append((kind, ipaddress.ip_network(cidr.strip())))
    return ranges


_RANGES = _read(RANGES_FILE)


# Few distinct addresses make most hits (mail proxies, the same reader's opens): each is looked up
# once per process.
@functools.lru_cache(maxsize=4096)
def network_of(ip: str) -> str:
    """The kind of network the address is in (one of KINDS), or "" for any other or no address.
    A truncated address (the /24 or /48 kept by the storage policy) gives the same answer."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    for kind, network in _RANGES:
        if address.version == network.version and address in network:
            return kind
    return ""
