"""The outside set: a held-out, independently built test set for the human-or-machine verdicts.

Built from public descriptions of how mail proxies, scanners, previews and people behave (README.md
beside this file names the source of each class), without reading the rules it measures.  Same
format as the corpus: one JSON object a line, one recipient's events in time order.

Run: python tests/data/verdicts/outside/generate.py   (writes outside.jsonl beside it)
"""

from __future__ import annotations

import ipaddress
import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

SEED = 20261207  # its own seed: nothing shared with the corpus
OUT = Path(__file__).resolve().parent / "outside.jsonl"
LINKS = 6  # links in the message, 0..5 in document order; 5 is the footer's unsubscribe link
MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0

# Networks.  Published or documented ranges where a source gives them (README.md), else the
# documentation ranges (RFC 5737) for a company's own egress.
GOOGLE = ("66.249.80.0/20", "66.102.0.0/20", "74.125.208.0/20")
APPLE_RELAY = ("172.224.226.0/27", "172.224.227.0/27", "104.28.0.0/16")
MICROSOFT_SAFELINKS = ("40.94.16.0/24", "40.107.235.0/24")
MICROSOFT_EOP = ("40.107.0.0/16", "104.47.0.0/17", "40.94.0.0/16")
MICROSOFT_TEAMS = ("52.112.0.0/14",)
PROOFPOINT = ("148.163.128.0/19", "67.231.144.0/20")
MIMECAST = ("205.139.110.0/24", "207.211.30.0/24", "195.130.217.0/24")
BARRACUDA = ("209.222.80.0/21", "64.235.144.0/20")
GATEWAYS = (PROOFPOINT, MIMECAST, BARRACUDA)
AWS = ("3.80.0.0/12", "52.0.0.0/11", "54.144.0.0/12", "18.208.0.0/13")
GCP = ("34.64.0.0/10", "35.184.0.0/13")
YAHOO = ("98.136.0.0/14", "74.6.0.0/16")
ZSCALER = ("165.225.0.0/17", "136.226.0.0/16")
CORPORATE = ("198.51.100.0/24", "203.0.113.0/24")
HOME = ("73.0.0.0/8", "98.192.0.0/10", "79.192.0.0/10", "86.128.0.0/10", "90.0.0.0/9", "2601::/20", "2003::/19")
MOBILE = ("174.192.0.0/10", "172.56.0.0/14", "2607:fb90::/32")

# Agents.
GOOGLE_IMAGE_PROXY = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
GMAIL_PREFETCH = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0")
APPLE_MPP = "Mozilla/5.0"
IPHONE_MAIL = ("Mozilla/5.0 (iPhone; CPU iPhone OS {v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
               "Mobile/15E148")
IPHONE_SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS {v} like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/{s} Mobile/15E148 Safari/604.1")
ANDROID_CHROME = ("Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/{c}.0.0.0 "
                  "Mobile Safari/537.36")
WINDOWS_CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/{c}.0.0.0 Safari/537.36")
WINDOWS_EDGE = WINDOWS_CHROME + " Edg/{c}.0.0.0"
MAC_CHROME = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/{c}.0.0.0 Safari/537.36")
MAC_SAFARI = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/{s} Safari/605.1.15")
OUTLOOK_DESKTOP = ("Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; "
                   "Microsoft Outlook 16.0.{b}; ms-office; MSOffice 16)")
THUNDERBIRD = "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:115.0) Gecko/20100101 Thunderbird/115.{t}"
YAHOO_PROXY = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
SAFELINKS_CHROME = ("72.0.3626.109", "64.0.3282.140", "80.0.3987.132", "96.0.4664.110", "79.0.3945.136")
OLD_CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/{v} Safari/537.36")
SCANNER_AGENTS = (
    "python-requests/2.31.0",
    "Mozilla/4.0 (compatible; MSIE 8.0; Windows NT 6.1; Trident/4.0)",
    "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko",
    OLD_CHROME.format(v="96.0.4664.110"),
    OLD_CHROME.format(v="80.0.3987.132"),
)
HEADLESS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/{c}.0.0.0 "
            "Safari/537.36")
