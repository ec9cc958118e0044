"""Build the message of an email with more and more links (500 bytes of HTML each): cleaning,
finding its links and building its MIME, and one recipient's message, in one run.

Run: scripts/bench-heavy [LINKS ...]   (default: 500 1000 2000 4000 8000)

Prints a table and ``ratio=<time per link with the most links / with the fewest>``: 1 is linear,
and a search of the whole message per link would make it grow with the links.
"""

import sys
import time

from coretrack.sanitize import clean_html
from coretrack.sending.mime import MessageTemplate
from coretrack.tracking import clicks, tokens

PUBLIC_URL = "https://crm.example.test/crm"
FILLER = "Our products this month, with prices and what customers say about them. " * 6


def newsletter(links):
    return "<html><body>" + "".join(
        f'<p><a href="https://shop.example.test/item/{number}">Item {number}</a> {FILLER[:440]}</p>\n'
        for number in range(links)) + "</body></html>"


def build(html):
    cleaned = clean_html(html)
    template = MessageTemplate(from_address="crm@example.test", from_name="Example CRM", subject="News",
                               html=cleaned, public_url=PUBLIC_URL, links=clicks.trackable_links(cleaned, PUBLIC_URL),
                               secret=b"bench" * 8, unsubscribe_url=PUBLIC_URL, unsubscribe_footer="Unsubscribe:")
    return template.render("ann@example.test", "Ann", tokens.new_token(b"bench"))


def best_of(rounds, html):
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        build(html)
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    counts = [int(value) for value in sys.argv[1:]] or [500, 1000, 2000, 4000, 8000]
    print(f"{'links':>6} {'HTML kB':>8} {'seconds':>8} {'ms per link':>12}")
    per_link = []
    for links in counts:
        html = newsletter(links)
        seconds = best_of(3, html)
        per_link.append(seconds / links)
        print(f"{links:>6} {len(html) / 1000:>8.0f} {seconds:>8.3f} {seconds / links * 1e3:>12.3f}")
    print(f"ratio={per_link[-1] / per_link[0]:.2f}")


if __name__ == "__main__":
    main()
