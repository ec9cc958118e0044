"""The address lists the verdict rules judge by: written by scripts/refresh-networks from what the
providers publish (each in its own format), widened so that a truncated stored address is judged as
its full one, and looked up by kind."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

from coretrack.tracking import networks
from coretrack.tracking.networks import Ranges, network_of
from coretrack.tracking.verdicts import store_ip

REFRESH = Path(__file__).resolve().parents[1] / "scripts" / "lib" / "network_lists.py"

# A few lines of each provider's file, in its own format.
SOURCES = {
    "apple-relay": "172.224.226.0/26,US,US-CA,Los Angeles,\n172.224.226.64/28,US,US-CA,Los Angeles,\n"
                   "2a02:26f7:b3c0:4000::/64,GB,GB-EN,London,\n",
    "microsoft-azure": json.dumps({"changeNumber": 321, "values": [{"name": "AzureCloud", "properties": {
        "changeNumber": 7, "addressPrefixes": ["20.150.0.0/15", "2603:1000::/40"]}}]}),
    "microsoft-public": "40.64.0.0/10,US,,,\n",
    "microsoft-365": json.dumps([{"id": 10, "serviceArea": "Exchange", "ips": ["40.92.0.0/15", "104.47.0.0/17"]}]),
    "amazon": json.dumps({"syncToken": "1733000000", "createDate": "2026-08-22-10-00-00", "prefixes": [
        {"ip_prefix": "3.5.140.0/22", "region": "ap-northeast-2"}, {"ip_prefix": "3.5.144.0/22"}],
        "ipv6_prefixes": [{"ipv6_prefix": "2600:1f14::/35"}]}),
    "google": json.dumps({"syncToken": "1", "prefixes": [{"ipv4Prefix": "66.249.80.0/20"}]}),
    "google-cloud": json.dumps({"prefixes": [{"ipv4Prefix": "34.64.0.0/10", "service": "Google Cloud",
                                              "scope": "us-central1"}]}),
    "digitalocean": "159.203.0.0/16,US,US-NJ,North Bergen,07047\n",
    "linode": "# geofeed\n172.232.0.0/13,US,US-TX,Dallas,\n",
    # Some feeds carry documentation or private ranges: they are no one's data centre.
    "vultr": "198.51.100.0/24,US,,,\n10.0.0.0/8,US,,,\n45.32.0.0/16,US,,,\n",
    "oracle": json.dumps({"regions": [{"region": "us-ashburn-1", "cidrs": [{"cidr": "129.213.0.0/16"}]}]}),
}


def lines_of(path: Path) -> list[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line and not line.startswith("#")]


@pytest.fixture
def refreshed(tmp_path):
    sources, lists = tmp_path / "sources", tmp_path / "ranges"
    sources.mkdir()
    lists.mkdir()
    for name, text in SOURCES.items():
        (sources / name).write_text(text, encoding="utf-8")
    done = subprocess.run([sys.executable, str(REFRESH), "--from", str(sources), "--to", str(lists),
                           "--note", "test files"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return lists


def test_the_refresh_takes_every_range_of_each_provider_s_format_widened_to_a_stored_address_s_prefix(refreshed):
    assert lines_of(refreshed / "apple.txt") == ["17.0.0.0/8", "172.224.226.0/24", "2a02:26f7:b3c0::/48"]
    assert lines_of(refreshed / "microsoft.txt") == ["20.150.0.0/15", "40.64.0.0/10", "104.47.0.0/17",
                                                    "2603:1000::/40"]
    cloud = lines_of(refreshed / "cloud.txt")
    assert cloud == ["3.5.140.0/22", "3.5.144.0/22", "34.64.0.0/10", "45.32.0.0/16", "66.249.80.0/20",
                     "129.213.0.0/16", "159.203.0.0/16", "172.232.0.0/13", "2600:1f14::/35"]
    header = (refreshed / "apple.txt").read_text(encoding="utf-8")
    assert "https://mask-api.icloud.com/egress-ip-ranges.csv" in header and "test files" in header


def test_a_list_that_cannot_be_downloaded_is_named_with_the_page_to_fetch_it_from(tmp_path):
    (tmp_path / "apple-relay").write_text(SOURCES["apple-relay"], encoding="utf-8")
    done = subprocess.run([sys.executable, str(REFRESH), "--from", str(tmp_path), "--to", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "microsoft-azure: download it from https://www.microsoft.com/en-us/download/details.aspx?id=56519" \
        in done.stderr
    assert not (tmp_path / "microsoft.txt").exists()


def test_an_address_is_found_in_its_kind_s_list_and_its_truncated_form_in_the_same(refreshed):
    ranges = {kind: Ranges(refreshed / f"{kind}.txt") for kind in ("apple", "microsoft", "cloud")}
    for kind, inside, outside in (("apple", "172.224.226.200", "172.224.227.1"),
                                  ("apple", "2a02:26f7:b3c0:9999::1", "2a02:26f7:b3c1::1"),
                                  ("microsoft", "40.92.17.4", "41.0.0.1"),
                                  ("cloud", "172.239.255.254", "172.240.0.1")):
        assert ipaddress.ip_address(inside) in ranges[kind], inside
        assert ipaddress.ip_address(store_ip(inside, "truncated")) in ranges[kind], inside
        assert ipaddress.ip_address(outside) not in ranges[kind], outside


def test_the_shipped_lists_name_each_provider_s_published_ranges():
    assert {path.stem for path in networks.RANGES.glob("*.txt")} == set(networks.KINDS)
    for kind in networks.KINDS:
        assert len(networks.ranges_of(kind)) >= 10, kind
    # Apple's relay as it publishes it: Akamai's, Cloudflare's and Fastly's parts, IPv4 and IPv6.
    for address in ("17.58.1.1", "104.28.28.7", "172.224.226.9", "146.75.180.33"):
        assert network_of(address) == "apple", address
    assert any(first >> 96 == 0x2a0226f7 for first, _ in networks.ranges_of("apple").spans[6])
    assert network_of("40.107.22.9") == "microsoft"  # Exchange Online Protection
    assert network_of("205.139.110.20") == "gateway"  # Mimecast
    assert network_of("52.13.125.21") == "cloud"  # AWS
    # People: a home line, a mobile network, documentation addresses, nothing at all.
    for address in ("73.12.34.56", "172.56.10.10", "198.51.100.7", "", "not an address"):
        assert network_of(address) == "", address
