"""An independent held-out set for the human-or-machine rules: outside2.jsonl (issue #22).

Built from public descriptions of how mail proxies, security gateways, sandboxes, link previews and
people load a tracking image or follow a tracked link (README.md names the source of every class),
without reference to the rules it measures.  Deterministic: run `python generate.py` here to rewrite
outside2.jsonl byte for byte.

One line is one recipient of one message: delivered_after (seconds from the send to the receiving
MX's acceptance), delivery_reported (whether the sending MTA told us), and the recipient's events in
time order, each labelled human or machine with the class that produced it.  Clicks carry the link's
position in the message (LINKS) and their order among the recipient's clicks.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Callable
from pathlib import Path

SEED = 7_2026_1207  # this set's own seed
OUT = Path(__file__).resolve().parent / "outside2.jsonl"

# The message's links in document order; people mostly follow the call to action.
LINKS = ("logo", "cta", "article_1", "article_2", "event", "view_online", "preferences", "unsubscribe")
PERSON_LINK_WEIGHTS = (3, 40, 18, 12, 10, 4, 2, 3)

# Address blocks, each from its owner's published list or registry record (README.md).
NETS: dict[str, tuple[str, ...]] = {
    # iCloud Private Relay egress (Apple's egress-ip-ranges.csv, as mirrored by rezmoss/cloud-provider-ip-addresses)
    "apple_relay": ("172.225.58.224/27", "172.225.79.128/27", "172.225.180.96/28", "172.226.43.64/26",
                    "172.224.230.160/28", "172.225.100.32/28", "172.225.136.192/28", "172.225.221.0/28",
                    "172.224.226.0/27", "146.75.132.68/31", "146.75.168.138/31", "140.248.40.150/31",
                    "2a02:26f7:c740:4000::/64", "2a04:4e41:12a9::/48"),
    # Google: google-proxy-66-102-*.google.com (ARIN NET-66-102-0-0-1) and the 66.249.80/20 proxies
    "google_proxy": ("66.102.0.0/20", "66.249.80.0/20"),
    "google_other": ("74.125.208.0/20", "64.233.172.0/22", "209.85.238.0/24"),
    # Yahoo (ARIN: Yahoo's 98.136.0.0/14 and 74.6.0.0/16)
    "yahoo": ("98.136.0.0/16", "98.137.0.0/16", "74.6.0.0/16"),
    # Microsoft 365 (Office 365 endpoints list: Exchange Online Protection and Exchange Online)
    "ms_eop": ("40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17", "2a01:111:f400::/48"),
    "ms_exo": ("52.96.0.0/12", "40.96.0.0/13", "132.245.0.0/16", "2603:1036::/36", "2603:1026::/36"),
    "ms_teams": ("52.112.0.0/14",),
    # Azure (the address range an Azure Virtual Desktop or Windows 365 session leaves from)
    "azure": ("20.38.0.0/16", "20.42.0.0/16", "20.83.0.0/16", "51.104.0.0/15"),
    # Security gateways' published ranges
    "proofpoint": ("148.163.128.0/19", "67.231.144.0/20"),
    "mimecast": ("205.139.110.0/24", "207.211.30.0/24", "91.220.42.0/24", "195.130.217.0/24", "146.101.78.0/24"),
    "barracuda": ("64.235.144.0/20", "209.222.80.0/21"),
    # Cloud providers a sandbox or a scanner's fetcher runs in
    "aws": ("3.80.0.0/12", "44.192.0.0/11", "54.144.0.0/14", "18.204.0.0/14"),
    "gcp": ("34.64.0.0/11", "35.184.0.0/13"),
    "digitalocean": ("159.203.0.0/16", "167.99.0.0/16"),
    "cogent": ("38.0.0.0/8",),
    # Corporate secure web gateways in the cloud (Zscaler's and Netskope's published egress ranges)
    "zscaler": ("165.225.0.0/17", "136.226.0.0/16", "147.161.128.0/17"),
    "netskope": ("163.116.128.0/17",),
    # People: residential and mobile ISPs (registry allocations)
    "residential": ("73.0.0.0/8", "86.128.0.0/10", "79.192.0.0/10", "90.0.0.0/9", "24.0.0.0/12",
                    "2601::/20", "2003::/19", "2a01:cb00::/24"),
    "mobile": ("174.192.0.0/10", "172.56.0.0/14", "107.77.192.0/18", "2607:fb90::/32"),
    # A company's own egress: documentation ranges stand for networks no list names
    "office": ("198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"),
}

UA = {
    "chrome_win": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/{v}.0.0.0 Safari/537.36",
    "edge_win": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "Chrome/{v}.0.0.0 Safari/537.36 Edg/{v}.0.0.0",
    "firefox_win": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0",
    "safari_mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                  "Version/17.5 Safari/605.1.15",
    "chrome_mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/{v}.0.0.0 Safari/537.36",
    "safari_iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                     "(KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "chrome_android": "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/{v}.0.0.0 Mobile Safari/537.36",
    "apple_mail_iphone": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 "
                         "(KHTML, like Gecko) Mobile/15E148",
    "apple_mail_mac": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)",
    "mpp_bare": "Mozilla/5.0",
    "outlook_desktop": "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.{b}; Pro)",
    "thunderbird": "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.{t}.0",
    "google_image_proxy": "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
    "gmail_prefetch": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                      "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0",
    "yahoo_proxy": "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html",
    "outlook_com_preview": "Mozilla/5.0 (compatible; MSIE 10.0; Windows NT 6.2; WOW64; Trident/6.0)",
    "ms_office_probe": "Mozilla/4.0 (compatible; ms-office; MSOffice 16)",
    "slackbot": "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "teams_preview": "SkypeUriPreview Preview/0.5",
    "headless": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                "HeadlessChrome/{v}.0.0.0 Safari/537.36",
    "python_requests": "python-requests/2.{r}.0",
    "curl": "curl/8.{c}.0",
}

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0


class Recipient:
    """One recipient's message: its delivery and the events it drew, in the set's line format."""

    def __init__(self, rng: random.Random, delivered_after: float, reported: bool = True) -> None:
        self.rng = rng
        self.delivered_after = round(delivered_after, 1)
        self.reported = reported
        self.events: list[dict] = []

    def _event(self, kind: str, at: float, ua: str, ip: str, label: str, cls: str, method: str) -> dict:
        since_send = round(self.delivered_after + at, 1)
        event = {"kind": kind, "method": method, "user_agent": ua, "ip": ip, "since_send": since_send,
                 "since_delivery": round(since_send - self.delivered_after, 1), "label": label, "class": cls}
        self.events.append(event)
        return event

    def open(self, at: float, ua: str, ip: str, label: str, cls: str, method: str = "GET") -> None:
        """An image load `at` seconds after delivery."""
        self._event("open", at, ua, ip, label, cls, method)

    def click(self, at: float, link: int, ua: str, ip: str, label: str, cls: str, method: str = "GET") -> None:
        """A tracked link followed `at` seconds after delivery."""
        self._event("click", at, ua, ip, label, cls, method)["link"] = link

    def line(self, number: int) -> dict:
        events = sorted(self.events, key=lambda e: e["since_send"])
        order = 0
        for event in events:
            if event["kind"] == "click":
                event["order"] = order
                order += 1
        return {"recipient": number, "delivered_after": self.delivered_after,
                "delivery_reported": self.reported, "events": events}


def ip(rng: random.Random, net: str) -> str:
    """An address inside one of the named blocks, never its network or broadcast address."""
    block = ipaddress.ip_network(rng.choice(NETS[net]))
    span = block.num_addresses
    offset = rng.randrange(1, span - 1) if span > 2 else rng.randrange(span)
    return str(block.network_address + offset)


def ua(rng: random.Random, name: str) -> str:
    return UA[name].format(v=rng.choice((124, 126, 128, 130, 131)), f=rng.choice((128, 131, 133)),
                           b=rng.choice((17928, 18025, 18129)), t=rng.randrange(1, 6),
                           r=rng.choice((28, 31, 32)), c=rng.randrange(4, 11))


def person_link(rng: random.Random) -> int:
    return rng.choices(range(len(LINKS)), PERSON_LINK_WEIGHTS)[0]


def reading_delay(rng: random.Random) -> float:
    """When a person gets to a message: minutes for most, hours or days for many (a long tail)."""
    bucket = rng.random()
    if bucket < 0.35:
        return rng.uniform(2 * MINUTE, 40 * MINUTE)
    if bucket < 0.75:
        return rng.uniform(40 * MINUTE, 10 * HOUR)
    return rng.uniform(10 * HOUR, 6 * DAY)


def delivery(rng: random.Random) -> tuple[float, bool]:
    """The MX's acceptance: seconds after the send, now and then minutes (queues, greylisting)."""
    after = rng.uniform(0.8, 12) if rng.random() < 0.9 else rng.uniform(4 * MINUTE, 16 * MINUTE)
    return after, rng.random() < 0.85


