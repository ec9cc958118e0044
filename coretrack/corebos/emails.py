"""coreBOS's emails made coretrack's: sent ones with a recipient per record mailed and one legacy event per
open, saved-only ones (``email_flag`` SAVED: never sent) as drafts of their owner.

A recipient is the record an email went to, at the address it went to (addresses.py), with its coreBOS
(crmid, mailid) pair — what coreBOS's image URLs name, so old images keep counting — its count from
``vtiger_email_track`` and an event per ``vtiger_email_access`` row.  A converted lead's recipient keeps
the lead's crmid (its images name the lead) but belongs to the contact or account it became.
Recipients and their events are written a batch at a time.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from ..models import AccessEvent, Email, EmailDraft, Recipient
from ..sanitize import clean_html
from ..tracking import tokens
from ..validation import clean_address, clean_mail_text
from .addresses import EmailField, Mailed, address_mailed, mailed, sender_addresses
from .owners import Owners
from .records import KINDS, Records
from .report import ImportReport
from .source import Schema
from .times import Clock, Moment

BATCH = 1000
Pair = tuple[int, int]  # (crmid, mailid)


def _raw(value: Any) -> str:
    return "" if value is None else str(value)


class EmailImport:
    def __init__(self, source: Engine, target: Session, schema: Schema, clock: Clock, report: ImportReport,
                 secret: bytes, fields: dict[int, EmailField], user_fields: set[int], owners: Owners,
                 records: Records, stage: Callable[[str, list[Any]], Iterator[Any]]):
        self.source, self.target, self.schema, self.clock, self.report = source, target, schema, clock, report
        self.secret, self.fields, self.user_fields, self.owners = secret, fields, user_fields, owners
        self.records, self.stage = records, stage

    def _read(self, statement: str) -> list[Any]:
        with self.source.connect() as connection:
            return list(connection.execute(text(statement)))

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
        rows = self._read(
            "SELECT a.activityid, a.subject, a.date_start, a.time_start, d.from_email, d.to_email, d.idlists, "  # noqa: S608
            f"d.email_flag, e.description, e.createdtime, e.smownerid FROM vtiger_activity a "
            f"JOIN vtiger_emaildetails d ON d.emailid = a.activityid "
            f"JOIN {entity} e ON e.crmid = a.activityid AND e.deleted = 0 "
            "WHERE a.activitytype = 'Emails' ORDER BY a.activityid")
        self.owners.run({row.smownerid for row in rows if row.smownerid})
        saved = [row for row in rows if _raw(row.email_flag).upper() == "SAVED"]
        sent = [row for row in rows if _raw(row.email_flag).upper() != "SAVED"]
        self._drafts(saved)
        emails = self._emails(sent)
        self._recipients(emails, {row.activityid: mailed(row.idlists, row.to_email, self.user_fields) for row in sent})

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
        for row in self.stage("drafts", rows):
            if row.activityid in known:
                continue
            owner = self.owners.owner(row.smownerid)
            to = ", ".join(mailed(row.idlists, row.to_email, self.user_fields).addresses)
            fields = {"to": to, "cc": "", "bcc": "", "reply_to": "", "subject": self._subject(row.subject),
                      "html": clean_html(row.description or ""), "text": "", "signature": "", "send_at": "",
                      "dont_track": "", "ask_consent": "", "template": "", "audience": "", "scope": "", "q": "",
                      "with_contacts": "", "ids": []}
            self.target.add(EmailDraft(owner_id=owner.id, subject=fields["subject"], fields=json.dumps(fields),
                                       updated_at=self.clock.created(row.createdtime) or datetime.now(),
                                       corebos_id=row.activityid))
            self.report.stages["drafts"].new += 1
        self.target.flush()

    def _emails(self, rows: list[Any]) -> dict[int, Email]:
        imported = select(Email).where(Email.corebos_id.is_not(None))
        emails = {int(email.corebos_id or 0): email for email in self.target.scalars(imported)}
        for row in self.stage("emails", rows):
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
            emails[row.activityid] = email
            self.target.add(email)
            self.report.stages["emails"].new += 1
        self.target.flush()
        return emails

    def _recipients(self, emails: dict[int, Email], mails: dict[int, Mailed]) -> None:
        counts = {(row.crmid, row.mailid): row.access_count or 0 for row in self._read(
            "SELECT crmid, mailid, access_count FROM vtiger_email_track "
            "WHERE crmid IS NOT NULL AND mailid IS NOT NULL")}
        accesses: dict[Pair, list[Moment]] = {}
        for row in self._read("SELECT crmid, mailid, accessdate, accesstime FROM vtiger_email_access "
                              "WHERE crmid IS NOT NULL AND mailid IS NOT NULL"):
            moment = self.clock.access(row.accessdate, row.accesstime)
            if moment is not None:
                accesses.setdefault((row.crmid, row.mailid), []).append(moment)
        links: set[Pair] = {(row.crmid, row.activityid)
                            for row in self._read("SELECT crmid, activityid FROM vtiger_seactivityrel")}
        became = self.records.became
        # A converted lead's link moved to what it became; idlists still names the lead.
        leads_mailed = {(crmid, mailid) for mailid, mail in mails.items() for crmid in mail.fields if crmid in became}
        every = links | counts.keys() | accesses.keys() | leads_mailed
        moved = {(became[lead], mailid) for lead, mailid in every if lead in became}
        pairs = sorted(pair for pair in every - moved if pair[1] in emails)
        self.report.to_users = sum(len(mail.users) for mailid, mail in mails.items() if mailid in emails)
        known = select(Recipient.corebos_crmid, Recipient.corebos_mailid).where(Recipient.corebos_mailid.is_not(None))
        known_pairs = {(crmid, mailid) for crmid, mailid in self.target.execute(known)}
        batch: list[tuple[Recipient, list[Moment]]] = []
        for crmid, mailid in self.stage("recipients", pairs):
            if (crmid, mailid) in known_pairs:
                continue
            made = self._recipient(crmid, mailid, emails[mailid], mails.get(mailid, Mailed()), counts, accesses)
            if made is not None:
                batch.append(made)
            if len(batch) >= BATCH:
                self._write(batch)
        self._write(batch)
        self.report.stages["events"].found = sum(len(times) for pair, times in accesses.items() if pair[1] in emails)

    def _recipient(self, crmid: int, mailid: int, email: Email, mail: Mailed, counts: dict[Pair, int],
                   accesses: dict[Pair, list[Moment]]) -> tuple[Recipient, list[Moment]] | None:
        owner_id = self.records.became.get(crmid, crmid)
        record = self.records.imported.get(owner_id)
        kind = self.records.kind.get(crmid)
        if record is None or kind is None:
            self.report.unlinked += 1
            return None
        fieldid = mail.fields.get(crmid)
        column = self.fields[fieldid].column if fieldid in self.fields else None
        address = self._checked("recipients address", address_mailed(
            self.records.addresses.get(crmid, {}), KINDS[kind][3], column, mail.addresses), clean_address)
        if not address:
            self.report.unlinked += 1
            return None
        if owner_id != crmid:
            self.report.converted_followed += 1
        times = sorted(accesses.get((crmid, mailid), []), key=lambda moment: moment.at)
        count = counts.get((crmid, mailid), len(times))
        if count != len(times):
            self.report.counts_differ += 1
        recipient = Recipient(email_id=email.id, address=address, name=record.display_name[:200],
                              token=tokens.new_token(self.secret), status="sent", sent_at=email.sent_at,
                              corebos_crmid=crmid, corebos_mailid=mailid, access_count=count,
                              first_access=times[0].at if times else None, last_access=times[-1].at if times else None,
                              **{f"{record.record_type}_id": record.id})
        return recipient, times

    def _write(self, batch: list[tuple[Recipient, list[Moment]]]) -> None:
        """A batch of recipients (one INSERT), then their events (another)."""
        if not batch:
            return
        self.target.add_all(recipient for recipient, _ in batch)
        self.target.flush()
        events = [AccessEvent(recipient_id=recipient.id, at=moment.at, legacy=True, time_known=moment.known)
                  for recipient, times in batch for moment in times]
        self.target.add_all(events)
        self.target.flush()
        self.report.stages["recipients"].new += len(batch)
        self.report.stages["events"].new += len(events)
        self.report.time_unknown += sum(not event.time_known for event in events)
        batch.clear()
