"""Whose load a hit is (human, mail proxy, privacy prefetch, scanner) and why, and how much of
its address is kept: the rules count_hits applies to every hit, and clicks to its agent."""

from __future__ import annotations

import functools
import ipaddress
from datetime import datetime, timedelta

from .hits import Hit
from .networks import network_of

# Substrings of user agents, lower case, checked in order, with the reason each gives.  A mail
# proxy's name says only whose proxy fetched the image, not whether a person was looking: the timing
# rule of classify decides that.
_AGENTS = (
    ("mail_proxy", "Google image proxy", ("googleimageproxy", "ggpht.com")),
    ("mail_proxy", "Yahoo image proxy", ("yahoomailproxy",)),
    ("mail_proxy", "Outlook image proxy", ("outlook-image-proxy", "outlookimageproxy")),
    ("scanner", "link preview bot", ("skypeuripreview", "preview/", "slackbot", "slack-imgproxy",
                                     "facebookexternalhit", "whatsapp", "discordbot", "telegrambot")),
    ("scanner", "headless browser", ("headless", "phantomjs", "puppeteer", "playwright", "selenium")),
    (
        "scanner",
        "security scanner's agent",
        ("bot", "spider", "crawl", "scan", "curl/", "wget/", "python-", "go-http-client", "java/",
         "barracuda", "mimecast", "proofpoint", "symantec", "trendmicro", "libwww"),
    ),
)
# Apple Mail Privacy Protection fetches every image with this bare user agent ...
_PRIVACY_PREFETCH_AGENTS = frozenset({"mozilla/5.0", ""})
# ... or with Mail's own WebKit agent, from Apple's relay (ranges/apple.txt).  A browser's agent from
# there is a person browsing through iCloud Private Relay (Safari), not Mail's prefetch.
_BROWSERS = ("safari/", "chrome/", "firefox/", "edg/")
# A load this soon after the send is a security scanner's (gateways fetch images as the message
# passes them); no person opens a message this fast.
SCANNER_WINDOW = timedelta(seconds=10)
# Gmail's and Yahoo's proxies fetch the image once as the message is delivered, whether anyone
# looks or not, and again each time the person opens it: the proxy's first load this soon after
# delivery (the provider's report, else the send), and its repeats within PROXY_REPEAT, are the
# delivery fetch; any later load through the proxy is a person opening the message.
PROXY_FETCH_WINDOW = timedelta(seconds=120)
PROXY_REPEAT = timedelta(seconds=10)
# The reasons a load through a mail proxy is given: count_hits looks up each recipient's latest by them.
PROXY_REASONS = tuple(f"{reason}: {how}" for _, reason, _ in _AGENTS[:3]
                      for how in ("fetched at delivery", "opened by a person", "no delivery time"))


def classify(hit: Hit, sent_at: datetime | None = None, delivered_at: datetime | None = None,
             last_proxy_load: datetime | None = None) -> tuple[str, str]:
    """The hit's verdict (human | mail_proxy | privacy_prefetch | scanner) and the reason for it,
    from its full address (before the storage policy truncates it), agent and timing, and the time
    of the recipient's latest earlier load through a mail proxy.  The one place the rules live:
    count_hits applies it to every hit, from the image, the hit log or a provider (Loads keeps the
    latest proxy load as a recipient's hits are judged in time order)."""
    if hit.provider_verdict:
        return "mail_proxy", hit.provider_verdict
    verdict, reason = by_agent(hit.user_agent)
    if verdict == "mail_proxy":
        return _through_proxy(hit.at, reason, delivered_at or sent_at, last_proxy_load)
    if verdict != "human":
        return verdict, reason
    network = network_of(hit.ip)
    if network == "apple" and not any(browser in hit.user_agent.lower() for browser in _BROWSERS):
        return "privacy_prefetch", "Apple Mail Privacy Protection: Apple's relay, Mail's agent"
    if network == "gateway":
        return "scanner", "a mail security gateway's network"
    if sent_at is not None and hit.at - sent_at < SCANNER_WINDOW:
        return "scanner", "loaded within seconds of the send"
    return verdict, reason


def _through_proxy(at: datetime, proxy: str, delivered: datetime | None,
                   last_proxy_load: datetime | None) -> tuple[str, str]:
    if delivered is None:
        return "mail_proxy", f"{proxy}: no delivery time"
    repeat = last_proxy_load is not None and timedelta(0) <= at - last_proxy_load < PROXY_REPEAT
    if at - delivered < PROXY_FETCH_WINDOW and (last_proxy_load is None or repeat):
        return "mail_proxy", f"{proxy}: fetched at delivery"
    return "human", f"{proxy}: opened by a person"


class Loads:
    """One recipient's loads, judged in time order by classify: it keeps their latest load through a
    mail proxy (given the one stored before, if any) for the timing rule."""

    __slots__ = ("sent_at", "delivered_at", "last_proxy_load")

    def __init__(self, sent_at: datetime | None, delivered_at: datetime | None,
                 last_proxy_load: datetime | None = None) -> None:
        self.sent_at, self.delivered_at, self.last_proxy_load = sent_at, delivered_at, last_proxy_load

    def judge(self, hit: Hit) -> tuple[str, str]:
        verdict, reason = classify(hit, self.sent_at, self.delivered_at, self.last_proxy_load)
        if reason in PROXY_REASONS and (self.last_proxy_load is None or hit.at > self.last_proxy_load):
            self.last_proxy_load = hit.at
        return verdict, reason


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