SLACK = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
TEAMS = "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com"


def address(rng: random.Random, networks: tuple[str, ...]) -> str:
    """One host address in one of the networks."""
    net = ipaddress.ip_network(rng.choice(networks))
    return str(net.network_address + 1 + rng.randrange(net.num_addresses - 2))


def between(rng: random.Random, low: float, high: float) -> float:
    """A duration spread evenly on a log scale: seconds and days both likely in a wide range."""
    return math.exp(rng.uniform(math.log(low), math.log(high)))


@dataclass
class Person:
    """One reader: where they are and what they run."""
    ip: str
    browser: str
    mail_client: str

    @classmethod
    def at_home(cls, rng: random.Random, mobile: bool | None = None) -> Person:
        mobile = rng.random() < 0.55 if mobile is None else mobile
        c, ios = rng.choice((124, 125, 126, 127, 128, 129, 130, 131)), rng.choice(("17_4", "17_5", "17_6", "18_1"))
        safari = ios.split("_")[0] + "." + ios.split("_")[1]
        if mobile:
            browser = rng.choice((IPHONE_SAFARI.format(v=ios, s=safari), ANDROID_CHROME.format(c=c)))
            return cls(address(rng, MOBILE), browser, IPHONE_MAIL.format(v=ios))
        browser = rng.choice((WINDOWS_CHROME.format(c=c), MAC_CHROME.format(c=c), MAC_SAFARI.format(s=safari),
                              WINDOWS_EDGE.format(c=c)))
        return cls(address(rng, HOME), browser, THUNDERBIRD.format(t=rng.choice(("9.0", "10.1", "11.0"))))

    @classmethod
    def at_work(cls, rng: random.Random, cloud_proxy: bool = False) -> Person:
        c = rng.choice((124, 126, 128, 130))
        ip = address(rng, rng.choice((ZSCALER, AWS)) if cloud_proxy else CORPORATE)
        return cls(ip, WINDOWS_EDGE.format(c=c), OUTLOOK_DESKTOP.format(b=rng.choice(("17328", "17531", "17726"))))


@dataclass
class Recipient:
    """One recipient's delivery and events, times in seconds after delivery until written out."""
    delivered_after: float
    delivery_reported: bool
    events: list[dict] = field(default_factory=list)

    def open(self, at: float, agent: str, ip: str, label: str, kind_of: str) -> None:
        self.events.append({"kind": "open", "method": "GET", "user_agent": agent, "ip": ip, "at": at,
                            "label": label, "class": kind_of})

    def click(self, at: float, link: int, agent: str, ip: str, label: str, kind_of: str,
              method: str = "GET") -> None:
        self.events.append({"kind": "click", "method": method, "user_agent": agent, "ip": ip, "at": at,
                            "label": label, "class": kind_of, "link": link})

    def row(self, number: int) -> dict:
        events, order = [], 0
        for event in sorted(self.events, key=lambda e: e["at"]):
            at = event.pop("at")
            timed = {"kind": event["kind"], "method": event["method"], "user_agent": event["user_agent"],
                     "ip": event["ip"], "since_send": round(self.delivered_after + at, 1),
                     "since_delivery": round(at, 1), "label": event["label"], "class": event["class"]}
            if event["kind"] == "click":
                timed |= {"link": event["link"], "order": order}
                order += 1
            events.append(timed)
        return {"recipient": number, "delivered_after": round(self.delivered_after, 1),
                "delivery_reported": self.delivery_reported, "events": events}


def recipient(rng: random.Random, gateway: bool = False) -> Recipient:
    # A security gateway holds the message while it scans; now and then a server greylists.
    delay = between(rng, 15, 400) if gateway else between(rng, 1.5, 40)
    if rng.random() < 0.05:
        delay += rng.uniform(300, 1200)
    return Recipient(delay, rng.random() >= 0.15)


