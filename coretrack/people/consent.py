"""Consent to measuring a person's reading binds to their address, with its proof.

Since the EDPB's Guidelines 2/2023 on the technical scope of Art. 5(3) ePrivacy (final October 2024),
a tracking image or a personal link in an email is a tracker, and the CNIL's recommendation on
tracking pixels in email (2026) asks for consent separate from consent to the mail itself, which the
sender can prove, and a withdrawal that holds even for mail already sent.  So:

- every change (granted, refused, withdrawn) goes through ``record`` (``record_many``: an import's
  batch): kept in consent_history, only ever added to, with its means (the consent page, a staff
  entry with its note, an import or the API with the source it states) and evidence (the text
  version shown, the IP as the IP policy keeps it, the user agent, the email whose link carried the
  request); ``addresses.consent`` holds the latest;
- the policy setting (``tracking_policy``) says whose reading is measured: everyone not refusing or
  withdrawn, or only those who granted it (``measured``, asked per recipient when the message goes);
- a refusal or a withdrawal stops recording at once, for old messages too: hits are judged by their
  own time against the address's history (``Stops``, which count_hits, clicks and providers' reports
  ask).  coreBOS imports state nothing: their people's consent is unknown.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from ..models import Address, ConsentEvent, ConsentText, utcnow
from ..webhooks import events
from .suppression import add_addresses, key

GRANTED, REFUSED, WITHDRAWN = "granted", "refused", "withdrawn"
STATES = (GRANTED, REFUSED, WITHDRAWN)
# States after which nothing about the address's reading is recorded.
STOPPING = frozenset({REFUSED, WITHDRAWN})
# How a consent came to be known (consent_history.means).
PAGE = "page"  # the person, on the consent or withdrawal page, with their signed link
STAFF = "staff"  # a staff user, with a note saying how they know
IMPORT = "import"  # a CSV import, stating where the consent was collected
API = "api"  # the JSON API, for sign-up forms elsewhere, stating the same
MEANS = (PAGE, STAFF, IMPORT, API)
# Means that must say where the consent comes from: a staff user's note, an import's source.
NEEDS_SOURCE = frozenset({STAFF, IMPORT, API})

# The public pages a message links to, with the recipient's signed token (?t=): the consent page a
# consent request carries, and the withdrawal page ("Stop measuring my reading") every tracked one does.
CONSENT_PATH = "/email/consent"
WITHDRAWAL_PATH = "/email/stop-measuring"

# tracking_policy's values: whose reading is measured while tracking is on.
EVERYONE, CONSENTED = "everyone", "consented"

SOURCE_LENGTH = 200  # consent_history.source's
# The changes a webhook reports (a refusal is no change of a consent given).
_WEBHOOK_TYPES = {GRANTED: events.CONSENT_GIVEN, WITHDRAWN: events.CONSENT_WITHDRAWN}
_CHUNK = 10_000  # addresses a statement (as suppression's)


class ConsentError(ValueError):
    """A consent that cannot be recorded, in words the form, the API or the import shows."""


@dataclass(frozen=True)
class Evidence:
    """What proves a consent beyond its means and source: the consent text's version shown, the IP
    address (already cut down as the IP policy says) and user agent, the email whose link carried
    the request, the staff user."""

    text_version: int | None = None
    ip: str = ""
    user_agent: str = ""
    email_id: int | None = None
    user_name: str = ""


def record(session: Session, address: str, state: str, means: str, source: str = "",
           evidence: Evidence = Evidence(), at: datetime | None = None,
           measurements_deleted: bool = False) -> ConsentEvent:
    """Records a change of the address's consent, in the caller's transaction (nothing committed).
    ConsentError for an unknown state or means, an empty address, or a staff entry, import or API
    call that does not say where the consent comes from.  ``at`` (default now) may be in the past
    for an imported consent: the address's state follows its latest change by time."""
    wanted, source = _checked(address, state, means, source)
    at = at or utcnow()
    row = _address_rows(session, [wanted])[wanted]
    if row.consent_at is None or at >= row.consent_at:
        row.consent, row.consent_at = state, at
    event = ConsentEvent(address_id=row.id, at=at, state=state, means=means, source=source,
                         text_version=evidence.text_version, ip=evidence.ip[:45],
                         user_agent=evidence.user_agent[:512], email_id=evidence.email_id,
                         user_name=evidence.user_name, measurements_deleted=measurements_deleted)
    session.add(event)
    session.flush()
    events.emit(session, _reported([(wanted, state, means, source, at)]))
    return event


