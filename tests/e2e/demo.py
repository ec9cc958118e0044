"""A small demo dataset in a running ApacheServer, and the pages worth looking at.

Used by scripts/screenshots and by the phone-layout test. Everything goes through coretrack's own
services and the real HTTP surface: records through create_record, mail through the JSON
API (delivered to an SMTP server on loopback for the time of the fill), opens through the image endpoint,
a consent through the public consent page and a staff entry through consent.record.
"""

from __future__ import annotations

import html as html_lib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Message
from sqlalchemy import select
from support.apache import ADMIN_PASSWORD, STAFF_PASSWORD, ApacheServer
from support.ports import free_port

from coretrack.models import Address, Email, MailReport, User
from coretrack.people import consent, suppression
from coretrack.records import segments
from coretrack.records.store import create_record
from coretrack.sending import drafts, templates
from coretrack.settings import SettingsService
from e2e.chromium import Browser

ACCOUNTS = [
    {"name": "Acme Tools", "email": "office@acme.example", "phone": "+44 20 7946 0000", "website": "https://acme.example"},
    {"name": "Globex Logistics", "email": "hello@globex.example", "phone": "+1 555 0100", "website": ""},
    {"name": "Initech", "email": "", "phone": "", "website": ""},
]
CONTACTS = [
    ("Ada", "Lovelace", "ada@acme.example", "Acme Tools", ""),
    ("Charles", "Babbage", "charles@acme.example", "Acme Tools", ""),
    ("Grace", "Hopper", "grace@globex.example", "Globex Logistics", ""),
    ("Alan", "Turing", "alan@globex.example", "Globex Logistics", "on"),
    ("Katherine", "Johnson", "", "", ""),
]
LEADS = [("Margaret", "Hamilton", "Apollo Software", "margaret@apollo.example"),
         ("Edsger", "Dijkstra", "Shortest Paths BV", "edsger@paths.example")]
MAIL_CLIENT = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Thunderbird/128.0"
PASSWORDS = {"admin": ADMIN_PASSWORD, "sam": STAFF_PASSWORD}
IMAGE = re.compile(r'src="https?://[^/"]+(/[^"]*TrackAccess\.php\?t=[^"]+)"')
CLICK_LINK = re.compile(r'href="https?://[^/"]+(/[^"]*email/click\?c=[^"]+)"')
CONSENT_LINK = re.compile(r'href="https?://[^"]+/email/consent\?t=([^"]+)"')
PHONE_BROWSER = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.5 Mobile/15E148 Safari/604.1")


@dataclass
class Demo:
    ids: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)  # recipients' signed tokens, by first name


def _smtp(server: ApacheServer, port: int) -> None:
    with server.session() as session:
        SettingsService(session, server.config).update(
            {"smtp_host": "127.0.0.1", "smtp_port": str(port), "smtp_security": "none",
             "from_address": "crm@example.test", "from_name": "Example CRM"}, user_name="admin")


def _send(server: ApacheServer, user: str, password: str, **message) -> dict:
    reply = server.request("POST", server.prefix + "/api/emails", user=(user, password),
                           headers={"Content-Type": "application/json"}, body=json.dumps(message).encode())
    assert reply.status == 201, reply.body
    return json.loads(reply.body)


class Received(Message):
    """An SMTP handler that keeps the HTML part of every message, in the order received, and whom
    each went to (its To header)."""

    def __init__(self):
        super().__init__()
        self.html: list[str] = []
        self.to: list[str] = []

    def handle_message(self, message):
        self.to.append(message["To"])
        for part in message.walk():
            if part.get_content_type() == "text/html":
                self.html.append(part.get_payload(decode=True).decode(part.get_content_charset() or "utf-8"))


