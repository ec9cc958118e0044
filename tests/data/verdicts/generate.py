"""Writes the labelled corpus of opens and clicks (corpus.jsonl) and the held-out set (holdout.jsonl).

    python tests/data/verdicts/generate.py        (from the repository root; rewrites both files)

Deterministic: each set is drawn from its own seeded random generator (SEEDS), so the files are
the same on every run.  One line per recipient: their events in time order, each with what the
server sees (kind, method, user agent, address, seconds since the send and since delivery when the
provider reported it, for clicks the link and its order among the recipient's clicks) and its true
label and class.  How each class behaves, and its public source, is in README.md beside this file.
The held-out set is drawn with another seed and other class weights; the rules were tuned on
corpus.jsonl only.
"""

from __future__ import annotations

import ipaddress
import json
import math
import random
from pathlib import Path

HERE = Path(__file__).parent
SEEDS = {"corpus.jsonl": 22, "holdout.jsonl": 2022}
RECIPIENTS = {"corpus.jsonl": 330, "holdout.jsonl": 220}
LINKS = 5  # links in the message



def published(kind: str) -> list[str]:
    """The ranges coretrack ships for a kind of network (coretrack/tracking/ranges/, written by
    scripts/refresh-networks from the providers' own lists)."""
    path = HERE.parents[2] / "coretrack" / "tracking" / "ranges" / f"{kind}.txt"
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and ":" not in line]  # IPv4: what the classes below use


# Address ranges, as their owners publish them (README.md names the sources).
APPLE_RELAY = published("apple")
GOOGLE_PROXY = ["66.249.80.0/20", "74.125.208.0/20"]
YAHOO_PROXY = ["74.6.0.0/16", "98.137.0.0/16", "87.248.96.0/19"]
MICROSOFT_EOP = ["40.92.0.0/15", "40.107.0.0/16", "52.100.0.0/14", "104.47.0.0/17"]
# Azure addresses away from Exchange Online's: Safe Links' detonation sometimes comes from there.
AZURE_ELSEWHERE = ["20.150.0.0/15", "51.104.0.0/15"]
MICROSOFT_OWA = ["40.96.0.0/13", "52.96.0.0/14"]
TEAMS = ["52.112.0.0/14"]
BARRACUDA = ["64.235.144.0/20", "209.222.80.0/21"]
MIMECAST = ["205.139.110.0/24", "207.211.30.0/24", "91.220.42.0/24", "185.58.84.0/22"]
PROOFPOINT = ["148.163.128.0/19", "67.231.144.0/20"]
CLOUD = published("cloud")
HOME = ["73.0.0.0/8", "86.128.0.0/10", "79.192.0.0/10", "90.0.0.0/10", "24.0.0.0/12"]
MOBILE = ["174.192.0.0/10", "172.56.0.0/14", "80.187.96.0/19"]
OFFICE = ["62.154.0.0/16", "193.62.0.0/16", "130.88.0.0/16"]

BARE = "Mozilla/5.0"
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
IOS_MAIL = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Mobile/15E148")
GOOGLE = "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)"
# Gmail's delivery-time prefetch (for a recipient with an open session) has an agent of its own.
GMAIL_PREFETCH = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
                  "Chrome/42.0.2311.135 Safari/537.36 Edge/12.246 Mozilla/5.0")
YAHOO = "YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html"
OUTLOOK = ["Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)",
           "Mozilla/4.0 (compatible; MSIE 7.0; Windows NT 10.0; WOW64; Trident/7.0; .NET4.0C; .NET4.0E; "
           "Microsoft Outlook 16.0.5422; ms-office; MSOffice 16)"]
THUNDERBIRD = ["Mozilla/5.0 (X11; Linux x86_64; rv:115.0) Gecko/20100101 Thunderbird/115.6.0",
               "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:128.0) Gecko/20100101 Thunderbird/128.3.1"]
ANDROID_MAIL = ("Mozilla/5.0 (Linux; Android 14; SM-S918B Build/UP1A.231005.007; wv) AppleWebKit/537.36 "
                "(KHTML, like Gecko) Version/4.0 Chrome/120.0.6099.230 Mobile Safari/537.36")
BROWSERS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
    "Safari/537.36 Edg/124.0.2478.80",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 "
    "Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
]
PHONE_BROWSERS = [
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 "
    "Mobile Safari/537.36",
]
SAFARI = BROWSERS[2]
HEADLESS = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/119.0.6045.105 "
            "Safari/537.36")
SLACK = "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)"
TEAMS_PREVIEW = "Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5 skype-url-preview@microsoft.com"

MINUTE, HOUR, DAY = 60, 3600, 86400


