"""SPF (RFC 7208) as a receiver judges it, enough to tell whether a domain's record lets a given
server send its mail: ip4, ip6, a, mx, include, exists, all and redirect, with the limit of ten
lookups.  Macros (%{...}) and ptr are not evaluated: a term with them matches nothing, as the
record's owner is told (``Verdict.unjudged``)."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

# A record may make at most this many DNS lookups (include, a, mx, ptr, exists, redirect).
MAX_LOOKUPS = 10
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class SpfError(Exception):
    """The record cannot be evaluated (permerror): the text says why."""


class LookupFailed(Exception):
    """The DNS did not answer (temperror)."""


@dataclass
class Dns:
    """What the evaluation asks the DNS: TXT strings (each record's joined), and addresses of a name
    (A and AAAA) and of its mail exchangers; empty when the name has none.  Raise LookupFailed."""

    txt: Callable[[str], list[str]]
    addresses: Callable[[str], list[IpAddress]]
    mail_hosts: Callable[[str], list[str]]


@dataclass
class Verdict:
    result: str  # pass | fail | softfail | neutral | none
    record: str = ""  # the domain's own record
    unjudged: list[str] = field(default_factory=list)  # terms not evaluated (macros, ptr)


_RESULTS = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}


def record_of(dns: Dns, domain: str) -> str | None:
    """The domain's SPF record, None without one; SpfError for more than one."""
    records = [text for text in dns.txt(domain) if text.lower() == "v=spf1" or text.lower().startswith("v=spf1 ")]
    if len(records) > 1:
        raise SpfError(f"{domain} has {len(records)} SPF records, and a receiver takes none of them: merge them")
    return records[0] if records else None


def check(dns: Dns, domain: str, ip: IpAddress) -> Verdict:
    """Whether ``ip`` may send mail from ``domain``; SpfError (permerror) or LookupFailed (temperror)."""
    verdict = Verdict("none")
    record = record_of(dns, domain)
    if record is None:
        return verdict
    verdict.record = record
    verdict.result = _evaluate(dns, domain, record, ip, [0], verdict)
    return verdict


def _count(lookups: list[int]) -> None:
    lookups[0] += 1
    if lookups[0] > MAX_LOOKUPS:
        raise SpfError(f"the record needs more than {MAX_LOOKUPS} DNS lookups (includes, a, mx), and receivers "
                       "stop there: flatten includes into ip4:/ip6: terms")


def _evaluate(dns: Dns, domain: str, record: str, ip: IpAddress, lookups: list[int], verdict: Verdict) -> str:
    redirect = ""
    for term in record.split()[1:]:
        name, equals, value = term.partition("=")
        if equals and ":" not in name and "/" not in name:  # a modifier
            if name.lower() == "redirect":
                redirect = value
            continue
        qualifier = term[0] if term[0] in _RESULTS else "+"
        mechanism = term[1:] if term[0] in _RESULTS else term
        if "%" in mechanism or mechanism.lower().startswith("ptr"):
            verdict.unjudged.append(term)
            continue
        if _matches(dns, domain, mechanism, ip, lookups, verdict):
            return _RESULTS[qualifier]
    if redirect:
        _count(lookups)
        target = record_of(dns, redirect)
        if target is None:
            raise SpfError(f"its redirect names {redirect}, which has no SPF record")
        return _evaluate(dns, redirect, target, ip, lookups, verdict)
    return "neutral"


def _split(argument: str, domain: str) -> tuple[str, int | None, int | None]:
    """A mechanism's domain (else the current one) and its IPv4 and IPv6 prefix lengths."""
    target, *lengths = argument.split("/")
    try:
        prefix4 = int(lengths[0]) if lengths and lengths[0] else None
        prefix6 = int(lengths[-1]) if len(lengths) > 1 and lengths[-1] else None
    except ValueError:
        raise SpfError(f"a prefix length in {argument!r} is not a number") from None
    return target or domain, prefix4, prefix6


def _within(ip: IpAddress, address: IpAddress, prefix4: int | None, prefix6: int | None) -> bool:
    if ip.version != address.version:
        return False
    prefix = (prefix4 if ip.version == 4 else prefix6)
    network = ipaddress.ip_network(f"{address}/{prefix if prefix is not None else address.max_prefixlen}",
                                   strict=False)
    return ip in network


def _matches(dns: Dns, domain: str, mechanism: str, ip: IpAddress, lookups: list[int], verdict: Verdict) -> bool:
    kind, _, argument = mechanism.partition(":")
    kind = kind.lower()
    if "/" in kind:  # a/24, mx/24: a prefix without a domain
        kind, _, prefix = kind.partition("/")
        argument = "/" + prefix
    if kind == "all":
        return True
    if kind in ("ip4", "ip6"):
        try:
            return ip in ipaddress.ip_network(argument, strict=False)
        except ValueError:
            raise SpfError(f"{mechanism!r} is not an address or network") from None
    if kind in ("a", "mx"):
        _count(lookups)
        target, prefix4, prefix6 = _split(argument, domain)
        hosts = [target] if kind == "a" else dns.mail_hosts(target)
        return any(_within(ip, address, prefix4, prefix6) for host in hosts for address in dns.addresses(host))
    if kind == "include":
        _count(lookups)
        record = record_of(dns, argument)
        if record is None:
            raise SpfError(f"it includes {argument}, which has no SPF record")
        return _evaluate(dns, argument, record, ip, lookups, verdict) == "pass"
    if kind == "exists":
        _count(lookups)
        return bool(dns.addresses(argument))
    raise SpfError(f"{mechanism!r} is no SPF mechanism")
