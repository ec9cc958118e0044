"""Whose load a hit is (human, mail proxy, privacy prefetch, scanner) and why, and how much of
its address is kept: the rules count_hits applies to every hit, and clicks to its agent."""

from __future__ import annotations

import functools
import ipaddress
from datetime import datetime, timedelta

from .hits import Hit
from .networks import network_of

# Gmail prefetches the images of a recipient with an open session as the message arrives (and samples
# links) with an agent of its own, an Edge of 2015 with "Mozilla/5.0" or "Gmail-content-sampling"
# appended: that is its delivery fetch, and the person's opening comes through its image proxy.
_GMAIL_PREFETCH = "Gmail's prefetch agent"
# Substrings of user agents, lower case, checked in order, with the reason each gives.  A mail
# proxy's name says only whose proxy fetched the image, not whether a person was looking: the timing
# rule of classify decides that.
_AGENTS = (
    ("mail_proxy", "Google image proxy", ("googleimageproxy", "ggpht.com")),
    ("mail_proxy", "Yahoo image proxy", ("yahoomailproxy",)),
    ("mail_proxy", "Outlook image proxy", ("outlook-image-proxy", "outlookimageproxy")),
    ("mail_proxy", _GMAIL_PREFETCH, ("edge/12.246",)),
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
# passes them), unless a mail app's own agent made it: gateways present a browser's agent or none,
# while a person may open a phone notification within seconds.
SCANNER_WINDOW = timedelta(seconds=10)
# A mail app's own agent: Outlook's, Thunderbird's, or Apple's WebKit without a browser's name (Mail
# on a Mac or an iPhone; from Apple's relay it is the privacy prefetch instead).
_MAIL_APPS = ("microsoft outlook", "thunderbird/")
# Yahoo's and Outlook's proxies (and Exchange Online) fetch the image once as the message is
# delivered, whether anyone looks or not, and again each time the person opens it: the proxy's first
# load this soon after delivery (the provider's report, else the send) is the delivery fetch; any
# later load through the proxy is a person opening the message.  Gmail's delivery fetch comes with
# its prefetch agent instead (SparkPost's analysis of it), so every load through Google's proxy
# itself is a person's, even seconds after delivery (a phone notification opened at once).
# A proxy load within PROXY_REPEAT of the one before repeats it (a retry, a refetch as the person
# scrolls): not another opening.
PROXY_FETCH_WINDOW = timedelta(seconds=120)
PROXY_REPEAT = timedelta(seconds=10)
# Microsoft's network is judged as those proxies are: Exchange Online fetches the image as it delivers
# the message, and Outlook on the web and Outlook.com show a person the images through it.
_MICROSOFT = "Microsoft's network, as an image proxy"
_TIMED_PROXIES = (*(reason for _, reason, _ in _AGENTS[:3]), _MICROSOFT)
_GOOGLE = _TIMED_PROXIES[0]
# The reasons a load through a mail proxy is given: count_hits looks up each recipient's latest by them.
PROXY_REASONS = tuple(f"{proxy}: {how}" for proxy in _TIMED_PROXIES for how in (
    "fetched at delivery", "opened by a person", "no delivery time", "repeated within seconds"))
# What every reason of PROXY_REASONS is LIKE: count_hits finds each recipient's latest proxy load by it.
PROXY_REASON_PATTERN = "% image proxy: %"


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
    if reason == _GMAIL_PREFETCH:  # its proxy's delivery fetch: the proxy's next load is the person
        return "mail_proxy", f"{_GOOGLE}: fetched at delivery"
    if verdict == "mail_proxy" and reason in _TIMED_PROXIES:
        return _through_proxy(hit.at, reason, delivered_at or sent_at, last_proxy_load)
    if verdict != "human":
        return verdict, reason
    network, agent = network_of(hit.ip), hit.user_agent.lower()
    browser = any(name in agent for name in _BROWSERS)
    if network == "apple" and not browser:
        return "privacy_prefetch", "Apple Mail Privacy Protection: Apple's relay, Mail's agent"
    if network == "gateway":
        return "scanner", "a mail security gateway's network"
    if network == "microsoft":
        return _through_proxy(hit.at, _MICROSOFT, delivered_at or sent_at, last_proxy_load)
    mail_app = any(name in agent for name in _MAIL_APPS) or ("applewebkit" in agent and not browser)
    if sent_at is not None and hit.at - sent_at < SCANNER_WINDOW and not mail_app:
        return "scanner", "loaded within seconds of the send"
    return verdict, reason


def _through_proxy(at: datetime, proxy: str, delivered: datetime | None,
                   last_proxy_load: datetime | None) -> tuple[str, str]:
    if last_proxy_load is not None and timedelta(0) <= at - last_proxy_load < PROXY_REPEAT:
        return "mail_proxy", f"{proxy}: repeated within seconds"
    if proxy != _GOOGLE:
        if delivered is None:
            return "mail_proxy", f"{proxy}: no delivery time"
        if at - delivered < PROXY_FETCH_WINDOW and last_proxy_load is None:
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