class Recipient:
    """One recipient's events, drawn one after another."""

    def __init__(self, rng: random.Random, number: int) -> None:
        self.rng = rng
        self.number = number
        self.delivered = round(rng.uniform(0.5, 6), 1)  # seconds after the send
        self.delivery_known = rng.random() < 0.5  # a provider's delivery report came in
        self.events: list[dict[str, object]] = []

    def ip(self, ranges: list[str]) -> str:
        network = ipaddress.ip_network(self.rng.choice(ranges))
        return str(network[self.rng.randrange(1, network.num_addresses - 1)])

    def later(self, low: float, high: float) -> float:
        """A time drawn evenly on a log scale: readers come minutes, hours or days later."""
        return math.exp(self.rng.uniform(math.log(low), math.log(high)))

    def add(self, kind: str, at: float, agent: str, ip: str, label: str, kind_class: str, link: int | None = None,
            method: str = "GET") -> None:
        event: dict[str, object] = {
            "kind": kind, "method": method, "user_agent": agent, "ip": ip, "since_send": round(at, 1),
            "since_delivery": round(at - self.delivered, 1) if self.delivery_known else None,
            "label": label, "class": kind_class}
        if kind == "click":
            event["link"] = link
        self.events.append(event)

    def links(self, count: int) -> list[int]:
        return self.rng.sample(range(LINKS), count)

    def as_line(self) -> str:
        self.events.sort(key=lambda event: float(event["since_send"]))  # type: ignore[arg-type]
        order = 0
        for event in self.events:
            if event["kind"] == "click":
                event["order"] = order
                order += 1
        return json.dumps({"recipient": self.number, "delivered_after": self.delivered,
                           "delivery_reported": self.delivery_known, "events": self.events}) + "\n"


def person_clicks(r: Recipient, start: float, agent: str, ip: str, kind_class: str = "person_one_link") -> None:
    link = r.rng.randrange(LINKS)
    r.add("click", start, agent, ip, "human", kind_class, link)
    if r.rng.random() < 0.2:  # back to the same page later
        r.add("click", start + r.later(2, 600), agent, ip, "human", kind_class, link)


def apple_mpp(r: Recipient) -> None:
    relay = r.ip(APPLE_RELAY)
    r.add("open", r.delivered + r.rng.uniform(1, 900), r.rng.choice([BARE, BARE, APPLE_MAIL, IOS_MAIL]), relay,
          "machine", "apple_mpp")
    if r.rng.random() < 0.3:  # Mail fetches again later, still through the relay
        r.add("open", r.later(HOUR, 2 * DAY), BARE, r.ip(APPLE_RELAY), "machine", "apple_mpp")
    if r.rng.random() < 0.2:  # the person clicks: from their own network (MPP hides loads, not clicks)
        person_clicks(r, r.later(5 * MINUTE, DAY), PHONE_BROWSERS[0], r.ip(MOBILE + HOME))


def webmail_proxy(r: Recipient, agent: str, ranges: list[str], name: str, prefetch: float,
                  fetch_agent: str | None = None) -> None:
    fetched = r.rng.random() < prefetch
    at = r.delivered
    if fetched:
        at = r.delivered + r.rng.uniform(1, 90)
        fetcher = fetch_agent or agent
        r.add("open", at, fetcher, r.ip(ranges), "machine", f"{name}_proxy_delivery_fetch")
        if r.rng.random() < 0.1:  # the fetch repeated at once
            r.add("open", at + r.rng.uniform(0.5, 5), fetcher, r.ip(ranges), "machine", f"{name}_proxy_delivery_fetch")
    if r.rng.random() < 0.8:
        if fetched and r.rng.random() < 0.15:
            opened = at + r.rng.uniform(15, 60)  # a notification opened at once, after the delivery fetch
        elif not fetched and r.rng.random() < 0.07:
            opened = r.delivered + r.rng.uniform(40, 115)  # a fast reader with no delivery fetch before
        else:
            opened = r.later(150, 3 * DAY)
        r.add("open", opened, agent, r.ip(ranges), "human", f"{name}_proxy_person")
        if r.rng.random() < 0.3:
            r.add("open", opened + r.later(MINUTE, DAY), agent, r.ip(ranges), "human", f"{name}_proxy_person")
        if r.rng.random() < 0.3:
            person_clicks(r, opened + r.rng.uniform(5, 300), r.rng.choice(BROWSERS + PHONE_BROWSERS),
                          r.ip(HOME + MOBILE))


def gmail(r: Recipient) -> None:
    webmail_proxy(r, GOOGLE, GOOGLE_PROXY, "gmail", 0.7, GMAIL_PREFETCH)


