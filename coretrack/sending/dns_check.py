"""The mail DNS check: whether what this install sends passes SPF, DKIM and DMARC at the receivers,
read from the DNS (dnspython), each problem named with its fix; and the checklist of Gmail's, Yahoo's
and Outlook.com's bulk-sender rules that this can judge.  The settings' Deliverability page and
``coretrack doctor`` show it.  The resolver is the system's, or CORETRACK_DNS_SERVER's."""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import dns.exception
import dns.resolver
from publicsuffixlist import PublicSuffixList

from ..config import Config
from ..settings import SettingsService
from . import dkim_signing, spf

# Seconds the whole of one lookup may take: the page waits for the check.
LIFETIME = 4.0
# Addresses that never reach a receiver: a mail server there hands mail on from another, public one.
_INTERNAL = [ipaddress.ip_network(net) for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                                   "127.0.0.0/8", "169.254.0.0/16", "::1/128", "fc00::/7", "fe80::/10")]
SPF, DKIM, DMARC, ALIGNMENT, UNSUBSCRIBE = "spf", "dkim", "dmarc", "alignment", "unsubscribe"
# The checklist: each rule of the providers' bulk-sender requirements this check can judge.
RULES = (
    (SPF, "SPF lets the mail server send for the return path's domain", "Gmail, Yahoo, Outlook.com"),
    (DKIM, "Every message is DKIM-signed with a key published in DNS", "Gmail, Yahoo, Outlook.com"),
    (DMARC, "The From address's domain publishes a DMARC record", "Gmail, Yahoo, Outlook.com"),
    (ALIGNMENT, "DMARC passes: SPF or DKIM passes for the From address's domain", "Gmail, Yahoo, Outlook.com"),
    (UNSUBSCRIBE, "One-click unsubscribe: List-Unsubscribe and List-Unsubscribe-Post (RFC 8058), signed by "
                  "DKIM, to an https:// address", "Gmail, Yahoo"),
)


@dataclass(frozen=True)
class Finding:
    rule: str  # one of RULES
    ok: bool
    what: str  # what was found, as a sentence
    fix: str = ""


@dataclass(frozen=True)
class Rule:
    name: str
    providers: str
    met: bool
    findings: list[Finding]


@dataclass(frozen=True)
class MailSetup:
    """What the check compares the DNS with: the install's settings."""

    from_domain: str
    return_domain: str  # the envelope sender's: the bounce address's, else the From address's
    mail_server: str
    signing: bool
    selector: str
    signing_domain: str
    private_key: str = field(repr=False)  # "": none generated; never in a log line or a traceback's repr
    public_url: str

    @classmethod
    def of(cls, settings: SettingsService) -> MailSetup:
        from_domain = settings.get("from_address").rpartition("@")[2].lower()
        bounce = settings.get("bounce_address")
        return cls(from_domain=from_domain, return_domain=bounce.rpartition("@")[2].lower() if bounce else from_domain,
                   mail_server=settings.get("smtp_host"), signing=settings.get("dkim_enabled"),
                   selector=settings.get("dkim_selector"), signing_domain=settings.dkim_domain(),
                   private_key=settings.get("dkim_private_key"), public_url=settings.get("public_url"))

    @property
    def local(self) -> bool:
        """Whether the From address is on no public domain (as on a fresh install: crm@localhost)."""
        return "." not in self.from_domain or self.from_domain.endswith(".localhost")


def resolver(config: Config) -> dns.resolver.Resolver:
    """The system's resolver, or CORETRACK_DNS_SERVER's (HOST, HOST:PORT, [IPv6]:PORT); ValueError if unusable."""
    if not config.dns_server:
        found = dns.resolver.Resolver()
    else:
        found = dns.resolver.Resolver(configure=False)
        host, port = config.dns_server, "53"
        if host.startswith("["):
            host, _, port = host[1:].partition("]:")
            host = host.rstrip("]")
        elif host.count(":") == 1:
            host, _, port = host.partition(":")
        try:
            found.nameservers = [str(ipaddress.ip_address(host))]
            found.port = int(port or "53")
        except ValueError:
            raise ValueError(f"CORETRACK_DNS_SERVER must be an IP address with an optional :port, "
                             f"not {config.dns_server!r}") from None
    found.lifetime = LIFETIME
    return found


def _answers(resolver: dns.resolver.Resolver, name: str, kind: str) -> list[Any]:
    """The records (dnspython's rdata of ``kind``); none for a name that does not exist."""
    try:
        return list(resolver.resolve(name, kind, search=False))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        raise spf.LookupFailed(f"the DNS gave no answer for {name} ({kind}): {exc}") from None


