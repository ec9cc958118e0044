"""The mail DNS check, against a real DNS server (dnsmasq) serving good and broken records: SPF lets
the mail server send, the DKIM record holds the install's key, DMARC exists and passes for the From
domain, one-click unsubscribe is signed and HTTPS; each problem named with its fix, on the settings'
Deliverability page (its checklist of Gmail's, Yahoo's and Outlook.com's bulk-sender rules) and in
``coretrack doctor``."""

from __future__ import annotations

import dataclasses

import pytest

from coretrack import doctor
from coretrack.sending import dkim_signing, dns_check
from coretrack.settings import SettingsService

pytestmark = pytest.mark.slow

MAIL_SERVER = "192.0.2.25"


@pytest.fixture
def config(config, dns_server):
    """The app asks the test's own DNS server."""
    return dataclasses.replace(config, dns_server=dns_server.address)


def set_up(db, config, domain: str, public_url: str = "https://crm.good.test", **more: str) -> str:
    """Mail from crm@<domain> through mail.<domain>, signed with a new key; that key's record text."""
    settings = SettingsService(db, config)
    settings.store_generated("dkim_private_key", dkim_signing.new_key(), "admin")
    settings.update({"from_address": f"crm@{domain}", "smtp_host": f"mail.{domain}", "dkim_enabled": "true",
                     "public_url": public_url, **more}, "admin")
    return dkim_signing.dns_record(settings.get("dkim_private_key"))


def rules(page) -> dict[str, tuple[bool, str]]:
    """The checklist's rows: rule -> (met, what was found and the fix)."""
    return {row.select("td")[0].get_text(strip=True): ("unmet" not in row["class"],
                                                 " ".join(row.select("td")[3].get_text(" ").split()))
            for row in page.html.select("#checklist tbody tr")}


def test_good_records_meet_every_rule_of_the_checklist(admin, db, config, dns_server):
    record = set_up(db, config, "good.test")
    (dns_server.a("mail.good.test", MAIL_SERVER)
     .txt("good.test", "v=spf1 mx include:_spf.provider.test -all").mx("good.test", "in.good.test")
     .a("in.good.test", "198.51.100.7").txt("_spf.provider.test", "v=spf1 ip4:192.0.2.0/24 ~all")
     .txt("coretrack._domainkey.good.test", record)
     .txt("_dmarc.good.test", "v=DMARC1; p=reject; adkim=s; rua=mailto:dmarc@good.test").start())
    page = admin.get("/settings/deliverability")
    found = rules(page)
    assert len(found) == 5 and all(met for met, _ in found.values()), found
    assert "lets the mail server mail.good.test (192.0.2.25) send" in page.text
    assert "publishes DMARC with p=reject" in page.text
    assert page.html.select_one("#dkim-record-text").get_text(strip=True) == record


def test_broken_records_name_each_problem_with_its_fix(admin, db, config, dns_server):
    set_up(db, config, "broken.test", public_url="http://crm.broken.test")
    (dns_server.a("mail.broken.test", MAIL_SERVER).txt("broken.test", "v=spf1 ip4:198.51.100.1 -all")
     .txt("coretrack._domainkey.broken.test", dkim_signing.dns_record(dkim_signing.new_key())).start())
    found = rules(admin.get("/settings/deliverability"))
    assert not any(met for met, _ in found.values()), found
    spf, dkim, dmarc, alignment, unsubscribe = (text for _, text in found.values())
    assert "gives fail for the mail server mail.broken.test (192.0.2.25)" in spf
    assert "Fix: add ip4:192.0.2.25 to it, before its all term" in spf
    assert "holds another key than this install's" in dkim and "Fix: replace its text: v=DKIM1; k=rsa; p=" in dkim
    assert "broken.test has no DMARC record" in dmarc
    assert 'Fix: publish a TXT record at _dmarc.broken.test: "v=DMARC1; p=none' in dmarc
    assert "DMARC fails" in alignment
    assert "not https://" in unsubscribe and "Fix: serve coretrack over HTTPS" in unsubscribe


def test_missing_records_are_named_with_the_records_to_publish(admin, db, config, dns_server):
    record = set_up(db, config, "bare.test")
    dns_server.a("mail.bare.test", MAIL_SERVER).start()
    found = rules(admin.get("/settings/deliverability"))
    assert 'bare.test has no SPF record Fix: publish a TXT record at bare.test: "v=spf1 ip4:192.0.2.25 ~all"' \
        in found["SPF lets the mail server send for the return path's domain"][1]
    assert f'Fix: publish a TXT record at coretrack._domainkey.bare.test: "{record}"' in \
        found["Every message is DKIM-signed with a key published in DNS"][1]


