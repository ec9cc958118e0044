"""Clicks: links rewritten to a signed redirect per recipient and link; each click recorded and sent
only to the URL stored for that link; scanners marked; never an open redirect."""

from __future__ import annotations

import re
from datetime import timedelta
from email import message_from_bytes, policy
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select
from support.constants import PUBLIC_URL

from coretrack.models import ClickEvent, Email, EmailLink, Recipient, utcnow
from coretrack.sending.mime import MessageTemplate
from coretrack.tracking import click_verdicts, clicks, tokens
from coretrack.tracking.counting import EVENTS_PER_RECIPIENT_PER_MINUTE

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
HTML = (
    '<html><body><p><a href="https://shop.example.com/spring?a=1&amp;b=2">Spring</a> '
    '<a href="mailto:sales@example.com">mail us</a> <a href="tel:+4912345">call</a> '
    '<a href="#top">top</a> <a href="javascript:alert(1)">js</a> '
    '<a href="data:text/html,<script>alert(1)</script>">data</a> '
    f'<a href="{PUBLIC_URL}/unsubscribe?t=x">unsubscribe</a> '
    "<a title='x href=\"https://no.example\"' href='http://blog.example.org/post'>Blog</a></p></body></html>"
)
STORED = ["https://shop.example.com/spring?a=1&b=2", "http://blog.example.org/post"]
CLICK = re.compile(r'href="(' + re.escape(PUBLIC_URL) + r'/email/click\?c=[^"]+)"')


@pytest.fixture
def email_fields():
    """The email these tests send unless they name a field (the send fixture's defaults)."""
    return {"to": ["ann@example.test", "bob@example.test"], "subject": "Spring", "html": HTML}


def received(sink) -> dict[str, object]:
    return {mail.rcpt_tos[0]: mail.message for mail in sink.received}


def click_links(message) -> list[str]:
    return CLICK.findall(message.get_body(preferencelist=("html",)).get_content())


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path.removeprefix(urlsplit(PUBLIC_URL).path) + "?" + parts.query


def follow(anon, url: str, status: int = 302, user_agent: str = FIREFOX, method: str = "get"):
    return getattr(anon, method)(path_of(url), headers={"User-Agent": user_agent}, status=status,
                                 extra_environ={"REMOTE_ADDR": "203.0.113.77"})


def read_an_hour_ago(db, email: Email) -> None:
    """Sets the email's recipients' send an hour back: a click seconds after the send is a scanner's
    (no one could have read the message yet), and these tests click at once."""
    for recipient in email.recipients:
        recipient.sent_at = utcnow() - timedelta(hours=1)
    db.commit()


@pytest.fixture
def sent(app, db, users, smtp_settings, send):
    email = send().email
    read_an_hour_ago(db, email)
    return email, received(smtp_settings[0])


def test_only_http_links_outside_the_install_are_rewritten_and_stored(db, sent):
    email, messages = sent
    assert [link.url for link in db.scalars(select(EmailLink).where(EmailLink.email_id == email.id)
                                            .order_by(EmailLink.position))] == STORED
    html = messages["ann@example.test"].get_body(preferencelist=("html",)).get_content()
    assert len(click_links(messages["ann@example.test"])) == 2
    for untouched in ('href="mailto:sales@example.com"', 'href="tel:+4912345"', 'href="#top"',
                      f'href="{PUBLIC_URL}/unsubscribe?t=x"', 'title="x href=&quot;https://no.example&quot;"'):
        assert untouched in html
    # Links that would run or embed something are no links at all: the HTML is cleaned when composed.
    assert "javascript:" not in html and "data:text/html" not in html
    assert "shop.example.com" not in html and "blog.example.org" not in html
    text = messages["ann@example.test"].get_body(preferencelist=("plain",)).get_content()
    assert "https://shop.example.com/spring?a=1&b=2" in text and "http://blog.example.org/post" in text
    assert "/email/click" not in text


def test_each_recipient_and_link_has_its_own_signed_url(sent):
    _, messages = sent
    ann, bob = click_links(messages["ann@example.test"]), click_links(messages["bob@example.test"])
    assert len({*ann, *bob}) == 4