def lookups(resolver: dns.resolver.Resolver) -> spf.Dns:
    """The DNS questions the checks ask, through ``resolver``."""
    def txt(name: str) -> list[str]:
        return [b"".join(answer.strings).decode("utf-8", "replace") for answer in _answers(resolver, name, "TXT")]

    def addresses(name: str) -> list[spf.IpAddress]:
        return [ipaddress.ip_address(answer.to_text()) for kind in ("A", "AAAA")
                for answer in _answers(resolver, name, kind)]

    def mail_hosts(name: str) -> list[str]:
        return [answer.exchange.to_text().rstrip(".") for answer in _answers(resolver, name, "MX")]

    return spf.Dns(txt, addresses, mail_hosts)


@functools.cache
def _public_suffixes() -> PublicSuffixList:
    return PublicSuffixList()  # the list the package ships, read once


def organisational(domain: str) -> str:
    """The domain's registered name by the Public Suffix List (example.co.uk for mail.example.co.uk),
    which DMARC's relaxed alignment compares; a public suffix itself stands for itself."""
    name = domain.lower().rstrip(".")
    return _public_suffixes().privatesuffix(name) or name


def aligned(domain: str, from_domain: str, strict: bool) -> bool:
    return domain == from_domain if strict else organisational(domain) == organisational(from_domain)


def tags(record: str) -> dict[str, str]:
    """A DKIM or DMARC record's tags (RFC 6376 3.2), names lower-case."""
    found = {}
    for part in record.split(";"):
        name, equals, value = part.partition("=")
        if equals:
            found[name.strip().lower()] = value.strip()
    return found


def check_spf(dns_: spf.Dns, setup: MailSetup) -> tuple[Finding, bool]:
    """Whether SPF passes for the mail server's every address; (finding, passes)."""
    domain, server = setup.return_domain, setup.mail_server
    try:
        servers = [ipaddress.ip_address(server)]
    except ValueError:
        servers = dns_.addresses(server)
    if not servers:
        return Finding(SPF, False, f"the mail server {server} has no address in DNS",
                       "correct the Outgoing mail server setting"), False
    try:
        verdicts = [(address, spf.check(dns_, domain, address)) for address in servers]
    except spf.SpfError as exc:
        return Finding(SPF, False, f"the SPF record of {domain} cannot be evaluated: {exc}",
                       f"correct the TXT record at {domain} that starts with v=spf1"), False
    failing = [(address, verdict) for address, verdict in verdicts if verdict.result != "pass"]
    listed = ", ".join(str(address) for address in servers)
    if not failing:
        return Finding(SPF, True, f"the SPF record of {domain} lets the mail server {server} ({listed}) send"), True
    address, verdict = failing[0]
    term = f"ip{address.version}:{address}"
    private = " (a private address: the server hands mail on from its public one, which must be listed)" \
        if any(address in network for network in _INTERNAL) else ""
    if verdict.result == "none":
        return Finding(SPF, False, f"{domain} has no SPF record",
                       f'publish a TXT record at {domain}: "v=spf1 {term} ~all"{private}, or the include: '
                       "your mail provider names"), False
    unjudged = f" (not evaluated: {' '.join(verdict.unjudged)})" if verdict.unjudged else ""
    return Finding(SPF, False, f"the SPF record of {domain} gives {verdict.result} for the mail server {server} "
                               f"({address}){unjudged}: \"{verdict.record}\"",
                   f"add {term} to it, before its all term{private}, or the include: your mail provider "
                   "names"), False


def check_dkim(dns_: spf.Dns, setup: MailSetup) -> tuple[Finding, bool]:
    """Whether the published record holds this install's key and messages are signed; (finding, passes)."""
    if not setup.private_key:
        return Finding(DKIM, False, "no DKIM key has been generated",
                       "press 'Generate a new DKIM key' in the settings, publish the record it shows, then turn on "
                       "'Sign outgoing mail with DKIM'"), False
    name = dkim_signing.record_name(setup.selector, setup.signing_domain)
    wanted = dkim_signing.dns_record(setup.private_key)
    publish = f'publish a TXT record at {name}: "{wanted}"'
    records = [tags(text) for text in dns_.txt(name)]
    records = [record for record in records if record.get("v", "DKIM1") == "DKIM1" and "p" in record]
    if not records:
        return Finding(DKIM, False, f"there is no DKIM record at {name}", publish), False
    published = "".join(records[0]["p"].split())
    if not published:
        return Finding(DKIM, False, f"the DKIM record at {name} revokes its key (p= is empty)", publish), False
    if published != dkim_signing.public_key(setup.private_key):
        return Finding(DKIM, False, f"the DKIM record at {name} holds another key than this install's (a new key "
                                    "generated since it was published?)", f"replace its text: {wanted}"), False
    if not setup.signing:
        return Finding(DKIM, False, f"the DKIM record at {name} is right, but messages go unsigned",
                       "turn on 'Sign outgoing mail with DKIM' in the settings"), False
    return Finding(DKIM, True, f"the DKIM record at {name} holds this install's key, and every message is signed "
                               "with it"), True