def yahoo(r: Recipient) -> None:
    webmail_proxy(r, YAHOO, YAHOO_PROXY, "yahoo", 0.5)


def desktop_reader(r: Recipient, agents: list[str], kind_class: str, ranges: list[str],
                   click_ranges: list[str] | None = None) -> None:
    agent, ip = r.rng.choice(agents), r.ip(ranges)
    opened = r.later(MINUTE, 4 * DAY)
    r.add("open", opened, agent, ip, "human", kind_class)
    if r.rng.random() < 0.3:
        r.add("open", opened + r.later(MINUTE, DAY), agent, ip, "human", kind_class)
    if r.rng.random() < 0.35:
        # a click leaves from the person's own network, even when the images came through a proxy
        click_ip = r.ip(click_ranges) if click_ranges else ip
        person_clicks(r, opened + r.rng.uniform(5, 600), r.rng.choice(BROWSERS), click_ip)


def outlook_person(r: Recipient) -> None:
    desktop_reader(r, OUTLOOK, "outlook_person", HOME + OFFICE)


def outlook_web_person(r: Recipient) -> None:
    desktop_reader(r, BROWSERS[:2], "outlook_web_person", MICROSOFT_OWA, HOME + OFFICE)


def thunderbird_person(r: Recipient) -> None:
    desktop_reader(r, THUNDERBIRD, "thunderbird_person", HOME + OFFICE)


def apple_mail_person(r: Recipient) -> None:
    desktop_reader(r, [APPLE_MAIL, IOS_MAIL], "apple_mail_person", HOME + MOBILE)


def relay_safari_person(r: Recipient) -> None:
    desktop_reader(r, [SAFARI], "relay_safari_person", APPLE_RELAY)


def phone_person_fast(r: Recipient) -> None:
    ip = r.ip(MOBILE)
    opened = r.rng.uniform(20, 40)
    r.add("open", opened, r.rng.choice([IOS_MAIL, ANDROID_MAIL]), ip, "human", "phone_person_fast")
    if r.rng.random() < 0.4:
        r.add("click", opened + r.rng.uniform(5, 60), r.rng.choice(PHONE_BROWSERS), ip, "human", "phone_person_fast",
              r.rng.randrange(LINKS))


def person_links(r: Recipient) -> None:
    agent, ip = r.rng.choice(BROWSERS), r.ip(HOME + OFFICE)
    at = r.later(2 * MINUTE, 3 * DAY)
    for link in r.links(r.rng.randint(2, 4)):
        r.add("click", at, agent, ip, "human", "person_several_links", link)
        at += r.rng.uniform(20, 600)


def person_two_links_fast(r: Recipient) -> None:
    agent, ip = r.rng.choice(BROWSERS), r.ip(HOME + OFFICE)
    at = r.later(2 * MINUTE, 2 * DAY)
    first, second = r.links(2)
    r.add("click", at, agent, ip, "human", "person_two_links_fast", first)
    r.add("click", at + r.rng.uniform(1.0, 2.5), agent, ip, "human", "person_two_links_fast", second)


def defender_safe_links(r: Recipient) -> None:
    agent = r.rng.choice(BROWSERS[:2])
    at = r.delivered + r.rng.uniform(5, 300)
    count = r.rng.randint(2, LINKS) if r.rng.random() < 0.5 else 1
    ranges = AZURE_ELSEWHERE if r.rng.random() < 0.1 else MICROSOFT_EOP
    for link in r.links(count):
        r.add("click", at, agent, r.ip(ranges), "machine", "defender_safe_links", link)
        at += r.rng.uniform(3, 15)
    if r.rng.random() < 0.4:  # the person's own click, through Safe Links' redirect, from their browser
        person_clicks(r, r.later(10 * MINUTE, DAY), r.rng.choice(BROWSERS), r.ip(OFFICE))


def barracuda(r: Recipient) -> None:
    agent, ip = BROWSERS[0], r.ip(BARRACUDA)
    if r.rng.random() < 0.5:
        r.add("open", r.rng.uniform(1, 9), agent, ip, "machine", "gateway_image_fetch")
    at = r.rng.uniform(2, 40)
    for link in r.links(r.rng.randint(2, LINKS)):
        r.add("click", at, agent, ip, "machine", "barracuda", link)
        at += r.rng.uniform(0.1, 0.8)


def mimecast_rescan(r: Recipient) -> None:
    agent, ip = r.rng.choice(BROWSERS), r.ip(OFFICE)
    at = r.later(5 * MINUTE, 2 * DAY)
    link = r.rng.randrange(LINKS)
    r.add("click", at, agent, ip, "human", "person_one_link", link)
    scanner = r.ip(MIMECAST + PROOFPOINT) if r.rng.random() < 0.6 else r.ip(CLOUD)
    r.add("click", at + r.rng.uniform(0.5, 10), BROWSERS[0], scanner, "machine", "rescan_after_person", link)