def _checked(address: str, state: str, means: str, source: str) -> tuple[str, str]:
    """(the address as kept, the source with its spaces tidied) of a change ``record`` may record;
    ConsentError saying what is wrong otherwise."""
    wanted, source = key(address), " ".join(source.split())
    if not wanted:
        raise ConsentError("an address is needed")
    if state not in STATES:
        raise ConsentError(f"consent must be one of {', '.join(STATES)}")
    if means not in MEANS:
        raise ConsentError(f"unknown means {means!r}")
    if means in NEEDS_SOURCE and not source:
        raise ConsentError("say where this consent comes from (a note, or the form or event it was given at)")
    if len(source) > SOURCE_LENGTH:
        raise ConsentError(f"the source may have at most {SOURCE_LENGTH} characters")
    return wanted, source


@dataclass(frozen=True)
class Change:
    """One change for ``record_many``: an address's new state, where it was given, and when (None: now)."""

    address: str
    state: str
    source: str
    at: datetime | None = None


def record_many(session: Session, changes: Sequence[Change], means: str, evidence: Evidence = Evidence()) -> None:
    """``record`` for many changes at once (an import's batch), in the caller's transaction: each
    checked as ``record`` checks it (ConsentError for the first bad one, before anything is
    written), then a few statements a chunk of addresses rather than a few a change."""
    now = utcnow()
    checked = [(*_checked(change.address, change.state, means, change.source), change.state, change.at or now)
               for change in changes]
    for start in range(0, len(checked), _CHUNK):
        chunk = checked[start:start + _CHUNK]
        rows = _address_rows(session, sorted({address for address, *_ in chunk}))
        for address, _, new_state, at in chunk:
            row = rows[address]
            if row.consent_at is None or at >= row.consent_at:
                row.consent, row.consent_at = new_state, at
        session.execute(insert(ConsentEvent), [
            {"address_id": rows[address].id, "at": at, "state": new_state, "means": means, "source": source,
             "text_version": evidence.text_version, "ip": evidence.ip[:45], "user_agent": evidence.user_agent[:512],
             "email_id": evidence.email_id, "user_name": evidence.user_name, "measurements_deleted": False}
            for address, source, new_state, at in chunk])
    session.flush()
    events.emit(session, _reported([(address, new_state, means, source, at)
                                    for address, source, new_state, at in checked]))


def _reported(changes: Iterable[tuple[str, str, str, str, datetime]]) -> list[events.Event]:
    """The webhook events of consent changes (address, state, means, source, when): given or withdrawn."""
    return [events.Event(kind, at, {"address": address, "means": means, "source": source})
            for address, state, means, source, at in changes if (kind := _WEBHOOK_TYPES.get(state))]


def _address_rows(session: Session, addresses: Sequence[str]) -> dict[str, Address]:
    """lower-case address -> its row, made where it has none, as the database has it now (at most a chunk)."""
    add_addresses(session, addresses)
    return {row.address: row for row in session.scalars(
        select(Address).where(Address.address.in_(addresses)).execution_options(populate_existing=True))}


def state(session: Session, address: str) -> str:
    """The address's consent now: granted, refused, withdrawn, or "" (unknown)."""
    wanted = key(address)
    return (session.scalar(select(Address.consent).where(Address.address == wanted)) or "") if wanted else ""


def states(session: Session, addresses: Iterable[str]) -> dict[str, str]:
    """lower-case address -> its consent now, for those of ``addresses`` that have stated one."""
    found: dict[str, str] = {}
    wanted = sorted({key(address) for address in addresses} - {""})
    for start in range(0, len(wanted), _CHUNK):
        found.update((address, consent) for address, consent in session.execute(
            select(Address.address, Address.consent).where(Address.address.in_(wanted[start:start + _CHUNK]),
                                                           Address.consent != "")))
    return found


def measured(policy: str, consent: str) -> bool:
    """Whether a person whose address's consent is ``consent`` ("" unknown) has their reading
    measured under ``policy`` (while tracking is on): under "everyone", anyone who has not refused or
    withdrawn; under "consented", only those who granted it."""
    return consent == GRANTED if policy == CONSENTED else consent not in STOPPING