def test_a_click_is_counted_and_redirected_to_the_stored_url(app, db, anon, sent):
    email, messages = sent
    response = follow(anon, click_links(messages["ann@example.test"])[0])
    assert response.headers["Location"] == STORED[0]
    db.expire_all()
    ann, bob = email.recipients
    assert (ann.click_count, bob.click_count) == (1, 0)
    assert [link.click_count for link in email.links] == [1, 0]
    event = db.scalars(select(ClickEvent)).one()
    assert (event.recipient_id, event.link_id, event.verdict, event.user_agent, event.ip) == (
        ann.id, email.links[0].id, "human", FIREFOX, "203.0.113.0")  # truncated: the default IP storage
    assert ann.first_human_at == event.at


def test_head_redirects_the_same_and_is_recorded_like_a_get(db, anon, sent):
    """mod_wsgi gives the application a HEAD as a GET: both are recorded, everywhere alike."""
    email, messages = sent
    response = follow(anon, click_links(messages["ann@example.test"])[1], method="head")
    assert response.headers["Location"] == STORED[1]
    db.expire_all()
    assert email.recipients[0].click_count == 1


@pytest.mark.parametrize("extra", [
    "&c=0.x.y", "&url=https://evil.example", "&next=//evil.example", "&to=%5C%5Cevil.example",
    "&r=/%2F%2Fevil.example", "&u=javascript:alert(1)", "&redirect=data:text/html,x",
])
def test_nothing_in_the_query_changes_where_a_click_goes(anon, sent, extra):
    _, messages = sent
    assert follow(anon, click_links(messages["ann@example.test"])[0] + extra).headers["Location"] == STORED[0]


def test_links_the_sender_wrote_to_other_schemes_never_become_redirects(db, sent):
    email, _ = sent
    assert not any(link.url.startswith(("javascript:", "data:", "mailto:", "tel:", "#", "//"))
                   for link in email.links)
    for url in ("javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,x", "//evil.example/x",
                "\\\\evil.example/x", "/%2F%2Fevil.example", "https:evil.example", "java\tscript:alert(1)"):
        assert clicks.trackable_links(f'<a href="{url}">x</a>', PUBLIC_URL) == []


def bad_queries(app, messages) -> dict[str, str]:
    good = click_links(messages["ann@example.test"])[0]
    query = urlsplit(good).query
    position, token, mac = query.removeprefix("c=").split(".", 1)[0], *query.split(".", 1)[1].rsplit(".", 1)
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    forged = tokens.new_token(b"another install's secret")
    bob_token = urlsplit(click_links(messages["bob@example.test"])[0]).query.split(".", 1)[1].rsplit(".", 1)[0]
    return {
        "missing": "",
        "empty": "c=",
        "tampered mac": f"c={position}.{token}.{flipped}",
        "another link's position": f"c=1.{token}.{mac}",
        "another recipient's token": f"c={position}.{bob_token}.{mac}",
        "forged token": f"c={position}.{forged}.{clicks.link_mac(b'another', forged, 0)}",
        "no link at that position": f"c=7.{token}.{clicks.link_mac(app.secret, token, 7)}",
        "negative position": f"c=-1.{token}.{mac}",
        "not a number": f"c=%2F%2Fevil.{token}.{mac}",
        "only a url": "url=https://evil.example",
    }


def test_bad_tokens_get_one_neutral_answer_and_record_nothing(app, db, anon, sent):
    email, messages = sent
    answers = set()
    for name, query in bad_queries(app, messages).items():
        response = anon.get(f"/email/click?{query}", headers={"User-Agent": FIREFOX}, status=404)
        assert "Location" not in response.headers, name
        answers.add((response.status, response.content_type, response.body))
    assert len(answers) == 1
    db.expire_all()
    assert db.scalars(select(ClickEvent)).all() == [] and email.recipients[0].click_count == 0


def test_a_token_of_another_emails_link_leads_only_to_that_emails_link(app, db, users, anon, smtp_settings, sent, send):
    first, messages = sent
    smtp_settings[0].received.clear()
    second = send(html='<a href="https://other.example/">x</a>', to=["ann@example.test"]).email
    other = click_links(received(smtp_settings[0])["ann@example.test"])[0]
    assert follow(anon, other).headers["Location"] == "https://other.example/"
    # the first email's token with the second email's MAC for position 0: not signed for each other
    first_query = urlsplit(click_links(messages["ann@example.test"])[0]).query
    other_mac = urlsplit(other).query.rsplit(".", 1)[1]
    anon.get(f"/email/click?{first_query.rsplit('.', 1)[0]}.{other_mac}", status=404)
    db.expire_all()
    assert [link.click_count for link in second.links] == [1] and [link.click_count for link in first.links] == [0, 0]