def person_device(rng: random.Random) -> tuple[str, str]:
    """A person's browser and the address it leaves from, as people read at home or on a phone."""
    if rng.random() < 0.5:
        return ua(rng, rng.choice(("safari_iphone", "chrome_android"))), ip(rng, "mobile")
    return ua(rng, rng.choice(("chrome_win", "edge_win", "safari_mac", "chrome_mac", "firefox_win"))), \
        ip(rng, "residential")


def person_clicks(r: Recipient, start: float, agent: str, address: str, cls: str = "person_click") -> float:
    """A person following one link, sometimes a second one after reading the first page."""
    rng = r.rng
    r.click(start, person_link(rng), agent, address, "human", cls)
    at = start
    if rng.random() < 0.25:
        at += rng.uniform(40, 15 * MINUTE)
        r.click(at, person_link(rng), agent, address, "human", cls)
    return at


# --- scenarios: each draws one recipient ---------------------------------------------------------

def gmail_reader(rng: random.Random) -> Recipient:
    """Gmail: the proxy loads the image when the person opens; caches it; the click is the person's."""
    r = Recipient(rng, *delivery(rng))
    at = reading_delay(rng)
    r.open(at, ua(rng, "google_image_proxy"), ip(rng, "google_proxy"), "human", "gmail_proxy_open")
    if rng.random() < 0.3:  # the cached copy expired and the person came back to the message
        r.open(at + rng.uniform(1 * DAY, 4 * DAY), ua(rng, "google_image_proxy"), ip(rng, "google_proxy"),
               "human", "gmail_proxy_reopen")
    if rng.random() < 0.45:
        agent, address = person_device(rng)
        person_clicks(r, at + rng.uniform(6, 4 * MINUTE), agent, address)
    return r


