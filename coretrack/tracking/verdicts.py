"""Whose load a hit is (human, mail proxy, privacy prefetch, scanner) and why, and how much of
its address is kept: the rules count_hits applies to every hit, and clicks to its agent."""

from __future__ import annotations

import functools
import ipaddress
from datetime import datetime, timedelta

from .hits import Hit

# Substrings of user agents, lower case, checked in order, with the reason each gives.
_AGENTS = (
    ("mail_proxy", "Google image proxy", ("googleimageproxy", "ggpht.com")),
    ("mail_proxy", "Yahoo image proxy", ("yahoomailproxy",)),
    ("mail_proxy", "Outlook image proxy", ("outlook-image-proxy", "outlookimageproxy")),
    (
        "scanner",
        "security scanner's agent",
        ("bot", "spider", "crawl", "scan", "curl/", "wget/", "python-", "go-http-client", "java/",
         "barracuda", "mimecast", "proofpoint", "symantec", "trendmicro", "libwww"),
    ),
)
# Apple Mail Privacy Protection fetches every image with this bare user agent ...
_PRIVACY_PREFETCH_AGENTS = frozenset({"mozilla/5.0", ""})
# ... from Apple's own address block.
_APPLE_NETWORK = ipaddress.ip_network("17.0.0.0/8")
# A load this soon after the send is a security scanner's (gateways fetch images as the message
# passes them); no person opens a message this fast.
SCANNER_WINDOW = timedelta(seconds=10)
# A load this soon after delivery (the provider's report, else the send) is Apple's prefetch,
# which fetches images as the message reaches the device, before anyone looks at it.
PREFETCH_WINDOW = timedelta(seconds=60)


def classify(hit: Hit, sent_at: datetime | None = None, delivered_at: datetime | None = None) -> tuple[str, str]:
    """The hit's verdict (human | mail_proxy | privacy_prefetch | scanner) and the reason for it,
    from its full address (before the storage policy truncates it), agent and timing.  The one
    place the rules live: count_hits applies it to every hit, from the image, the hit log or a
    provider."""
    if hit.provider_verdict:
        return "mail_proxy", hit.provider_verdict
    verdict = by_agent(hit.user_agent)
    if verdict[0] != "human":
        return verdict
    if _in_apple_network(hit.ip):
        return "privacy_prefetch", "Apple address block (17.0.0.0/8)"
    if sent_at is not None and hit.at - sent_at < SCANNER_WINDOW:
        return "scanner", "loaded within seconds of the send"
    delivered = delivered_at or sent_at
    if delivered is not None and hit.at - delivered < PREFETCH_WINDOW:
        return "privacy_prefetch", "loaded right at delivery"
    return verdict


# Few distinct agents and addresses make most hits (mail proxies, the same reader's opens): each
# is worked out once per process.
@functools.lru_cache(maxsize=4096)
def by_agent(user_agent: str) -> tuple[str, str]:
    agent = user_agent.strip().lower()
    for verdict, reason, needles in _AGENTS:
        if any(needle in agent for needle in needles):
            return verdict, reason
    if agent in _PRIVACY_PREFETCH_AGENTS:
        return "privacy_prefetch", "Apple Mail Privacy Protection's bare agent"
    return "human", ""


@functools.lru_cache(maxsize=4096)
def _in_apple_network(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip) in _APPLE_NETWORK
    except ValueError:
        return False


@functools.lru_cache(maxsize=4096)
def store_ip(ip: str, policy: str) -> str:
    """The address as the privacy option says: full, truncated (/24, /48) or none."""
    if policy == "none":
        return ""
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return ""
    if policy == "full":
        return str(address)
    prefix = 24 if address.version == 4 else 48
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False).network_address)