def check_dmarc(dns_: spf.Dns, setup: MailSetup, spf_passes: bool, dkim_passes: bool) -> Iterator[Finding]:
    """The From domain's DMARC record, and whether mail passes it."""
    domain = setup.from_domain
    found_at, records = domain, []
    for candidate in dict.fromkeys((domain, organisational(domain))):
        records = [text for text in dns_.txt(f"_dmarc.{candidate}") if text.replace(" ", "").startswith("v=DMARC1")]
        if records:
            found_at = candidate
            break
    policy: dict[str, str] = {}
    if not records:
        yield Finding(DMARC, False, f"{domain} has no DMARC record",
                      f'publish a TXT record at _dmarc.{domain}: "v=DMARC1; p=none; rua=mailto:postmaster@{domain}" '
                      "(p=none only asks for reports; move to p=quarantine once they show your mail passing)")
    elif len(records) > 1:
        yield Finding(DMARC, False, f"_dmarc.{found_at} has {len(records)} DMARC records, and receivers take none",
                      "keep one of them")
    elif tags(records[0]).get("p", "").lower() not in ("none", "quarantine", "reject"):
        yield Finding(DMARC, False, f"the DMARC record at _dmarc.{found_at} names no policy: \"{records[0]}\"",
                      "add p=none (or quarantine, or reject) after v=DMARC1;")
    else:
        policy = tags(records[0])
        yield Finding(DMARC, True, f"_dmarc.{found_at} publishes DMARC with p={policy['p'].lower()}")
    spf_aligned = aligned(setup.return_domain, domain, policy.get("aspf", "r").lower() == "s")
    dkim_aligned = aligned(setup.signing_domain, domain, policy.get("adkim", "r").lower() == "s")
    if (spf_passes and spf_aligned) or (dkim_passes and dkim_aligned):
        passing = "DKIM" if dkim_passes and dkim_aligned else "SPF"
        yield Finding(ALIGNMENT, True, f"{passing} passes for a domain aligned with the From address's {domain}")
        return
    fixes = []
    if not dkim_aligned:
        fixes.append(f"set the DKIM signing domain to {domain} (or leave it empty)")
    elif not dkim_passes:
        fixes.append("set up DKIM (above)")
    if not spf_aligned:
        fixes.append(f"use a bounce address at {domain}")
    elif not spf_passes:
        fixes.append("correct SPF (above)")
    yield Finding(ALIGNMENT, False, f"neither SPF nor DKIM passes for a domain aligned with the From address's "
                                    f"{domain}, so DMARC fails", "; or ".join(fixes))


def check_unsubscribe(setup: MailSetup, dkim_passes: bool) -> Finding:
    if urlsplit(setup.public_url).scheme != "https":
        return Finding(UNSUBSCRIBE, False, f"the unsubscribe address is not https:// (Public URL {setup.public_url})",
                       "serve coretrack over HTTPS and set the Public URL to its https:// address: RFC 8058 "
                       "requires it")
    if not dkim_passes:
        return Finding(UNSUBSCRIBE, False, "the one-click unsubscribe headers are not covered by a valid DKIM "
                                           "signature", "set up DKIM (above)")
    return Finding(UNSUBSCRIBE, True, "every message carries List-Unsubscribe and List-Unsubscribe-Post, signed")


def check(config: Config, setup: MailSetup) -> list[Finding]:
    """Every finding, in RULES' order."""
    try:
        dns_ = lookups(resolver(config))
        spf_finding, spf_passes = check_spf(dns_, setup)
        dkim_finding, dkim_passes = check_dkim(dns_, setup)
        findings = [spf_finding, dkim_finding, *check_dmarc(dns_, setup, spf_passes, dkim_passes)]
    except (ValueError, spf.LookupFailed) as exc:
        return [Finding(rule, False, f"the DNS could not be asked: {exc}",
                        "check the network, or CORETRACK_DNS_SERVER, and check again") for rule, _, _ in RULES]
    return [*findings, check_unsubscribe(setup, dkim_passes)]


def checklist(findings: list[Finding]) -> list[Rule]:
    return [Rule(name, providers, all(f.ok for f in findings if f.rule == key), [f for f in findings if f.rule == key])
            for key, name, providers in RULES]