def history(session: Session, address: str) -> list[ConsentEvent]:
    """Every change of the address's consent, newest first."""
    return list(session.scalars(select(ConsentEvent).join(Address).where(Address.address == key(address))
                                .order_by(ConsentEvent.at.desc(), ConsentEvent.id.desc())))


class Stops:
    """When recording stopped for each of a set of addresses: a hit made at a time when the
    address's latest change (at or before it) was a refusal or a withdrawal records nothing, however
    late it is counted (a log line read minutes after it was written); nor does one made before a
    withdrawal that deleted what had been measured (it belongs to what was deleted)."""

    def __init__(self, changes: Iterable[tuple[str, datetime, str, bool]]) -> None:
        """``changes``: (lower-case address, when, state, whether it deleted the measurements), in time order."""
        self._times: dict[str, list[datetime]] = {}
        self._stopped: dict[str, list[bool]] = {}
        self._deleted_until: dict[str, datetime] = {}
        for address, at, new_state, deleted in changes:
            self._times.setdefault(address, []).append(at)
            self._stopped.setdefault(address, []).append(new_state in STOPPING)
            if deleted:
                self._deleted_until[address] = max(at, self._deleted_until.get(address, at))

    def stopped(self, address: str, at: datetime) -> bool:
        times = self._times.get(address)
        if not times:
            return False
        deleted_until = self._deleted_until.get(address)
        if deleted_until is not None and at < deleted_until:
            return True
        index = bisect.bisect_right(times, at)
        return self._stopped[address][index - 1] if index else False

    @classmethod
    def of(cls, session: Session, addresses: Sequence[str]) -> Stops:
        """The history of ``addresses`` (any letter case), one query a chunk."""
        wanted = sorted({key(address) for address in addresses} - {""})
        changes: list[tuple[str, datetime, str, bool]] = []
        for start in range(0, len(wanted), _CHUNK):
            changes.extend((address, at, new_state, deleted) for address, at, new_state, deleted in session.execute(
                select(Address.address, ConsentEvent.at, ConsentEvent.state, ConsentEvent.measurements_deleted)
                .join(Address).where(Address.address.in_(wanted[start:start + _CHUNK]))
                .order_by(ConsentEvent.at, ConsentEvent.id)))
        return cls(changes)  # each address's changes in time order, as queried


# The text the first version of the consent page shows (migration 0022 wrote it as version 1).
DEFAULT_TEXT = (
    "We would like to measure when you read the email we send you. Each message would carry a small "
    "image, and its links would pass through our server, so that we learn when you open it and which "
    "links you follow. We use this only to see which of our messages interest you, and to send fewer "
    "that do not.\n\n"
    "Nothing about your reading is measured unless you accept. You can withdraw at any time with the "
    "\"Stop measuring my reading\" link at the end of every message we measure: from then on nothing "
    "more is recorded, even for messages you already have, and you may also have what was measured "
    "deleted."
)
TEXT_LENGTH = 20_000


def current_text(session: Session) -> ConsentText:
    """The consent text's newest version, the one the consent page shows."""
    found = session.scalar(select(ConsentText).order_by(ConsentText.version.desc()).limit(1))
    if found is None:  # a database made without the migrations' first version (tests' create_all)
        found = ConsentText(version=1, body=DEFAULT_TEXT)
        session.add(found)
        session.flush()
    return found


def text_versions(session: Session) -> list[ConsentText]:
    """Every version of the consent text, newest first: none is ever changed or deleted."""
    return list(session.scalars(select(ConsentText).order_by(ConsentText.version.desc())))


def new_text(session: Session, body: str, user_name: str) -> ConsentText:
    """A new version of the consent text (an admin's); commits.  ConsentError for an empty text or
    one too long; the same text as the current one makes no new version."""
    body = body.strip().replace("\r\n", "\n")
    if not body:
        raise ConsentError("the consent text cannot be empty")
    if len(body) > TEXT_LENGTH:
        raise ConsentError(f"the consent text may have at most {TEXT_LENGTH:,} characters")
    current = current_text(session)
    if current.body == body:
        return current
    version = (session.scalar(select(func.max(ConsentText.version))) or 0) + 1
    text = ConsentText(version=version, body=body, user_name=user_name)
    session.add(text)
    session.commit()
    return text
