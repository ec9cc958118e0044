"""A long subject with non-ASCII names reads back exactly as written, however the line is folded."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from coretrack.sending.mime import MessageTemplate

SUBJECTS = [
    "Spring news for Zoë Ångström and the whole team at Müller-Lüdenscheidt GmbH, summer summer "
    "Müller-Lüdenscheidt a a Zoë café for café",
    "x naïve summer a offer Ångström x Zoë verylongwordwithoutspacesverylongwordwithoutspaces summer summer "
    "Müller-Lüdenscheidt a a Zoë café",
    "Réunion: " + "mot " * 30 + "fin",
    "😀 " * 40 + "end",
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_a_long_subject_with_non_ascii_words_reads_back_without_a_doubled_space(subject):
    template = MessageTemplate(from_address="crm@example.test", from_name="CRM", subject=subject,
                               html="<p>Hi</p>", public_url=None)
    raw = template.render("ann@example.test", "", None)
    headers = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert all(len(line) <= 78 for line in headers)
    assert str(message_from_bytes(raw, policy=policy.default)["Subject"]) == subject


def test_an_ascii_subject_is_left_readable_as_it_is():
    template = MessageTemplate(from_address="crm@example.test", from_name="CRM", subject="Plain words " * 10,
                               html="<p>Hi</p>", public_url=None)
    raw = template.render("ann@example.test", "", None)
    assert b"Subject: Plain words Plain words" in raw
