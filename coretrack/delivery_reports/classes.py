"""Bounce classes: what a failure says of the address, by its RFC 3463 enhanced status code (or the
provider's own classification, where it gives one).

Only a ``HARD`` failure (the address does not exist, the domain takes no mail, the mailbox is
disabled) suppresses the address at once.  ``SOFT`` and ``MAILBOX_FULL`` failures may pass, so they
suppress only when repeated (people/soft_bounces.py: the stated rule, by default 3 in 7 days).
``BLOCK``, ``POLICY`` and ``CONTENT`` failures are about the sender or the message (a blocklist, a
missing DMARC alignment, an attachment refused), not the address: shown, never suppressing.  A delay
(Action: delayed) is ``DELAYED``: the sending server keeps trying.
"""

from __future__ import annotations

import re

HARD, SOFT, MAILBOX_FULL, BLOCK, POLICY, CONTENT, DELAYED = (
    "hard", "soft", "mailbox_full", "block", "policy", "content", "delayed")
LABELS = {HARD: "hard bounce", SOFT: "soft bounce", MAILBOX_FULL: "mailbox full", BLOCK: "blocked",
          POLICY: "policy (authentication)", CONTENT: "content refused", DELAYED: "delayed"}
# The classes that count towards the soft-bounce rule.
ESCALATING = frozenset({SOFT, MAILBOX_FULL})

_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
# X.7.x codes about the sender's authentication (RFC 7372, RFC 8601's registry entries): SPF, DKIM,
# DMARC, reverse DNS; the other X.7.x refusals are blocks (a blocklist, a spam verdict, a rate limit).
_POLICY_DETAILS = frozenset({7, 8, 9, 15, 20, 21, 22, 23, 24, 25, 26, 27, 30})
# X.1.x and X.2.x details that say the address itself is gone (permanent ones only).
_ADDRESS_GONE = {(1, 0), (1, 1), (1, 2), (1, 3), (1, 6), (1, 10), (2, 1), (4, 4)}

# SendGrid's bounce_classification (its "Bounce Classifications" documentation), where an event has one.
_SENDGRID = {"invalid address": HARD, "mailbox unavailable": SOFT, "technical": SOFT, "content": CONTENT,
             "reputation": BLOCK, "frequency or volume": BLOCK, "unclassified": ""}


def classify(action: str, status: str) -> str:
    """The class of one recipient's report: its Action (failed or delayed) and enhanced status code."""
    if action == "delayed":
        return DELAYED
    found = _STATUS.match(status.strip())
    if found is None:
        return HARD if status.startswith("5") else SOFT
    permanent = found.group(1) == "5"
    subject, detail = int(found.group(2)), int(found.group(3))
    if subject == 2 and detail == 2:
        return MAILBOX_FULL
    if subject == 7:
        return POLICY if detail in _POLICY_DETAILS else BLOCK
    if subject == 6 or (subject == 3 and detail == 4):
        return CONTENT
    if not permanent:
        return SOFT
    if (subject, detail) in _ADDRESS_GONE or subject == 0:
        return HARD
    # Other permanent failures of the mail system, network or protocol: the address may recover.
    return SOFT if subject in (3, 4, 5) else HARD


def classify_sendgrid(event: str, status: str, kind: str, classification: str) -> str:
    """The class of a SendGrid bounce, deferred or blocked event: its bounce_classification first,
    then its type (``blocked``), then its status code."""
    if event == "deferred":
        return DELAYED
    named = _SENDGRID.get(classification.strip().lower(), "")
    if named:
        return named
    if kind == "blocked":
        return BLOCK
    return classify("failed", status or "5.0.0")
