"""coreBOS's emails made coretrack's: sent ones with a recipient per record mailed and one legacy event per
open, saved-only ones (``email_flag`` SAVED: never sent) as drafts of their owner.

A recipient is the record an email went to, at the address it went to (addresses.py), with its coreBOS
(crmid, mailid) pair — what coreBOS's image URLs name, so old images keep counting — its count from
``vtiger_email_track`` and an event per ``vtiger_email_access`` row.  A converted lead's recipient keeps
the lead's crmid (its images name the lead) but belongs to the contact or account it became.

Addresses, links, counts and opens are read as four streams in mailid order and merged an email at a time; the
recipients and their events are written a batch at a time (one INSERT each), so memory depends on the
batch and the largest email, not on the install.
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from ..models import Email, EmailDraft, Recipient
from ..sanitize import clean_html
from ..tracking import tokens
from ..validation import clean_address, clean_mail_text
from .addresses import EmailField, Mailed, address_mailed, mailed, sender_addresses
from .owners import Owners
from .records import KINDS, Records
from .report import ImportReport, Progress
from .source import BATCH, Schema, count, stream
from .times import Clock, Moment
from .writing import write_events, write_recipients

Pair = tuple[int, int]  # (crmid, mailid)
# The four streams, each in mailid order: (mailid, which, row).
_MAILED = "SELECT emailid AS mailid, idlists, to_email FROM vtiger_emaildetails ORDER BY emailid"
_LINKS = "SELECT activityid AS mailid, crmid FROM vtiger_seactivityrel ORDER BY activityid"
_COUNTS = ("SELECT mailid, crmid, access_count FROM vtiger_email_track "
           "WHERE crmid IS NOT NULL AND mailid IS NOT NULL ORDER BY mailid")
_OPENS = ("SELECT mailid, crmid, accessdate, accesstime FROM vtiger_email_access "
          "WHERE crmid IS NOT NULL AND mailid IS NOT NULL ORDER BY mailid")


def _raw(value: Any) -> str:
    return "" if value is None else str(value)


class EmailImport:
    def __init__(self, source: Engine, target: Session, schema: Schema, clock: Clock, report: ImportReport,
                 secret: bytes, fields: dict[int, EmailField], user_fields: set[int], owners: Owners,
                 records: Records, progress: Progress):
        self.source, self.target, self.schema, self.clock, self.report = source, target, schema, clock, report
        self.secret, self.fields, self.user_fields, self.owners = secret, fields, user_fields, owners
        self.records, self.progress = records, progress
        self.recipients: list[dict[str, Any]] = []
        self.events: list[list[Moment]] = []
        # A record is mailed many times at the same address: checked once (a bounded cache).
        self.clean_address = functools.lru_cache(maxsize=50_000)(clean_address)

    def _checked(self, name: str, value: Any, check: Callable[[str], str]) -> str:
        """``value`` as ``check`` cleans it, or left out (empty) and counted if it refuses it."""
        raw = _raw(value).strip()
        try:
            return check(raw) if raw else ""
        except ValueError:
            self.report.left_out[name] += 1
            return ""

    def run(self) -> None:
        entity = self.schema.entity_table("Emails")
        with self.source.connect() as connection:
            rows = list(connection.execute(text(
                "SELECT a.activityid, a.subject, a.date_start, a.time_start, d.from_email, d.to_email, "  # noqa: S608
                f"d.idlists, d.email_flag, e.description, e.createdtime, e.smownerid FROM vtiger_activity a "
                f"JOIN vtiger_emaildetails d ON d.emailid = a.activityid "
                f"JOIN {entity} e ON e.crmid = a.activityid AND e.deleted = 0 "
                "WHERE a.activitytype = 'Emails' ORDER BY a.activityid")))
        self.owners.run({row.smownerid for row in rows if row.smownerid})
        saved = [row for row in rows if _raw(row.email_flag).upper() == "SAVED"]
        sent = [row for row in rows if _raw(row.email_flag).upper() != "SAVED"]
        self._drafts(saved)
        emails = self._emails(sent)
        del rows, saved, sent  # the bodies: not kept while the opens are read
        self._recipients(emails)

    def _subject(self, value: Any) -> str:
        # As the compose form has it: one line for a header.
        return self._checked("emails subject", value, lambda raw: clean_mail_text(raw, field="subject", max_length=998))

    def _from(self, from_email: Any, owner_address: str) -> str:
        """The From the email went out with: the one typed instead of the owner's, else the owner's."""
        stored, typed = sender_addresses(_raw(from_email))
        if typed:
            # Cut short by the column's 50 characters, it is no address: the owner's is kept, counted.
            found = self._checked("emails from_address", typed, clean_address)
            if found:
                return found
        return self._checked("emails from_address", stored or owner_address, clean_address)

    def _drafts(self, rows: list[Any]) -> None:
        known = set(self.target.scalars(select(EmailDraft.corebos_id).where(EmailDraft.corebos_id.is_not(None))))
        self.report.stages["drafts"].found = len(rows)
        with self.progress("drafts", len(rows)) as advance:
            for row in rows:
                advance(1)
                if row.activityid in known:
                    continue
                to = ", ".join(mailed(row.idlists, row.to_email, self.user_fields).addresses)
                # What the form would hold; the rest takes the form's defaults when the draft is opened.
                # The body is coreBOS's whole message: no signature of coretrack's is added to it.
                fields = {"to": to, "subject": self._subject(row.subject), "html": clean_html(row.description or ""),
                          "signature": ""}
                self.target.add(EmailDraft(owner_id=self.owners.owner(row.smownerid).id, subject=fields["subject"],
                                           fields=json.dumps(fields), corebos_id=row.activityid,
                                           updated_at=self.clock.created(row.createdtime) or datetime.now()))
                self.report.stages["drafts"].new += 1
        self.target.flush()

    def _emails(self, rows: list[Any]) -> dict[int, tuple[int, datetime | None]]:
        """Every sent email, imported now or before: mailid -> (its id, when it was sent)."""
        imported = select(Email.corebos_id, Email.id, Email.sent_at).where(Email.corebos_id.is_not(None))
        emails = {int(mailid or 0): (email_id, sent_at) for mailid, email_id, sent_at in self.target.execute(imported)}
        self.report.stages["emails"].found = len(rows)
        with self.progress("emails", len(rows)) as advance:
            for row in rows:
                advance(1)
                if row.activityid in emails:
                    continue
                owner = self.owners.owner(row.smownerid)
                moment = self.clock.sent(row.date_start, row.time_start)
                created = self.clock.created(row.createdtime)
                sent_at = moment.at if moment else created
                email = Email(corebos_id=row.activityid, subject=self._subject(row.subject) or "(no subject)",
                              html_body=clean_html(row.description or ""), sender_id=owner.id,
                              from_address=self._from(row.from_email, owner.email), status="sent", tracking=True,
                              created_at=created or sent_at, sent_at=sent_at)
                self.target.add(email)
                self.target.flush()
                emails[row.activityid] = (email.id, sent_at)
                self.report.stages["emails"].new += 1
                self.target.expunge(email)
        return emails

    def _streams(self) -> Iterator[tuple[int, list[tuple[str, Any]]]]:
        """(mailid, what it was sent to, its links, counts and opens as (which, row)) in mailid order."""
        def tagged(which: str, statement: str) -> Iterator[tuple[int, str, Any]]:
            for rows in stream(self.source, statement):
                for row in rows:
                    yield row.mailid, which, row

        merged = heapq.merge(tagged("mailed", _MAILED), tagged("link", _LINKS), tagged("count", _COUNTS),
                             tagged("open", _OPENS), key=lambda item: item[0])
        for mailid, items in itertools.groupby(merged, key=lambda item: item[0]):
            yield mailid, [(which, row) for _, which, row in items]

    def _recipients(self, emails: dict[int, tuple[int, datetime | None]]) -> None:
        total = count(self.source, "SELECT count(*) FROM vtiger_email_access "
                                   "WHERE crmid IS NOT NULL AND mailid IS NOT NULL")
        with self.progress("opens", total) as advance:
            for mailid, items in self._streams():
                opens = sum(which == "open" for which, _ in items)
                if mailid in emails:
                    mail = next((mailed(row.idlists, row.to_email, self.user_fields)
                                 for which, row in items if which == "mailed"), Mailed())
                    self.report.to_users += len(mail.users)
                    self._email_recipients(mailid, emails[mailid], mail, items)
                    self.report.stages["events"].found += opens
                if len(self.recipients) >= BATCH:
                    self._write()
                advance(opens)
        self._write()

    def _email_recipients(self, mailid: int, email: tuple[int, datetime | None], mail: Mailed,
                          items: list[tuple[str, Any]]) -> None:
        links = {row.crmid for which, row in items if which == "link"}
        counts = {row.crmid: row.access_count or 0 for which, row in items if which == "count"}
        opens: dict[int, list[Any]] = {}
        for which, row in items:
            if which == "open":
                opens.setdefault(row.crmid, []).append(row)
        became = self.records.became
        # A converted lead's link moved to what it became; idlists still names the lead.
        every = links | counts.keys() | opens.keys() | {crmid for crmid in mail.fields if crmid in became}
        moved = {became[lead] for lead in every if lead in became}
        crmids = sorted(every - moved)
        self.report.stages["recipients"].found += len(crmids)
        known = set(self.target.scalars(select(Recipient.corebos_crmid).where(Recipient.corebos_mailid == mailid)))
        for crmid in crmids:
            if crmid not in known:
                self._recipient(crmid, mailid, email, mail, counts, opens.get(crmid, []))

    def _recipient(self, crmid: int, mailid: int, email: tuple[int, datetime | None], mail: Mailed,
                   counts: dict[int, int], rows: list[Any]) -> None:
        known = self.records.known.get(crmid)
        record = self.records.known.get(self.records.became.get(crmid, crmid))
        if known is None or record is None or record.id is None:
            self.report.unlinked += 1
            return
        fieldid = mail.fields.get(crmid)
        column = self.fields[fieldid].column if fieldid in self.fields else None
        address = self._checked("recipients address", address_mailed(
            dict(known.addresses), KINDS[known.kind][3], column, mail.addresses), self.clean_address)
        if not address:
            self.report.unlinked += 1
            return
        if record is not known:
            self.report.converted_followed += 1
        times = sorted((moment for row in rows if (moment := self.clock.access(row.accessdate, row.accesstime))),
                       key=lambda moment: moment.at)
        tracked = counts.get(crmid, len(times))
        if tracked != len(times):
            self.report.counts_differ += 1
        self.recipients.append({
            "email_id": email[0], "address": address, "name": record.name, "token": tokens.new_token(self.secret),
            "status": "sent", "sent_at": email[1], "corebos_crmid": crmid, "corebos_mailid": mailid,
            "access_count": tracked, "first_access": times[0].at if times else None,
            "last_access": times[-1].at if times else None, f"{record.kind}_id": record.id})
        self.events.append(times)

    def _write(self) -> None:
        """The batch's recipients, then their events (writing.py)."""
        if not self.recipients:
            return
        ids = write_recipients(self.target, self.recipients)
        events = [{"recipient_id": recipient_id, "at": moment.at, "time_known": moment.known}
                  for recipient_id, times in zip(ids, self.events, strict=True) for moment in times]
        write_events(self.target, events)
        self.report.stages["recipients"].new += len(ids)
        self.report.stages["events"].new += len(events)
        self.report.time_unknown += sum(not event["time_known"] for event in events)
        self.recipients, self.events = [], []