def gmail_notification_reader(rng: random.Random) -> Recipient:
    """Gmail app on a phone: the person taps the notification within seconds of delivery."""
    r = Recipient(rng, rng.uniform(0.8, 6), True)
    at = rng.uniform(4, 30)
    r.open(at, ua(rng, "google_image_proxy"), ip(rng, "google_proxy"), "human", "gmail_proxy_open_quick")
    if rng.random() < 0.5:
        person_clicks(r, at + rng.uniform(5, 60), ua(rng, "chrome_android"), ip(rng, "mobile"))
    return r


def gmail_prefetch(rng: random.Random) -> Recipient:
    """Gmail with a session open: its prefetch agent loads images on arrival; the person opens later, or never."""
    r = Recipient(rng, *delivery(rng))
    r.open(rng.uniform(0.5, 8), UA["gmail_prefetch"], ip(rng, rng.choice(("google_proxy", "google_other"))),
           "machine", "gmail_prefetch")
    if rng.random() < 0.7:
        at = rng.uniform(20, 3 * MINUTE) if rng.random() < 0.4 else reading_delay(rng)
        r.open(at, ua(rng, "google_image_proxy"), ip(rng, "google_proxy"), "human", "gmail_proxy_open")
        if rng.random() < 0.4:
            agent, address = person_device(rng)
            person_clicks(r, at + rng.uniform(5, 3 * MINUTE), agent, address)
    return r