@pytest.mark.parametrize("agent", ["Mozilla/5.0 (compatible; Barracuda Sentinel)", "python-requests/2.31",
                                   "curl/8.5.0", ""])
def test_a_known_scanner_agent_is_marked_scanner_and_tells_no_one(db, anon, sent, agent):
    email, messages = sent
    follow(anon, click_links(messages["ann@example.test"])[0], user_agent=agent)
    db.expire_all()
    assert db.scalars(select(ClickEvent.verdict)).all() == ["scanner"]
    assert email.recipients[0].click_count == 1 and email.recipients[0].first_human_at is None


def test_several_links_within_two_seconds_are_a_scanner_even_the_first(db, anon, sent):
    email, messages = sent
    for url in click_links(messages["ann@example.test"]):
        follow(anon, url)
    db.expire_all()
    assert db.scalars(select(ClickEvent.verdict).order_by(ClickEvent.id)).all() == ["scanner", "scanner"]
    assert email.recipients[0].click_count == 2


def test_the_same_link_twice_or_links_apart_in_time_are_a_persons(db, sent):
    email, _ = sent
    ann = email.recipients[0]
    at = utcnow()
    first, second = email.links
    assert clicks.record(db, ann, first, "203.0.113.9", FIREFOX, "full", at) == "human"
    assert clicks.record(db, ann, first, "203.0.113.9", FIREFOX, "full", at + timedelta(seconds=1)) == "human"
    assert clicks.record(db, ann, second, "203.0.113.9", FIREFOX, "full", at + timedelta(seconds=10)) == "human"
    db.expire_all()
    assert ann.click_count == 3 and [link.click_count for link in email.links] == [2, 1]


def test_a_click_before_the_message_was_sent_is_a_scanners(db, sent):
    email, _ = sent
    ann = email.recipients[0]
    assert ann.sent_at is not None
    assert clicks.record(db, ann, email.links[0], "", FIREFOX, "none", ann.sent_at - timedelta(seconds=1)) == "scanner"


def test_clicks_are_not_recorded_while_tracking_is_off_but_still_redirect(app, db, anon, sent):
    from coretrack.settings import SettingsService
    email, messages = sent
    SettingsService(db, app.config).update({"tracking_disabled": "true"}, user_name="test")
    assert follow(anon, click_links(messages["ann@example.test"])[0]).headers["Location"] == STORED[0]
    db.expire_all()
    assert email.recipients[0].click_count == 0


def test_untracked_email_keeps_its_links(app, db, users, smtp_settings, send):
    from coretrack.settings import SettingsService
    SettingsService(db, app.config).update({"tracking_disabled": "true"}, user_name="test")
    email = send(to=["ann@example.test"]).email
    html = received(smtp_settings[0])["ann@example.test"].get_body(preferencelist=("html",)).get_content()
    assert "https://shop.example.com/spring?a=1&amp;b=2" in html and "/email/click" not in html
    assert email.links == []


@pytest.mark.parametrize("padding", range(0, 80, 3))
def test_every_link_survives_quoted_printable_soft_breaks(padding):
    secret = b"k"
    links = [f"https://example.com/{n}" for n in range(5)]
    html = "x" * padding + "".join(f'<a href="{url}">link {n}</a>' + "y" * padding for n, url in enumerate(links))
    template = MessageTemplate(from_address="crm@example.test", from_name="CRM", subject="Hi", html=html,
                               public_url=PUBLIC_URL, links=links, secret=secret)
    token = tokens.new_token(secret)
    message = message_from_bytes(template.render("ann@example.test", "", token), policy=policy.default)
    rewritten = click_links(message)
    assert rewritten == [clicks.click_url(PUBLIC_URL, n, token, clicks.link_mac(secret, token, n)) for n in range(5)]
    for url, position in zip(rewritten, range(5), strict=True):
        assert clicks.parse(secret, urlsplit(url).query) == (token, position)