def test_a_published_key_with_signing_off_or_a_foreign_signing_domain_fails(db, config, dns_server):
    record = set_up(db, config, "good.test", dkim_enabled="false", dkim_domain="other.test")
    (dns_server.a("mail.good.test", MAIL_SERVER).txt("good.test", "v=spf1 -all")
     .txt("coretrack._domainkey.other.test", record).txt("_dmarc.good.test", "v=DMARC1; p=none").start())
    setup = dns_check.MailSetup.of(SettingsService(db, config))
    findings = {finding.rule: finding for finding in dns_check.check(config, setup)}
    assert not findings["dkim"].ok and "messages go unsigned" in findings["dkim"].what
    assert "turn on 'Sign outgoing mail with DKIM'" in findings["dkim"].fix
    assert not findings["alignment"].ok and "set the DKIM signing domain to good.test" in findings["alignment"].fix


def test_spf_records_a_receiver_refuses_are_named(db, config, dns_server):
    set_up(db, config, "twice.test")
    set_up_loop = [f"v=spf1 include:loop{n + 1}.test -all" for n in range(12)]
    dns_server.a("mail.twice.test", MAIL_SERVER).txt("twice.test", "v=spf1 a -all").txt("twice.test", "v=spf1 -all")
    for number, text in enumerate(set_up_loop):
        dns_server.txt(f"loop{number}.test", text)
    dns_server.start()
    setup = dns_check.MailSetup.of(SettingsService(db, config))
    (spf, *_) = dns_check.check(config, setup)
    assert "has 2 SPF records" in spf.what and "merge them" in spf.what
    deep = dns_check.check(config, dataclasses.replace(setup, return_domain="loop0.test"))[0]
    assert "more than 10 DNS lookups" in deep.what


def test_a_dns_server_that_does_not_answer_is_said_so(db, config, dns_server):
    set_up(db, config, "good.test")  # the server is never started
    setup = dns_check.MailSetup.of(SettingsService(db, config))
    findings = dns_check.check(dataclasses.replace(config, dns_server="127.0.0.1:9"), setup)
    assert findings and not any(finding.ok for finding in findings)
    assert "the DNS could not be asked" in findings[0].what and "CORETRACK_DNS_SERVER" in findings[0].fix


def test_doctor_reports_the_mail_dns_with_each_fix(db, config, dns_server):
    record = set_up(db, config, "good.test")
    (dns_server.a("mail.good.test", MAIL_SERVER).txt("good.test", f"v=spf1 ip4:{MAIL_SERVER} -all")
     .txt("coretrack._domainkey.good.test", record).start())
    checks = list(doctor.check_mail_dns(config))
    assert [check.ok for check in checks] == [True, True, False, True, True]
    lines = "\n".join(check.line() for check in checks)
    assert "ok    SPF: the SPF record of good.test lets the mail server" in lines
    assert "FAIL  DMARC: good.test has no DMARC record\n      fix: publish a TXT record at _dmarc.good.test" in lines


def test_doctor_leaves_a_fresh_installs_mail_unchecked(config):
    (check,) = doctor.check_mail_dns(config)
    assert check.ok and "localhost is not a public one yet" in check.what


def test_spf_follows_redirects_networks_and_ipv6(db, config, dns_server):
    set_up(db, config, "moved.test")
    (dns_server.a("mail.moved.test", MAIL_SERVER).a("mail.moved.test", "2001:db8::25")
     .txt("moved.test", "v=spf1 redirect=_spf.moved.test").a("relay.moved.test", "192.0.2.1")
     .txt("_spf.moved.test", "v=spf1 a:relay.moved.test/24 ip6:2001:db8::/64 -all").start())
    setup = dns_check.MailSetup.of(SettingsService(db, config))
    spf = dns_check.check(config, setup)[0]
    assert spf.ok, spf
    assert "(192.0.2.25, 2001:db8::25)" in spf.what
    narrow = dataclasses.replace(setup, mail_server="2001:db8:1::25")
    failing = dns_check.check(config, narrow)[0]
    assert not failing.ok and "Fix: add ip6:2001:db8:1::25" in f"Fix: {failing.fix}"


def test_relaxed_alignment_compares_registered_domains_by_the_public_suffix_list():
    assert dns_check.aligned("mail.example.co.uk", "example.co.uk", strict=False)
    assert not dns_check.aligned("example.co.uk", "other.co.uk", strict=False)  # two registrants under co.uk
    assert not dns_check.aligned("alice.github.io", "bob.github.io", strict=False)  # a private suffix too
    assert not dns_check.aligned("mail.example.com", "example.com", strict=True)