def apple_mpp(rng: random.Random) -> Recipient:
    """Apple Mail with Mail Privacy Protection: the relay loads every image when the message reaches
    the device (seconds if it is online and charged, else hours), whether or not it is read."""
    r = Recipient(rng, *delivery(rng))
    at = rng.uniform(3, 5 * MINUTE) if rng.random() < 0.6 else rng.uniform(30 * MINUTE, 14 * HOUR)
    agent = UA["mpp_bare"] if rng.random() < 0.4 else UA["apple_mail_mac"]
    r.open(at, agent, ip(rng, "apple_relay"), "machine", "apple_mpp_fetch")
    if rng.random() < 0.35:  # a second device signed in to the same mailbox
        r.open(at + rng.uniform(1 * MINUTE, 8 * HOUR), agent, ip(rng, "apple_relay"), "machine", "apple_mpp_fetch")
    if rng.random() < 0.45:
        click_at = at + reading_delay(rng)
        if rng.random() < 0.5:  # Safari with iCloud Private Relay: the person's click leaves from the relay
            person_clicks(r, click_at, ua(rng, "safari_iphone"), ip(rng, "apple_relay"), "person_click_private_relay")
        else:
            person_clicks(r, click_at, ua(rng, "safari_iphone"), ip(rng, "mobile"))
    return r


def apple_mail_notification(rng: random.Random) -> Recipient:
    """Apple Mail without the protection: the phone loads the image when the person opens the
    message, often straight from the notification."""
    r = Recipient(rng, rng.uniform(0.8, 8), rng.random() < 0.9)
    address = ip(rng, "mobile")
    at = rng.uniform(3, 30)
    r.open(at, UA["apple_mail_iphone"], address, "human", "person_notification_open")
    if rng.random() < 0.3:  # read again later on the same phone
        r.open(at + rng.uniform(10 * MINUTE, 20 * HOUR), UA["apple_mail_iphone"], ip(rng, "mobile"), "human",
               "person_reopen")
    if rng.random() < 0.5:
        person_clicks(r, at + rng.uniform(4, 90), ua(rng, "safari_iphone"), address)
    return r


def outlook_desktop_office(rng: random.Random) -> Recipient:
    """Outlook on Windows in an office: images load when the person opens (after allowing them);
    links open in the default browser from the same egress."""
    r = Recipient(rng, *delivery(rng))
    network = rng.choice(("office", "office", "zscaler", "netskope"))
    address = ip(rng, network)
    cls = "person_outlook_desktop" if network == "office" else "person_cloud_proxy"
    at = reading_delay(rng)
    r.open(at, ua(rng, "outlook_desktop"), address, "human", cls)
    if rng.random() < 0.5:
        person_clicks(r, at + rng.uniform(5, 5 * MINUTE), ua(rng, rng.choice(("chrome_win", "edge_win"))), address,
                      "person_click" if cls == "person_outlook_desktop" else "person_cloud_proxy")
    return r


def thunderbird_reader(rng: random.Random) -> Recipient:
    """Thunderbird with remote content allowed for the sender: a load at each reading."""
    r = Recipient(rng, *delivery(rng))
    address = ip(rng, "residential")
    at = reading_delay(rng)
    r.open(at, ua(rng, "thunderbird"), address, "human", "person_thunderbird_open")
    if rng.random() < 0.4:
        person_clicks(r, at + rng.uniform(8, 3 * MINUTE), ua(rng, "firefox_win"), address)
    return r


def yahoo_reader(rng: random.Random) -> Recipient:
    """Yahoo/AOL: the proxy fetches the image when the person opens; in 2018 it retried up to 4 times."""
    r = Recipient(rng, *delivery(rng))
    at = reading_delay(rng)
    address = ip(rng, "yahoo")
    r.open(at, UA["yahoo_proxy"], address, "human", "yahoo_proxy_open")
    if rng.random() < 0.3:
        for _ in range(rng.randint(1, 3)):
            at += rng.uniform(0.5, 6)
            r.open(at, UA["yahoo_proxy"], ip(rng, "yahoo"), "machine", "yahoo_proxy_retry")
    if rng.random() < 0.35:
        agent, client = person_device(rng)
        person_clicks(r, at + rng.uniform(10, 4 * MINUTE), agent, client)
    return r


