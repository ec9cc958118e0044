"""Whose click a click is (a person's or a scanner's) and why: the rules clicks.record applies, as
pure functions of one click (``alone``) and of a recipient's clicks in time order (``judge``), so
the benchmark (scripts/bench-accuracy) judges its corpus with the very same rules.

A click is a scanner's when
 - its agent is not a person's browser (verdicts.by_agent: preview bots, headless browsers, HTTP
   libraries, mail proxies, a bare agent), or
 - it comes before the message was sent or within CLICK_READ_WINDOW of the send, before anyone could
   have read it, or
 - it comes from Microsoft's mail protection (Safe Links) or a mail security gateway's network
   (ranges/): they follow the links of the mail they pass; a person's click through them
   reaches us from the person's own browser;
and, by the recipient's other clicks (``judge``; an earlier click is revised when a later one shows it):
 - three links or more within BURST_WINDOW, or two links within PAIR_WINDOW: a scanner opens them
   all at once, a person one at a time (two links a second or two apart, opened in tabs, stay a
   person's);
 - two links within DATA_CENTRE_PACE, or the same link twice within DATA_CENTRE_WINDOW, from
   data-centre networks: sandboxes and link checkers follow links one after another, and fetch again
   (a person on a VPN in a data centre, clicking one link at a time, stays a person);
 - the same link again within RESCAN_WINDOW after a person's click, from another address: a
   gateway's time-of-click scan of the link the person just clicked.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from .networks import network_of
from .verdicts import by_agent

CLICK_READ_WINDOW = timedelta(seconds=10)
BURST_WINDOW = timedelta(seconds=5)
BURST_LINKS = 3
PAIR_WINDOW = timedelta(seconds=1)
DATA_CENTRE_PACE = timedelta(seconds=60)
DATA_CENTRE_WINDOW = timedelta(minutes=10)
RESCAN_WINDOW = timedelta(seconds=30)
# How far apart two clicks may be and still bear on each other's verdict: clicks.record judges a
# new click with the recipient's clicks this close to it.
SEQUENCE_WINDOW = max(BURST_WINDOW, DATA_CENTRE_WINDOW, RESCAN_WINDOW)

BURST_REASON = "several links clicked within seconds"
PAIR_REASON = "two links clicked within a second"
DATA_CENTRE_REASON = "links followed again from data-centre networks"
RESCAN_REASON = "the same link again seconds after a click, from another address"
_DATA_CENTRES = frozenset({"cloud", "microsoft", "gateway"})
_Mark = Callable[[Sequence[int], str], None]  # turns the clicks at these places into a scanner's, for this reason


@dataclass(frozen=True, slots=True)
class Click:
    """One click as the sequence rules see it: when, which link, from which address (as stored:
    truncated or empty by the storage policy), and its verdict by ``alone`` (or as stored)."""

    at: datetime
    link: int
    ip: str
    verdict: str
    reason: str


def alone(user_agent: str, ip: str, sent_at: datetime | None, at: datetime) -> tuple[str, str]:
    """The verdict of one click by its agent, network and time (human | scanner) and its reason
    ("" for a person's)."""
    verdict, reason = by_agent(user_agent)
    if verdict != "human":
        return "scanner", reason
    if sent_at is None or at < sent_at:
        return "scanner", "clicked before the message was sent"
    if at - sent_at < CLICK_READ_WINDOW:
        return "scanner", "clicked within seconds of the send"
    network = network_of(ip)
    if network == "microsoft":
        return "scanner", "Microsoft's mail protection network (Safe Links)"
    if network == "gateway":
        return "scanner", "a mail security gateway's network"
    return "human", ""


def judge(clicks: Sequence[Click]) -> list[tuple[str, str]]:
    """The verdicts of a recipient's clicks (in time order) by the sequence rules: a person's click
    becomes a scanner's when the clicks around it show a scanner; a scanner's stays one."""
    verdicts = [(click.verdict, click.reason) for click in clicks]

    def mark(indexes: Sequence[int], reason: str) -> None:
        for index in indexes:
            if verdicts[index][0] == "human":
                verdicts[index] = ("scanner", reason)

    for first, click in enumerate(clicks):
        span: list[int] = []
        for later in range(first, len(clicks)):
            gap = clicks[later].at - click.at
            if gap > BURST_WINDOW:
                break
            span.append(later)
            links = {clicks[index].link for index in span}
            if len(links) >= BURST_LINKS:
                mark(span, BURST_REASON)
            elif len(links) == 2 and gap < PAIR_WINDOW:
                mark(span, PAIR_REASON)
        _data_centre(clicks, first, mark)
        _rescan(clicks, first, verdicts, mark)
    return verdicts


def _data_centre(clicks: Sequence[Click], first: int, mark: _Mark) -> None:
    click = clicks[first]
    if network_of(click.ip) not in _DATA_CENTRES:
        return
    for later in range(first + 1, len(clicks)):
        other = clicks[later]
        if other.at - click.at > DATA_CENTRE_WINDOW:
            return
        if network_of(other.ip) in _DATA_CENTRES and (
                other.link == click.link or other.at - click.at <= DATA_CENTRE_PACE):
            mark([first, later], DATA_CENTRE_REASON)


def _rescan(clicks: Sequence[Click], first: int, verdicts: list[tuple[str, str]], mark: _Mark) -> None:
    click = clicks[first]
    if verdicts[first][0] != "human" or not click.ip:
        return
    for later in range(first + 1, len(clicks)):
        other = clicks[later]
        if other.at - click.at > RESCAN_WINDOW:
            return
        if other.link == click.link and other.ip and other.ip != click.ip:
            mark([later], RESCAN_REASON)