def person_clicks(rng: random.Random, r: Recipient, after: float, person: Person, cls: str | None = None) -> float:
    """A person's clicks some seconds to minutes after reading; the time of the last one."""
    at = after + between(rng, 4, 600)
    pattern = rng.choices(("one", "two_quick", "same_twice", "one_then_other"), weights=(5, 2, 2, 2))[0]
    first = rng.randrange(LINKS - 1)
    if pattern == "two_quick":  # two links opened in tabs 1-3 s apart
        second = rng.choice([link for link in range(LINKS - 1) if link != first])
        r.click(at, first, person.browser, person.ip, "human", cls or "person_two_links_quick")
        at += rng.uniform(1.0, 3.0)
        r.click(at, second, person.browser, person.ip, "human", cls or "person_two_links_quick")
    elif pattern == "same_twice":  # a double click, or back to the same link later
        r.click(at, first, person.browser, person.ip, "human", cls or "person_same_link_twice")
        at += rng.choice((rng.uniform(0.2, 1.5), rng.uniform(20, 900)))
        r.click(at, first, person.browser, person.ip, "human", cls or "person_same_link_twice")
    else:
        r.click(at, first, person.browser, person.ip, "human", cls or "person_one_link")
        if pattern == "one_then_other":
            at += between(rng, 30, 1200)
            second = rng.choice([link for link in range(LINKS - 1) if link != first])
            r.click(at, second, person.browser, person.ip, "human", cls or "person_one_link")
    return at


def gmail_later(rng: random.Random) -> Recipient:
    r, person = recipient(rng), Person.at_home(rng)
    at = between(rng, 2 * MINUTE, 4 * DAY)
    r.open(at, GOOGLE_IMAGE_PROXY, address(rng, GOOGLE), "human", "gmail_person_open_later")
    if rng.random() < 0.15:  # the cached copy expired: Gmail fetches it again on a later reading
        r.open(at + between(rng, 6 * HOUR, 3 * DAY), GOOGLE_IMAGE_PROXY, address(rng, GOOGLE), "human",
               "gmail_person_open_later")
    if rng.random() < 0.5:
        person_clicks(rng, r, at, person)
    return r


def gmail_active_session(rng: random.Random) -> Recipient:
    r, person = recipient(rng), Person.at_home(rng)
    r.open(rng.uniform(0.5, 10), GMAIL_PREFETCH, address(rng, GOOGLE), "machine", "gmail_session_prefetch")
    if rng.random() < 0.6:
        at = between(rng, 10, 3 * HOUR)
        r.open(at, GOOGLE_IMAGE_PROXY, address(rng, GOOGLE), "human", "gmail_person_open_after_prefetch")
        if rng.random() < 0.4:
            person_clicks(rng, r, at, person)
    return r


def gmail_notification(rng: random.Random) -> Recipient:
    r, person = recipient(rng), Person.at_home(rng, mobile=True)
    at = rng.uniform(4, 30)
    r.open(at, GOOGLE_IMAGE_PROXY, address(rng, GOOGLE), "human", "gmail_person_open_on_notification")
    if rng.random() < 0.5:
        person_clicks(rng, r, at, person)
    return r


def apple_mpp(rng: random.Random) -> Recipient:
    r = recipient(rng)
    devices = rng.choices((1, 2, 3), weights=(6, 3, 1))[0]
    for _ in range(devices):  # each of the person's Apple devices fetches when it next syncs
        at = rng.uniform(2, 15 * MINUTE) if rng.random() < 0.6 else between(rng, 15 * MINUTE, 14 * HOUR)
        r.open(at, APPLE_MPP, address(rng, APPLE_RELAY), "machine", "apple_mpp_prefetch")
    if rng.random() < 0.3:
        person = Person.at_home(rng, mobile=True)
        person_clicks(rng, r, between(rng, 5 * MINUTE, DAY), person)
    return r