def m365_tenant(rng: random.Random) -> Recipient:
    """Microsoft 365 with Defender: at delivery a Microsoft address loads the image and follows a link
    with a browser's agent; the person reads later (Outlook on the web through Microsoft's image
    proxy, or Outlook desktop), and Safe Links checks the URL right at the person's click."""
    r = Recipient(rng, *delivery(rng))
    scan_at = rng.uniform(2, 90)
    if rng.random() < 0.75:
        r.open(scan_at, ua(rng, rng.choice(("chrome_win", "edge_win"))), ip(rng, rng.choice(("ms_eop", "ms_exo"))),
               "machine", "defender_delivery_scan")
    if rng.random() < 0.8:  # one link, once, shortly after delivery
        r.click(scan_at + rng.uniform(0.5, 40), rng.choice((1, 1, 2, 0)),
                ua(rng, rng.choice(("chrome_win", "edge_win"))), ip(rng, rng.choice(("ms_eop", "ms_exo"))),
                "machine", "safelinks_delivery_click")
    if rng.random() < 0.8:
        at = reading_delay(rng)
        web = rng.random() < 0.45
        office = ip(rng, rng.choice(("office", "office", "zscaler")))
        if web:  # Outlook on the web: the image arrives through Microsoft's proxy
            r.open(at, ua(rng, "edge_win"), ip(rng, "ms_exo"), "human", "owa_proxy_open")
        else:
            r.open(at, ua(rng, "outlook_desktop"), office, "human", "person_outlook_desktop")
        if rng.random() < 0.6:
            click_at = at + rng.uniform(5, 4 * MINUTE)
            link = person_link(rng)
            r.click(click_at, link, ua(rng, "edge_win"), office, "human", "person_click")
            if rng.random() < 0.6:  # Safe Links' time-of-click check, just before or after
                r.click(click_at + rng.choice((-1, 1)) * rng.uniform(0.1, 2.0), link,
                        rng.choice((UA["ms_office_probe"], ua(rng, "chrome_win"))), ip(rng, "ms_exo"),
                        "machine", "safelinks_time_of_click")
            if rng.random() < 0.35:  # an automated investigation re-crawls the clicked URL hours later
                r.click(click_at + rng.uniform(1 * HOUR, 9 * HOUR), link, ua(rng, "chrome_win"),
                        ip(rng, rng.choice(("ms_eop", "azure"))), "machine", "defender_air_rescan")
    return r


def m365_sandbox(rng: random.Random) -> Recipient:
    """Defender's sandbox rendering the message: the image and every link within ten seconds,
    within a minute of delivery, from Microsoft's network."""
    r = Recipient(rng, *delivery(rng))
    at = rng.uniform(5, 60)
    agent = ua(rng, "chrome_win")
    r.open(at, agent, ip(rng, "ms_eop"), "machine", "ms_sandbox_render")
    for link in rng.sample(range(len(LINKS)), len(LINKS)):
        at += rng.uniform(0.1, 1.3)
        r.click(at, link, agent, ip(rng, rng.choice(("ms_eop", "ms_exo"))), "machine", "ms_sandbox_all_links")
    if rng.random() < 0.4:
        read = at + reading_delay(rng)
        office = ip(rng, "office")
        r.open(read, ua(rng, "outlook_desktop"), office, "human", "person_outlook_desktop")
        if rng.random() < 0.5:
            person_clicks(r, read + rng.uniform(5, 3 * MINUTE), ua(rng, "edge_win"), office)
    return r


GATEWAYS = {"proofpoint": "proofpoint_scan", "mimecast": "mimecast_scan", "barracuda": "barracuda_scan"}


def gateway_sweep(r: Recipient, net: str, cls: str, at: float) -> float:
    """A gateway's sweep: the image and every link (unsubscribe too), sub-second apart, often from
    several of its addresses and with varying agents, sometimes as HEAD requests."""
    rng = r.rng
    head = net == "mimecast" and rng.random() < 0.5
    if rng.random() < 0.8:
        r.open(at, ua(rng, rng.choice(("chrome_win", "firefox_win", "edge_win"))), ip(rng, net), "machine", cls)
    links = list(range(len(LINKS)))
    if rng.random() < 0.5:
        rng.shuffle(links)
    for link in links:
        at += rng.uniform(0.05, 0.9)
        agent = ua(rng, rng.choice(("chrome_win", "firefox_win", "edge_win", "python_requests", "chrome_mac")))
        r.click(at, link, agent, ip(rng, net), "machine", cls, "HEAD" if head else "GET")
    return at