def gateway_images(r: Recipient) -> None:
    r.add("open", r.rng.uniform(1, 9), r.rng.choice(BROWSERS), r.ip(MIMECAST + PROOFPOINT + OFFICE), "machine",
          "gateway_image_fetch")
    if r.rng.random() < 0.6:
        desktop_reader(r, OUTLOOK, "outlook_person", OFFICE)


def click_before_reading(r: Recipient) -> None:
    # An on-premises gateway on the recipient's own network follows a link as the message passes it.
    r.add("click", r.rng.uniform(1, 9), BROWSERS[0], r.ip(OFFICE), "machine", "click_before_reading",
          r.rng.randrange(LINKS))


def sandbox_headless(r: Recipient) -> None:
    ip = r.ip(CLOUD)
    at = r.delivered + r.rng.uniform(3, 300)
    r.add("open", at, HEADLESS, ip, "machine", "sandbox_headless")
    for link in r.links(r.rng.randint(1, LINKS)):
        at += r.rng.uniform(1, 6)
        r.add("click", at, HEADLESS, ip, "machine", "sandbox_headless", link)


def sandbox_browser_agent(r: Recipient) -> None:
    # A sandbox in a data centre that passes for a desktop browser, following links one after another.
    at = r.delivered + r.rng.uniform(10, 600)
    for link in r.links(r.rng.randint(2, LINKS)):
        r.add("click", at, BROWSERS[0], r.ip(CLOUD), "machine", "sandbox_browser_agent", link)
        at += r.rng.uniform(2, 20)


def cloud_refetch(r: Recipient) -> None:
    link, at = r.rng.randrange(LINKS), r.delivered + r.rng.uniform(10, HOUR)
    r.add("click", at, BROWSERS[0], r.ip(CLOUD), "machine", "cloud_refetch", link)
    r.add("click", at + r.rng.uniform(1, 300), BROWSERS[0], r.ip(CLOUD), "machine", "cloud_refetch", link)


def slack_preview(r: Recipient) -> None:
    at = r.later(5 * MINUTE, DAY)
    link = r.rng.randrange(LINKS)
    r.add("click", at, r.rng.choice(BROWSERS), r.ip(HOME), "human", "person_one_link", link)
    r.add("click", at + r.later(MINUTE, DAY), SLACK, r.ip(CLOUD), "machine", "slack_preview", link)


def teams_preview(r: Recipient) -> None:
    at = r.later(5 * MINUTE, DAY)
    link = r.rng.randrange(LINKS)
    r.add("click", at, r.rng.choice(BROWSERS), r.ip(OFFICE), "human", "person_one_link", link)
    r.add("click", at + r.later(MINUTE, DAY), TEAMS_PREVIEW, r.ip(TEAMS), "machine", "teams_preview", link)


def vpn_person(r: Recipient) -> None:
    person_clicks(r, r.later(5 * MINUTE, DAY), r.rng.choice(BROWSERS), r.ip(CLOUD), "vpn_person")


# Each class's generator and its weight in each set.
CLASSES = {
    apple_mpp: (40, 20), gmail: (55, 45), yahoo: (15, 15), outlook_person: (20, 15), outlook_web_person: (10, 10),
    thunderbird_person: (12, 8), apple_mail_person: (10, 8), relay_safari_person: (4, 4),
    phone_person_fast: (14, 10), person_links: (14, 10), person_two_links_fast: (12, 8),
    defender_safe_links: (20, 15), barracuda: (12, 10), mimecast_rescan: (14, 10), gateway_images: (10, 8),
    click_before_reading: (6, 4), sandbox_headless: (10, 8), sandbox_browser_agent: (8, 6), cloud_refetch: (8, 6),
    slack_preview: (8, 6), teams_preview: (8, 6), vpn_person: (6, 4),
}


def generate(name: str) -> str:
    rng = random.Random(SEEDS[name])
    column = list(SEEDS).index(name)
    kinds = list(CLASSES)
    weights = [CLASSES[kind][column] for kind in kinds]
    lines = []
    for number in range(RECIPIENTS[name]):
        recipient = Recipient(rng, number)
        rng.choices(kinds, weights)[0](recipient)
        if recipient.events:
            lines.append(recipient.as_line())
    return "".join(lines)


if __name__ == "__main__":
    for name in SEEDS:
        (HERE / name).write_text(generate(name), encoding="utf-8")