def fill(server: ApacheServer) -> Demo:
    """Records, four emails (opened, to a lead and an account, failed, scheduled) and some opens."""
    demo = Demo()
    with server.session() as session:
        for values in ACCOUNTS:
            demo.ids[values["name"]] = create_record(session, "account", values).id
        for first, last, email, account, opt_out in CONTACTS:
            contact = create_record(session, "contact", {
                "first_name": first, "last_name": last, "email": email, "phone": "",
                "account": str(demo.ids.get(account, "")), "email_opt_out": opt_out})
            demo.ids[first] = contact.id
        for first, last, company, email in LEADS:
            demo.ids[first] = create_record(session, "lead", {
                "first_name": first, "last_name": last, "company": company, "email": email, "phone": "",
                "email_opt_out": ""}).id
    with server.session() as session:
        sam = session.scalar(select(User).where(User.name == "sam"))
        demo.ids["template"] = templates.save(session, server.config, sam, {
            "name": "Welcome", "subject": "Welcome, $contacts-firstname$",
            "html": "<p>Dear $contacts-firstname$,</p><p>Thank you for choosing us at $accounts-accountname$.</p>"
                    "<p>$users-first_name$ $users-last_name$</p>"}).id
        drafts.save(session, sam, {"to": f"contact:{demo.ids['Grace']}", "subject": "Follow-up on our call",
                                   "html": "<p>Dear Grace,</p><p>As promised …</p>"})
    received = Received()
    smtp = Controller(received, hostname="127.0.0.1", port=free_port())
    smtp.start()
    try:
        _send_demo_mail(server, demo, smtp.port, received)
    finally:
        smtp.stop()
    with server.session() as session:
        sam = session.scalar(select(User).where(User.name == "sam"))
        # Contacts of the customers' accounts who opened nothing lately: Grace and Alan (Ada and Charles did).
        demo.ids["segment"] = segments.save(session, sam, None, "contact", "Customers, no open in 30 days", [
            {"field": "account.email", "op": "ends_with", "value": ".example"},
            {"field": "opened", "op": "not_within_days", "value": "30"}], shared=True).id
    _suppressions(server, demo)
    return demo


_COMPLAINT = """From: <feedback@fbl.example.net>\r
Date: Thu, 03 Dec 2026 11:00:00 +0000\r
Subject: Complaint about message from 192.0.2.1\r
Content-Type: multipart/report; report-type=feedback-report; boundary="part1"\r
\r
--part1\r
Content-Type: message/feedback-report\r
\r
Feedback-Type: abuse\r
Reporting-MTA: dns; fbl.example.net\r
Original-Rcpt-To: <carl@initech.example>\r
\r
--part1--\r
"""


def _suppressions(server: ApacheServer, demo: Demo) -> None:
    """One suppressed address of several kinds; the complaint with its ARF report kept as evidence."""
    with server.session() as session:
        report = MailReport(kind="arf", at=datetime(2026, 12, 3, 11), status="abuse", bounce_class="",
                            detail="abuse report from fbl.example.net", raw=_COMPLAINT)
        session.add(report)
        session.flush()
        for address, source, reason, evidence in (
                ("old.box@example.net", suppression.BOUNCE, "bounced: 5.1.1 user unknown", None),
                ("full.box@example.net", suppression.SOFT_BOUNCES,
                 "3 soft bounces within 7 days (rule: 3 in 7 days); the last bounced: 4.2.2 mailbox full", None),
                ("carl@initech.example", suppression.COMPLAINT_REPORT, "complained: abuse report from fbl.example.net",
                 suppression.Evidence(report_id=report.id)),
                ("no.more@example.org", suppression.LINK, "unsubscribed with the link in email 2", None)):
            suppression.opt_out(session, address, source, reason, evidence=evidence)
        session.commit()
        demo.ids["complaint"] = session.scalar(select(Address.id).where(Address.address == "carl@initech.example"))


