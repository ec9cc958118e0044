"""Writes the address lists the verdict rules judge by (coretrack/tracking/ranges/*.txt) from the
lists the providers publish.  Run through scripts/refresh-networks.

Each source is downloaded from its provider, or read from DIR/<name> with --from DIR (a machine
without the network, a mirror, or a list whose download page has no fixed address).  Whatever the
format (Apple's CSV, AWS's, Google's or Azure's JSON, one range a line), every CIDR in it is taken.
The ranges are widened to /24 (IPv4) and /48 (IPv6) and collapsed: the storage policy keeps a
truncated /24 or /48 address, and a stored address must be judged as its full one was.
The gateway list is transcribed by hand from the vendors' pages (they publish no files) and is
left as it is.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
RANGES = Path(__file__).resolve().parents[2] / "coretrack" / "tracking" / "ranges"
WIDEST_PREFIX = {4: 24, 6: 48}
_CIDR_CHARACTERS = frozenset("0123456789abcdefABCDEF.:/")


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    url: str  # the file, or the page it is downloaded from when it has no fixed address
    downloadable: bool = True


SOURCES = (
    Source("apple-relay", "apple", "https://mask-api.icloud.com/egress-ip-ranges.csv"),
    Source("microsoft-azure", "microsoft",
           "https://www.microsoft.com/en-us/download/details.aspx?id=56519 (ServiceTags_Public_*.json)", False),
    Source("microsoft-public", "microsoft",
           "https://www.microsoft.com/en-us/download/details.aspx?id=53602 (msft-public-ips.csv)", False),
    Source("microsoft-365", "microsoft",
           "https://endpoints.office.com/endpoints/worldwide?clientrequestid=b10c5ed1-bad1-445f-b386-b919946339a7"),
    Source("amazon", "cloud", "https://ip-ranges.amazonaws.com/ip-ranges.json"),
    Source("google", "cloud", "https://www.gstatic.com/ipranges/goog.json"),
    Source("google-cloud", "cloud", "https://www.gstatic.com/ipranges/cloud.json"),
    Source("digitalocean", "cloud", "https://digitalocean.com/geo/google.csv"),
    Source("linode", "cloud", "https://geoip.linode.com/"),
    Source("vultr", "cloud", "https://geofeed.constant.com/?text"),
    Source("oracle", "cloud", "https://docs.oracle.com/en-us/iaas/tools/public_ip_ranges.json"),
)
# Kept in every refresh: Apple's own registered block (ARIN), which Mail's fetches came from before
# the relay, is in no published relay list.
KEPT = {"apple": ["17.0.0.0/8"]}
HEADERS = {
    "apple": "Apple's own block and the iCloud Private Relay egress ranges, which Mail Privacy Protection\n"
             "fetches through (named by https://developer.apple.com/support/prepare-your-network-for-icloud-private-relay/).",
    "microsoft": "Microsoft's published ranges (Azure Service Tags, its public IP space, Microsoft 365):\n"
                 "Defender's Safe Links and its detonation fetch from there.  Judged for clicks only:\n"
                 "Outlook's own image proxy is Microsoft's too.",
    "cloud": "Cloud data centres that sandboxes and link checkers run in.",
}


def cidrs_in(text: str) -> Iterator[Network]:
    """Every CIDR or address in a provider's file: JSON (any string value anywhere), or CSV and
    plain lines (the first field of each)."""
    stripped = text.lstrip()
    if stripped.startswith(("{", "[")):
        yield from _cidrs(_strings(json.loads(stripped)))
    else:
        yield from _cidrs(line.split(",", 1)[0] for line in text.splitlines())


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _cidrs(candidates: Iterable[str]) -> Iterator[Network]:
    for candidate in candidates:
        candidate = candidate.strip()
        # An address has dots or colons (a bare number is a token or a count, not an address).
        if not candidate or set(candidate) - _CIDR_CHARACTERS or not set(candidate) & {".", ":"}:
            continue
        try:
            network = ipaddress.ip_network(candidate, strict=False)
        except ValueError:
            continue
        if network.is_global:  # some feeds carry documentation or private ranges
            yield network


def widened(networks: Iterable[Network]) -> list[Network]:
    """The networks widened to at least /24 or /48 and collapsed, IPv4 first."""
    by_version: dict[int, list[Network]] = {4: [], 6: []}
    for network in networks:
        prefix = min(network.prefixlen, WIDEST_PREFIX[network.version])
        by_version[network.version].append(network.supernet(new_prefix=prefix))
    return [*ipaddress.collapse_addresses(by_version[4]),  # type: ignore[arg-type]
            *ipaddress.collapse_addresses(by_version[6])]  # type: ignore[arg-type]


def read_source(source: Source, folder: Path | None, offline: bool) -> str | None:
    """The source's text, or None when --offline and it is not in the folder."""
    if folder is not None and (folder / source.name).is_file():
        return (folder / source.name).read_text(encoding="utf-8", errors="replace")
    if offline:
        return None
    if not source.downloadable:
        raise SystemExit(f"{source.name}: download it from {source.url} into a folder and give --from FOLDER")
    request = urllib.request.Request(source.url, headers={"User-Agent": "coretrack refresh-networks"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return str(response.read().decode("utf-8", errors="replace"))


def write(kind: str, networks: list[Network], sources: list[str], note: str, folder: Path) -> None:
    lines = [f"# {line}" for line in HEADERS[kind].splitlines()]
    lines += [f"# Written by scripts/refresh-networks on {date.today().isoformat()} from:"]
    lines += [f"#   {source}" for source in sources]
    if note:
        lines.append(f"#   ({note})")
    lines.append("# Widened to /24 and /48 and collapsed: a truncated stored address is judged as its full one.")
    lines += [str(network) for network in networks]
    (folder / f"{kind}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(arguments: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="scripts/refresh-networks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="folder", type=Path, help="read each source from FOLDER/<name> when there")
    parser.add_argument("--to", type=Path, default=RANGES, help="where the lists are written (default: the package's)")
    parser.add_argument("--offline", action="store_true",
                        help="take only the sources found in the --from folder (a mirror may merge several in one)")
    parser.add_argument("--note", default="", help="where the files came from, written into each list")
    options = parser.parse_args(arguments)
    for kind in HEADERS:
        sources = [source for source in SOURCES if source.kind == kind]
        networks = [ipaddress.ip_network(cidr) for cidr in KEPT.get(kind, [])]
        taken = []
        for source in sources:
            text = read_source(source, options.folder, options.offline)
            if text is None:
                continue
            found = list(cidrs_in(text))
            if not found:
                raise SystemExit(f"{source.name}: no address ranges in it")
            networks += found
            taken.append(source.url)
        if not taken:
            raise SystemExit(f"{kind}: none of its sources given")
        result = widened(networks)
        write(kind, result, taken, options.note, options.to)
        print(f"{kind}: {len(result)} ranges from {len(networks)}")


if __name__ == "__main__":
    main(sys.argv[1:])