def test_recipients_without_clicks_count_zero(db, sent):
    email, _ = sent
    assert db.scalars(select(Recipient.click_count).where(Recipient.email_id == email.id)).all() == [0, 0]


def test_clicks_are_shown_per_recipient_and_link_in_pages_reports_csv_and_api(app, db, users, staff, anon,
                                                                               smtp_settings, send):
    from coretrack import notifications
    from coretrack.models import Contact

    ada = Contact(first_name="Ada", last_name="Lovelace", email="ada@example.test")
    db.add(ada)
    db.commit()
    email = send(to=[f"contact:{ada.id}", "bob@example.test"]).email
    read_an_hour_ago(db, email)
    follow(anon, click_links(received(smtp_settings[0])["ada@example.test"])[1])

    page = staff.get(f"/emails/{email.id}").html
    headings = [heading.text for heading in page.select("#recipients + div thead th")]
    clicks_column = headings.index("Clicks")
    recipients = {row.select("td")[0].text: row.select("td")[clicks_column].text
                  for row in page.select("#recipients + div tbody tr")}
    assert recipients == {"ada@example.test": "1", "bob@example.test": "0"}
    links = [[cell.text for cell in row.select("td")][:4]
             for row in page.select("table[aria-labelledby=links] tbody tr")]
    assert links == [["1", STORED[0], "0", "0"], ["2", STORED[1], "1", "1"]]  # # | URL | Clicks | Likely-human clicks

    record = staff.get(f"/contacts/{ada.id}").html
    assert record.select("#emails + div thead th")[-2].text == "Clicks"
    assert record.select("#emails + div tbody tr td")[-2].text == "1"

    header, row = staff.get("/reports/emails.csv").body.decode("utf-8-sig").splitlines()
    assert dict(zip(header.split(","), row.split(","), strict=True))['"Clicks"'] == '"1"'
    recipients_report = staff.get("/api/reports/recipients", params={"sort": "address"}).json
    assert [(row["address"], row["clicks"]) for row in recipients_report["rows"]] == [
        ("ada@example.test", 1), ("bob@example.test", 0)]

    detail = staff.get(f"/api/emails/{email.id}").json
    assert [(r["address"], r["click_count"]) for r in detail["recipient_list"]] == [
        ("ada@example.test", 1), ("bob@example.test", 0)]
    assert [(link["position"], link["url"], link["click_count"]) for link in detail["links"]] == [
        (0, STORED[0], 0), (1, STORED[1], 1)]
    related = staff.get(f"/api/records/contact/{ada.id}/emails").json
    assert [row["click_count"] for row in related["emails"]] == [1]

    # The first human engagement was a click: the sender is told so.
    notifications.notify(app.Session, app.config)
    assert "Ada" in staff.get("/notifications").html.select_one("tbody tr").text
    assert "clicked a link in" in staff.get("/notifications").html.select_one("tbody tr").text


# -- clicks are folded like loads: a bounded number of events a recipient a minute, the count exact ----


def click_rows(db, recipient_id: int) -> list[tuple[object, int]]:
    db.expire_all()
    return [(at.replace(second=0, microsecond=0), hits) for at, hits in db.execute(
        select(ClickEvent.at, ClickEvent.hits).where(ClickEvent.recipient_id == recipient_id)
        .order_by(ClickEvent.at, ClickEvent.id))]


def test_clicks_past_the_per_minute_bound_are_counted_in_the_minutes_last_event(db, sent):
    email, _ = sent
    ann, bob = email.recipients
    bound = EVENTS_PER_RECIPIENT_PER_MINUTE
    minute = utcnow().replace(second=0, microsecond=0) + timedelta(minutes=5)
    for second in range(30):
        clicks.record(db, ann, email.links[0], "203.0.113.9", FIREFOX, "full", minute + timedelta(seconds=second))
    clicks.record(db, bob, email.links[0], "203.0.113.9", FIREFOX, "full", minute + timedelta(seconds=59))
    clicks.record(db, ann, email.links[0], "203.0.113.9", FIREFOX, "full", minute + timedelta(seconds=61))
    rows = click_rows(db, ann.id)
    assert rows == [(minute, 1)] * (bound - 1) + [(minute, 30 - bound + 1), (minute + timedelta(minutes=1), 1)]
    assert click_rows(db, bob.id) == [(minute, 1)]  # the bound is each recipient's own
    assert (ann.click_count, email.links[0].click_count) == (31, 32)