def apple_mail_direct(rng: random.Random, quick: bool) -> Recipient:
    r, person = recipient(rng), Person.at_home(rng, mobile=True)
    at = rng.uniform(3, 30) if quick else between(rng, 5 * MINUTE, 2 * DAY)
    cls = "apple_mail_person_open_on_notification" if quick else "apple_mail_person_open_later"
    r.open(at, person.mail_client, person.ip, "human", cls)
    if rng.random() < 0.5:
        person_clicks(rng, r, at, person)
    return r


def outlook_tenant(rng: random.Random) -> Recipient:
    """An Office 365 mailbox with Defender: Safe Links detonates at delivery, the person reads in Outlook."""
    r, cloud_proxy = recipient(rng), rng.random() < 0.35
    person = Person.at_work(rng, cloud_proxy)
    reader = "person_behind_cloud_proxy" if cloud_proxy else None
    if rng.random() < 0.7:
        at, link = rng.uniform(5, 180), rng.randrange(LINKS)
        agent = OLD_CHROME.format(v=rng.choice(SAFELINKS_CHROME))
        r.click(at, link, agent, address(rng, MICROSOFT_SAFELINKS), "machine", "safelinks_detonation")
        if rng.random() < 0.3:  # a second read of the same link from elsewhere, seconds later
            r.click(at + rng.uniform(1, 5), link, agent, address(rng, AWS), "machine", "safelinks_detonation")
    at = between(rng, 3 * MINUTE, 30 * HOUR)
    if rng.random() < 0.6:  # Outlook blocks pictures until the reader allows them
        r.open(at, person.mail_client, person.ip, "human", "outlook_desktop_person_open")
    if rng.random() < 0.5:
        person_clicks(rng, r, at, person, reader)
    return r


def eop_fetch(rng: random.Random) -> Recipient:
    """Microsoft 365's delivery-time fetch of pixel and links from one Microsoft address."""
    r, ip = recipient(rng), address(rng, MICROSOFT_EOP)
    at = rng.uniform(1, 60)
    c = rng.choice((118, 120, 122, 124))
    r.open(at, WINDOWS_CHROME.format(c=c), ip, "machine", "m365_delivery_fetch")
    r.click(at + rng.uniform(0.2, 4), rng.randrange(LINKS), MAC_CHROME.format(c=c + 2), ip, "machine",
            "m365_delivery_fetch")
    return r


def gateway(rng: random.Random) -> Recipient:
    """Proofpoint, Mimecast or Barracuda: the pixel and every link fetched within seconds."""
    r, networks = recipient(rng, gateway=True), rng.choice(GATEWAYS)
    rotating, agent = rng.random() < 0.4, rng.choice(SCANNER_AGENTS)
    ip = address(rng, networks)
    at = rng.uniform(2, 120)
    r.open(at, agent, ip, "machine", "gateway_scan_open")
    links = list(range(LINKS))
    if rng.random() < 0.3:
        rng.shuffle(links)
    head_first = rng.random() < 0.25
    for link in links:
        at += rng.uniform(0.3, 2.5)
        if rotating:
            ip, agent = address(rng, networks), rng.choice(SCANNER_AGENTS)
        if head_first:
            r.click(at, link, agent, ip, "machine", "gateway_scan_all_links", method="HEAD")
            at += rng.uniform(0.05, 0.4)
        r.click(at, link, agent, ip, "machine", "gateway_scan_all_links")
    if rng.random() < 0.45:
        person = Person.at_work(rng)
        read = at + between(rng, 5 * MINUTE, DAY)
        if rng.random() < 0.5:
            r.open(read, person.mail_client, person.ip, "human", "outlook_desktop_person_open")
        last = person_clicks(rng, r, read, person)
        if rng.random() < 0.6:  # the gateway checks the link again at the time of the click
            clicked = [e for e in r.events if e["kind"] == "click" and e["label"] == "human"][-1]
            c = rng.choice((124, 126, 128, 130))
            rescan_ip = "168.90.91.133" if rng.random() < 0.2 else address(rng, networks)
            r.click(last + rng.uniform(2, 15), clicked["link"], WINDOWS_CHROME.format(c=c), rescan_ip, "machine",
                    "scanner_rescan_after_click")
    return r