def gateway_tenant(rng: random.Random) -> Recipient:
    """A company behind Proofpoint, Mimecast or Barracuda: the gateway sweeps the message within
    seconds to minutes of the send; the person reads later from the office and clicks once."""
    r = Recipient(rng, *delivery(rng))
    net = rng.choice(tuple(GATEWAYS))
    at = rng.uniform(15, 60) if rng.random() < 0.65 else rng.uniform(1 * MINUTE, 5 * MINUTE)
    at = gateway_sweep(r, net, GATEWAYS[net], at)
    if rng.random() < 0.1:  # forwarded to a colleague behind the same gateway: a second sweep
        gateway_sweep(r, net, "gateway_scan_forwarded", at + rng.uniform(30 * MINUTE, 30 * HOUR))
    if rng.random() < 0.5:
        read = at + reading_delay(rng)
        office = ip(rng, rng.choice(("office", "zscaler")))
        r.open(read, ua(rng, "outlook_desktop"), office, "human", "person_outlook_desktop")
        if rng.random() < 0.6:
            person_clicks(r, read + rng.uniform(5, 3 * MINUTE), ua(rng, rng.choice(("chrome_win", "edge_win"))), office)
    return r


def cloud_sandbox(rng: random.Random) -> Recipient:
    """A sandbox or URL scanner in a public cloud: a headless browser or script, every link at once."""
    r = Recipient(rng, *delivery(rng))
    at = rng.uniform(20, 10 * MINUTE)
    script = rng.random() < 0.35
    net = rng.choice(("aws", "gcp", "digitalocean", "cogent"))
    agent = ua(rng, rng.choice(("python_requests", "curl"))) if script else ua(rng, "headless")
    cls = "scanner_script" if script else "sandbox_headless"
    if not script:
        r.open(at, agent, ip(rng, net), "machine", cls)
    links = rng.sample(range(len(LINKS)), rng.randint(4, len(LINKS)))
    for link in links:
        at += rng.uniform(0.02, 0.6)
        r.click(at, link, agent, ip(rng, net), "machine", cls, "HEAD" if script and rng.random() < 0.4 else "GET")
    return r


def person_then_rescan(rng: random.Random) -> Recipient:
    """A person clicks; seconds later another network follows the same link with another OS's agent."""
    r = Recipient(rng, *delivery(rng))
    agent, address = person_device(rng)
    at = reading_delay(rng)
    link = person_link(rng)
    r.click(at, link, agent, address, "human", "person_click")
    r.click(at + rng.uniform(3, 25), link, ua(rng, "chrome_win"), ip(rng, rng.choice(("aws", "cogent", "gcp"))),
            "machine", "rescan_after_person_click")
    return r


def person_shares_link(rng: random.Random) -> Recipient:
    """A person clicks, then pastes the link into Slack or Teams: the chat fetches it for a preview."""
    r = Recipient(rng, *delivery(rng))
    agent, address = person_device(rng)
    at = reading_delay(rng)
    link = person_link(rng)
    r.click(at, link, agent, address, "human", "person_click")
    later = at + rng.uniform(30, 2 * HOUR)
    if rng.random() < 0.5:
        r.click(later, link, UA["slackbot"], ip(rng, "aws"), "machine", "chat_link_preview")
    else:
        r.click(later, link, UA["teams_preview"], ip(rng, "ms_teams"), "machine", "chat_link_preview")
    if rng.random() < 0.3:  # the preview is fetched again when the message is edited or re-shared
        r.click(later + rng.uniform(1, 20 * MINUTE), link, UA["slackbot"], ip(rng, "aws"), "machine",
                "chat_link_preview")
    return r