def _send_demo_mail(server: ApacheServer, demo: Demo, smtp_port: int, received: Received) -> None:
    ids = demo.ids
    _smtp(server, smtp_port)
    staff, admin = ("sam", PASSWORDS["sam"]), ("admin", PASSWORDS["admin"])
    opened = _send(
        server, *staff, subject="Spring price list", to=[f"contact:{ids['Ada']}", f"contact:{ids['Charles']}",
                                                        f"contact:{ids['Alan']}", "buyer@example.test"],
        html="<h1>Spring prices</h1><p>Dear customer, our new prices apply from 1 April.</p>")
    ids["opened"], ids["opened by Ada"] = opened["id"], opened["recipient_list"][0]["id"]
    for html, opens in zip(received.html[:2], (2, 1), strict=True):  # Ada (sent first) opens it twice, Charles once
        for _ in range(opens):
            server.request("GET", IMAGE.search(html)[1], headers={"User-Agent": MAIL_CLIENT})
    _ask_consent(server, demo, received)
    _offer_with_links(server, demo, received)
    ids["lead mail"] = _send(server, *admin, subject="Welcome to Example CRM",
                             to=[f"lead:{ids['Margaret']}", f"account:{ids['Globex Logistics']}"],
                             html="<p>Thanks for your interest.</p>")["id"]
    _smtp(server, free_port())  # nothing listens there: this one fails, with the reason shown
    ids["failed"] = _send(server, *staff, subject="Invoice 2024-117", to=[f"contact:{ids['Grace']}"],
                          html="<p>Please find the invoice below.</p>")["id"]
    # Scheduled well ahead: it waits, cancellable, whatever the worker does meanwhile.
    ids["scheduled"] = _send(server, *staff, subject="Autumn catalogue", to=[f"lead:{ids['Edsger']}"],
                             html="<p>The autumn catalogue is out.</p>",
                             send_at=(datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%dT09:00:00Z"))["id"]


OFFER_HTML = ("<h1>Summer offer</h1><p>Two for one on every tool, all July.</p>"
              '<p><a href="https://shop.example/summer">See the offer</a></p>'
              '<p><a href="https://shop.example/sizes">Size guide</a> · <a href="https://acme.example/contact">'
              "Talk to us</a></p>")


def _offer_with_links(server: ApacheServer, demo: Demo, received: Received) -> None:
    """An email with three links to Ada, Grace, Margaret and a buyer, as if sent an hour ago: opened by
    all four; Ada and Grace click the offer, Margaret the size guide, and the buyer's mail gateway
    follows all three links at once (a scanner's burst: clicks, but not likely-human ones)."""
    sent = len(received.html)
    demo.ids["offer"] = _send(server, "sam", PASSWORDS["sam"], subject="Summer offer", html=OFFER_HTML,
                              to=[f"contact:{demo.ids['Ada']}", f"contact:{demo.ids['Grace']}",
                                  f"lead:{demo.ids['Margaret']}", "buyer@acme.example"])["id"]
    # Clicks within seconds of sending are a scanner's: this one went an hour ago.
    an_hour = timedelta(hours=1)
    with server.session() as session:
        offer = session.get(Email, demo.ids["offer"])
        for sent_now in (offer, *offer.recipients):
            sent_now.sent_at = sent_now.sent_at and sent_now.sent_at - an_hour
        session.commit()
    # (recipient in the order sent, the link positions clicked)
    for html, clicked in zip(received.html[sent:], ([0], [0], [1], [0, 1, 2]), strict=True):
        server.request("GET", IMAGE.search(html)[1], headers={"User-Agent": MAIL_CLIENT})
        links = CLICK_LINK.findall(html)
        for position in clicked:
            server.request("GET", html_lib.unescape(links[position]), headers={"User-Agent": MAIL_CLIENT})


def _ask_consent(server: ApacheServer, demo: Demo, received: Received) -> None:
    """A consent request to Charles and Grace.  Charles accepts on the consent page from his phone,
    then staff record that he withdrew by phone: a history of two changes.  Grace does not answer:
    her token shows the consent and withdrawal pages as she would see them."""
    asked = len(received.html)
    demo.ids["consent request"] = _send(
        server, "sam", PASSWORDS["sam"], subject="May we measure when you read our email?", ask_consent=True,
        to=[f"contact:{demo.ids['Charles']}", f"contact:{demo.ids['Grace']}"],
        html="<p>Dear customer,</p><p>to send you less and better mail, we would like to know when you read it."
             "</p>")["id"]
    for to, html in zip(received.to[asked:], received.html[asked:], strict=True):
        first = "Charles" if "charles@" in to else "Grace"
        demo.tokens[first] = html_lib.unescape(CONSENT_LINK.search(html)[1])
    reply = server.request("POST", f"{server.prefix}/email/consent?t={demo.tokens['Charles']}",
                           body=b"answer=accept&version=1",
                           headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": PHONE_BROWSER})
    assert reply.status == 200, reply.body
    with server.session() as session:
        consent.record(session, "charles@acme.example", consent.WITHDRAWN, consent.STAFF,
                       "Asked by phone on 3 March to stop measuring his reading", consent.Evidence(user_name="sam"))
        session.commit()


@dataclass(frozen=True)
class Page:
    name: str
    user: str  # "sam" (staff) or "admin"
    path: str
    act: Callable[[Browser], None] | None = None  # what to do on the page before looking at it
    focus: str | None = None  # the part of the page a screenshot shows (a CSS selector); None: all of it


def _compose_errors(browser: Browser) -> None:
    browser.fill("#f-to", "ada@, contact:999")
    browser.fill("#f-subject", "Hello")
    browser.fill_html("#f-html", "<p>Hello</p>")
    browser.press("Send")


def _compose_preview(browser: Browser) -> None:
    browser.fill("#f-to", "ada@acme.example, buyer@example.test")
    browser.fill("#f-subject", "Summer offer")
    browser.fill_html("#f-html", "<h1>Summer offer</h1><p>Two for one, all July.</p>")
    browser.press("Preview")


def _preview(browser: Browser) -> None:
    """Preview what the page's form holds, with a subject where it has none (a mass send)."""
    if not browser.find("#f-subject").get_attribute("value"):
        browser.fill("#f-subject", "Spring news for $contacts-firstname$")
        browser.fill_html("#f-html", "<p>Dear $contacts-firstname$, our spring news.</p>")
    browser.press("Preview")


def _submit_empty(browser: Browser) -> None:
    browser.press("Create contact")


def pages(demo: Demo, with_reports: bool) -> list[Page]:
    ids = demo.ids
    listed = [
        Page("emails", "sam", "/emails"),
        Page("emails-no-match", "sam", "/emails?status=failed&from=2001-01-01&to=2001-01-31"),
        Page("email-opened", "sam", f"/emails/{ids['opened']}"),
        Page("email-failed", "sam", f"/emails/{ids['failed']}"),
        Page("email-received", "sam", f"/emails/{ids['opened']}/recipients/{ids['opened by Ada']}"),
        Page("compose", "sam", "/emails/new"),
        Page("compose-find", "sam", "/emails/new?find=acme"),
        Page("compose-errors", "sam", "/emails/new", _compose_errors),
        Page("compose-preview", "sam", "/emails/new", _compose_preview),
        Page("compose-from-template", "sam", f"/emails/new?template={ids['template']}&contact={ids['Ada']}"
                                                f"&contact={ids['Charles']}", _preview),
        Page("compose-mass-preview", "sam", "/emails/new?audience=contacts&scope=all&q=acme", _preview),
        Page("drafts", "sam", "/emails/drafts"),
        Page("templates", "sam", "/templates"),
        Page("template", "sam", f"/templates/{ids['template']}"),
        Page("contacts", "sam", "/contacts"),
        Page("contacts-no-match", "sam", "/contacts?q=nobody-like-this"),
        Page("contact", "sam", f"/contacts/{ids['Ada']}"),
        Page("contact-consent", "sam", f"/contacts/{ids['Charles']}#consent", focus="#consent"),
        Page("contact-new-errors", "sam", "/contacts/new", _submit_empty),
        Page("contact-import", "sam", "/contacts/import"),
        Page("accounts", "sam", "/accounts"),
        Page("account", "sam", f"/accounts/{ids['Acme Tools']}"),
        Page("account-empty", "sam", f"/accounts/{ids['Initech']}"),
        Page("leads", "sam", "/leads"),
        Page("segments", "sam", "/segments"),
        Page("segment", "sam", f"/segments/{ids['segment']}"),
        Page("segment-edit", "sam", f"/segments/{ids['segment']}/edit"),
        Page("contacts-in-segment", "sam", f"/contacts?segment={ids['segment']}"),
        Page("lead", "sam", f"/leads/{ids['Margaret']}"),
        Page("contact-delete", "admin", f"/contacts/{ids['Katherine']}/delete"),
        Page("email-scheduled", "sam", f"/emails/{ids['scheduled']}"),
        Page("email-cancel", "sam", f"/emails/{ids['scheduled']}?confirm=cancel"),
        Page("my-account", "sam", "/account"),
        Page("notifications", "sam", "/notifications"),
        Page("settings", "admin", "/settings"),
        Page("settings-tracking", "admin", "/settings#tracking-policies", focus="fieldset:has(#tracking-policies)"),
        Page("settings-mail-authentication", "admin", "/settings#mail-authentication", focus="#mail-authentication"),
        Page("settings-deliverability", "admin", "/settings/deliverability"),
        Page("consent-page", "sam", f"/email/consent?t={demo.tokens['Grace']}"),  # a recipient's page: no login needed
        Page("stop-measuring-page", "sam", f"/email/stop-measuring?t={demo.tokens['Grace']}"),
        Page("users", "admin", "/users"),
        Page("user-disable", "admin", "/users/sam/disable"),
        Page("erase", "admin", "/erase?address=grace@globex.example"),
        Page("suppressions", "admin", "/suppressions"),
        Page("suppression-complaint", "admin", f"/suppressions/{ids['complaint']}"),
        Page("forbidden", "sam", "/settings"),
        Page("not-found", "sam", "/emails/999999"),
    ]
    if with_reports:
        listed += [
            Page("reports", "sam", "/reports"),
            Page("email-rates", "sam", f"/emails/{ids['offer']}#rates-heading", focus=".rates"),
            Page("email-links", "sam", f"/reports/emails/{ids['offer']}/links"),
            Page("click-map", "sam", f"/reports/emails/{ids['offer']}/links#click-map",
                 focus="iframe[title^='Click map']"),
            Page("reports-domains", "sam", "/reports/domains"),
            Page("reports-compare", "sam", f"/reports/compare?email={ids['opened']}&email={ids['offer']}"),
            Page("reports-compare-error", "sam", f"/reports/compare?email={ids['offer']}"),
        ]
    return listed