def sandbox(rng: random.Random) -> Recipient:
    r = recipient(rng)
    ip, c = address(rng, rng.choice((AWS, GCP))), rng.choice((118, 120, 122, 125))
    at = between(rng, 30, 10 * MINUTE)
    r.open(at, HEADLESS.format(c=c), ip, "machine", "sandbox_headless")
    for link in rng.sample(range(LINKS), rng.randint(2, LINKS)):
        at += rng.uniform(0.5, 6)
        r.click(at, link, HEADLESS.format(c=c), ip, "machine", "sandbox_headless")
    return r


def yahoo(rng: random.Random) -> Recipient:
    r, person = recipient(rng), Person.at_home(rng)
    at = between(rng, 2 * MINUTE, 2 * DAY)
    r.open(at, YAHOO_PROXY, address(rng, YAHOO), "human", "yahoo_proxy_person_open")
    if rng.random() < 0.4:
        person_clicks(rng, r, at, person)
    return r


def thunderbird(rng: random.Random) -> Recipient:
    r, person = recipient(rng), Person.at_home(rng, mobile=False)
    at = between(rng, MINUTE, DAY)
    r.open(at, person.mail_client, person.ip, "human", "thunderbird_person_open")
    if rng.random() < 0.5:
        person_clicks(rng, r, at, person)
    return r


def shared_in_chat(rng: random.Random) -> Recipient:
    """A person clicks, then pastes the tracked link into Slack or Teams: the preview bot fetches it."""
    r, person = recipient(rng), Person.at_work(rng) if rng.random() < 0.5 else Person.at_home(rng)
    last = person_clicks(rng, r, between(rng, 5 * MINUTE, 6 * HOUR), person)
    link = [e for e in r.events if e["kind"] == "click"][-1]["link"]
    at = last + between(rng, 2 * MINUTE, 2 * DAY)
    if rng.random() < 0.6:
        r.click(at, link, SLACK, address(rng, AWS), "machine", "chat_link_preview")
    else:
        r.click(at, link, TEAMS, address(rng, MICROSOFT_TEAMS), "machine", "chat_link_preview")
    return r


def images_blocked(rng: random.Random) -> Recipient:
    """A reader whose client shows no pictures: clicks without any open."""
    r = recipient(rng)
    person = Person.at_work(rng) if rng.random() < 0.5 else Person.at_home(rng)
    person_clicks(rng, r, between(rng, 2 * MINUTE, 2 * DAY), person, "person_click_without_open")
    return r


# The class mix: how many recipients of each kind (decided before the first measurement).
MIX: tuple[tuple[Callable[[random.Random], Recipient], int], ...] = (
    (gmail_later, 30),
    (gmail_active_session, 12),
    (gmail_notification, 10),
    (apple_mpp, 30),
    (lambda rng: apple_mail_direct(rng, quick=True), 10),
    (lambda rng: apple_mail_direct(rng, quick=False), 6),
    (outlook_tenant, 18),
    (eop_fetch, 8),
    (gateway, 20),
    (sandbox, 8),
    (yahoo, 8),
    (thunderbird, 6),
    (shared_in_chat, 8),
    (images_blocked, 8),
)


def main() -> None:
    rng = random.Random(SEED)
    recipients = [make(rng) for make, count in MIX for _ in range(count)]
    rng.shuffle(recipients)
    lines = [json.dumps(r.row(number)) for number, r in enumerate(recipients)]
    OUT.write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