def outlook_com_reader(rng: random.Random) -> Recipient:
    """Outlook.com: Microsoft's proxy loads the image when the person opens; its link preview may
    fetch a link at the same moment; the person's click leaves from home."""
    r = Recipient(rng, *delivery(rng))
    at = reading_delay(rng)
    r.open(at, ua(rng, "edge_win"), ip(rng, "ms_exo"), "human", "owa_proxy_open")
    if rng.random() < 0.5:
        r.click(at + rng.uniform(0.3, 4), rng.choice((1, 2)), UA["outlook_com_preview"], ip(rng, "ms_exo"),
                "machine", "outlook_com_link_preview")
    if rng.random() < 0.45:
        agent, address = person_device(rng)
        person_clicks(r, at + rng.uniform(8, 3 * MINUTE), agent, address)
    return r


def quick_two_links(rng: random.Random) -> Recipient:
    """A person opening two links in tabs, one to three seconds apart."""
    r = Recipient(rng, *delivery(rng))
    agent, address = person_device(rng)
    at = reading_delay(rng)
    if rng.random() < 0.6:
        r.open(at, ua(rng, "google_image_proxy"), ip(rng, "google_proxy"), "human", "gmail_proxy_open")
    first, second = rng.sample((1, 2, 3, 4), 2)
    start = at + rng.uniform(10, 2 * MINUTE)
    r.click(start, first, agent, address, "human", "person_two_links_quick")
    r.click(start + rng.uniform(1.0, 3.0), second, agent, address, "human", "person_two_links_quick")
    return r


def same_link_twice(rng: random.Random) -> Recipient:
    """A person following the same link twice: a double click, or coming back to it later."""
    r = Recipient(rng, *delivery(rng))
    agent, address = person_device(rng)
    at = reading_delay(rng)
    link = person_link(rng)
    r.click(at, link, agent, address, "human", "person_same_link_twice")
    gap = rng.uniform(0.2, 1.2) if rng.random() < 0.5 else rng.uniform(2 * MINUTE, 2 * DAY)
    r.click(at + gap, link, agent, address, "human", "person_same_link_twice")
    return r


def cloud_desktop_person(rng: random.Random) -> Recipient:
    """A person on a cloud desktop or behind a cloud web gateway: their own opens and clicks leave
    from Azure, Zscaler or Netskope addresses, at human times."""
    r = Recipient(rng, *delivery(rng))
    address = ip(rng, rng.choice(("azure", "zscaler", "netskope")))
    at = reading_delay(rng)
    if rng.random() < 0.7:
        r.open(at, ua(rng, "outlook_desktop"), address, "human", "person_cloud_proxy")
    person_clicks(r, at + rng.uniform(6, 4 * MINUTE), ua(rng, rng.choice(("edge_win", "chrome_win"))), address,
                  "person_cloud_proxy")
    return r


def images_off_clicker(rng: random.Random) -> Recipient:
    """A person whose client blocks images: no open, a click from the phone or home."""
    r = Recipient(rng, *delivery(rng))
    agent, address = person_device(rng)
    person_clicks(r, reading_delay(rng), agent, address, "person_click_no_open")
    return r


# Each scenario and how many recipients it draws: this set's own mix.
MIX: tuple[tuple[Callable[[random.Random], Recipient], int], ...] = (
    (gmail_reader, 34), (gmail_notification_reader, 12), (gmail_prefetch, 18),
    (apple_mpp, 34), (apple_mail_notification, 14),
    (outlook_desktop_office, 16), (thunderbird_reader, 6), (yahoo_reader, 12), (outlook_com_reader, 12),
    (m365_tenant, 30), (m365_sandbox, 10), (gateway_tenant, 24), (cloud_sandbox, 12),
    (person_then_rescan, 10), (person_shares_link, 10), (quick_two_links, 12), (same_link_twice, 12),
    (cloud_desktop_person, 12), (images_off_clicker, 10),
)


def generate() -> list[dict]:
    rng = random.Random(SEED)
    drawn = [scenario(rng) for scenario, count in MIX for _ in range(count)]
    rng.shuffle(drawn)
    return [recipient.line(number) for number, recipient in enumerate(drawn)]


def main() -> None:
    lines = generate()
    OUT.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    events = sum(len(line["events"]) for line in lines)
    print(f"{OUT.name}: {len(lines)} recipients, {events} events")


if __name__ == "__main__":
    main()
