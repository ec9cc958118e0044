"""Whose network an address is in (Apple's relay, Microsoft's, a mail security gateway's, a cloud data
centre), from the published lists shipped in ranges/ (one file a kind, written by
scripts/refresh-networks), for the verdict rules (verdicts.py, click_verdicts.py)."""

from __future__ import annotations

import bisect
import functools
import ipaddress
from pathlib import Path

RANGES = Path(__file__).with_name("ranges")
# In the order they are asked: Apple's relay runs partly on other companies' networks.
KINDS = ("apple", "microsoft", "gateway", "cloud")


class Ranges:
    """One kind's ranges as sorted, non-overlapping (first, last) address numbers, searched by bisection
    (thousands of ranges: a scan per address would cost milliseconds)."""

    def __init__(self, path: Path) -> None:
        networks = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:
                try:
                    networks.append(ipaddress.ip_network(line))
                except ValueError as error:
                    raise ValueError(f"{path}:{number}: {error}") from None
        self.spans = {version: _merged(sorted((int(net.network_address), int(net.broadcast_address))
                                              for net in networks if net.version == version))
                      for version in (4, 6)}
        self.firsts = {version: [first for first, _ in spans] for version, spans in self.spans.items()}

    def __contains__(self, address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        number = int(address)
        index = bisect.bisect_right(self.firsts[address.version], number) - 1
        return index >= 0 and number <= self.spans[address.version][index][1]

    def __len__(self) -> int:
        return sum(len(spans) for spans in self.spans.values())


def _merged(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted spans with the overlapping and adjacent ones joined (bisection needs them apart)."""
    merged: list[tuple[int, int]] = []
    for first, last in spans:
        if merged and first <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(last, merged[-1][1]))
        else:
            merged.append((first, last))
    return merged


@functools.cache
def ranges_of(kind: str) -> Ranges:
    """One kind's ranges, read on first use."""
    return Ranges(RANGES / f"{kind}.txt")


# Few distinct addresses make most hits (mail proxies, the same reader's opens): each is looked up
# once per process.
@functools.lru_cache(maxsize=4096)
def network_of(ip: str) -> str:
    """The kind of network the address is in (one of KINDS), or "" for any other or no address.
    A truncated address (the /24 or /48 kept by the storage policy) gives the same answer: the lists
    hold nothing narrower."""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    return next((kind for kind in KINDS if address in ranges_of(kind)), "")