def through_apache_and_counted(server, token: str, clicks_made: int, workers: int) -> list:
    from concurrent.futures import ThreadPoolExecutor

    mac = clicks.link_mac(server.config.secret_key(), token, 0)

    def one(_):
        reply = server.request("GET", f"{server.prefix}{clicks.CLICK_PATH}?c=0.{token}.{mac}",
                               headers={"User-Agent": FIREFOX})
        return reply.status, reply.headers.get("location")

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(one, range(clicks_made)))


@pytest.mark.slow
def test_a_burst_of_concurrent_clicks_through_apache_keeps_a_bounded_number_of_events_and_counts_each(
        empty_database_url):
    from support.apache import ApacheServer
    from support.hit_load import make_recipients

    server = ApacheServer("site", "/crm", database_url=empty_database_url, processes=2, threads=5).start()
    try:
        with server.session() as session:
            ann, bob = make_recipients(session, server.config.secret_key(), 2)
            for recipient in (ann, bob):
                recipient.sent_at = utcnow() - timedelta(hours=1)
            session.get(Email, ann.email_id).links = [EmailLink(position=0, url=STORED[0])]
            session.commit()
        burst = 300
        answers = through_apache_and_counted(server, ann.token, burst, workers=16)
        assert answers == [(302, STORED[0])] * burst
        assert through_apache_and_counted(server, bob.token, 1, workers=1) == [(302, STORED[0])]
        with server.session() as session:
            rows = click_rows(session, ann.id)
            minutes = {minute for minute, _ in rows}
            assert session.get(Recipient, ann.id).click_count == sum(hits for _, hits in rows) == burst
            # At most the bound's number of events in each minute the burst touched (one, or two
            # when it crossed a minute's end).
            assert all(sum(1 for at, _ in rows if at == minute) <= EVENTS_PER_RECIPIENT_PER_MINUTE
                       for minute in minutes)
            assert len(rows) <= EVENTS_PER_RECIPIENT_PER_MINUTE * len(minutes) and len(minutes) <= 2
            assert click_rows(session, bob.id)[0][1] == 1
            assert session.scalars(select(EmailLink.click_count)).all() == [burst + 1]
    finally:
        server.stop()


def test_likely_human_clicks_are_counted_beside_all_clicks_and_revised_with_the_burst_that_shows_a_scanner(
        app, db, send):
    result = send(to=["ann@example.test"], html='<a href="https://a.example/">a</a> <a href="https://b.example/">b</a>')
    recipient = result.email.recipients[0]
    first, second = sorted(result.email.links, key=lambda link: link.position)
    browser = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
    db.get(Recipient, recipient.id).sent_at = utcnow() - timedelta(hours=1)
    db.commit()
    now = utcnow()
    assert clicks.record(db, recipient, first, "198.51.100.7", browser, "truncated", at=now) == "human"
    db.expire_all()
    assert (db.get(Recipient, recipient.id).human_clicks, db.get(EmailLink, first.id).human_clicks) == (1, 1)
    # A second link half a second later: a link scanner's burst, which shows the first click was one too.
    assert clicks.record(db, recipient, second, "198.51.100.7", browser, "truncated",
                                at=now + timedelta(milliseconds=500)) == "scanner"
    db.expire_all()
    assert db.get(Recipient, recipient.id).click_count == 2
    assert (db.get(Recipient, recipient.id).human_clicks, db.get(EmailLink, first.id).human_clicks,
            db.get(EmailLink, second.id).human_clicks) == (0, 0, 0)
    assert {event.reason for event in db.query(ClickEvent)} == {click_verdicts.PAIR_REASON}
    assert clicks.record(db, recipient, first, "198.51.100.7", "curl/8.0", "truncated",
                                at=now + timedelta(minutes=5)) == "scanner"
    assert db.query(ClickEvent).order_by(ClickEvent.id.desc()).first().reason == "security scanner's agent"
