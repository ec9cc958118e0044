"""A coreBOS database for the import tests, written as coreBOS writes it: its tables from its own schema
(support/corebos_schema.py), ids from its sequences, and each change through the statements coreBOS runs
(tests/data/corebos/statements.sql): saving a record or an email, deleting, sending (mailsend.php),
an open of its image (TrackAccess.php), converting a lead (ConvertLead.php).

Times are coreBOS's: naive, in the zone its server ran in ($default_timezone)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime

import pymysql

from support.corebos_schema import create, statement
from support.mariadb import MariaDB

# vtiger_field ids of a just-installed coreBOS (install-data.sql): the email fields idlists names.
FIELD = {("contact", "email"): 80, ("contact", "secondaryemail"): 83, ("account", "email1"): 9,
         ("account", "email2"): 11, ("lead", "email"): 46, ("lead", "secondaryemail"): 55, ("user", "email1"): 482}
SETYPE = {"account": "Accounts", "contact": "Contacts", "lead": "Leads"}
TABLE = {"account": ("vtiger_account", "accountid"), "contact": ("vtiger_contactdetails", "contactid"),
         "lead": ("vtiger_leaddetails", "leadid")}
ADMIN = 1  # coreBOS's installer makes the admin user first


@dataclass
class CoreBOSDatabase:
    """A coreBOS database on ``server``; ``shape`` "old" (DatabaseSchema.xml) or "current" (updated)."""

    server: MariaDB
    name: str
    shape: str = "current"
    connection: pymysql.Connection = field(init=False)
    users: dict[int, str] = field(default_factory=dict)  # id -> email1

    def __post_init__(self) -> None:
        with self.server.admin() as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS {self.name}")
            cursor.execute(f"CREATE DATABASE {self.name} CHARACTER SET utf8")
        self.connection = self.server.admin(self.name)
        create(self.run, self.shape)
        self.user("admin", "Administrator", "admin@example.test", admin=True)

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    def close(self) -> None:
        self.connection.close()

    def run(self, sql: str, params: object = None) -> pymysql.cursors.Cursor:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor

    def query(self, sql: str, params: object = None) -> list[tuple]:
        with self.connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())

    def unique_id(self, table: str) -> int:
        """PearDatabase::getUniqueID: ADOdb's GenID on ``<table>_seq``, made on its first use."""
        sequence = f"{table}_seq"
        try:
            return int(self.run(statement("sequence_next", sequence)).lastrowid)
        except pymysql.err.ProgrammingError:
            self.run(statement("sequence_create", sequence))
            self.run(statement("sequence_start", sequence, "0"))
            return int(self.run(statement("sequence_next", sequence)).lastrowid)

    def insert(self, table: str, values: dict[str, object]) -> None:
        """CRMEntity::insertIntoEntityTable: one module table's row, its columns named."""
        marks = ",".join("?" * len(values))
        self.run(statement("entity_table", table, ",".join(values), marks), list(values.values()))

    def user(self, name: str, last_name: str, email: str, admin: bool = False, status: str = "Active") -> int:
        user_id = self.unique_id("vtiger_users")
        self.insert("vtiger_users", {"id": user_id, "user_name": name, "first_name": "", "last_name": last_name,
                                     "email1": email, "is_admin": "on" if admin else "off", "status": status})
        self.users[user_id] = email
        return user_id

    def entity(self, setype: str, at: datetime, owner: int = ADMIN, description: str = "") -> int:
        crmid = self.unique_id("vtiger_crmentity")
        self.run(statement("entity_create"), (crmid, owner, owner, setype, description, owner, at, at))
        return crmid

    def delete(self, crmid: int, at: datetime) -> None:
        self.run(statement("entity_delete"), (at, ADMIN, crmid))

    def record(self, kind: str, at: datetime, values: dict[str, object], owner: int = ADMIN,
               lead_phone: str = "") -> int:
        """A saved account, contact or lead: its entity, then its module row (with ``values``; a lead's
        address row too, with its phone)."""
        crmid = self.entity(SETYPE[kind], at, owner)
        table, key = TABLE[kind]
        number = {"account": "account_no", "contact": "contact_no", "lead": "lead_no"}[kind]
        self.insert(table, {key: crmid, number: f"{kind[:3].upper()}{crmid}", **values})
        if kind == "lead":
            self.insert("vtiger_leadaddress", {"leadaddressid": crmid, "phone": lead_phone})
        return crmid

    def email(self, at: datetime, owner: int, subject: str, body: str, to: list[tuple[int, int, str]],
              to_users: tuple[int, ...] = ()) -> int:
        """An email saved (Emails/Save.php: email_flag SAVED): ``to`` holds (crmid, fieldid, address) per
        record it is for, ``to_users`` coreBOS users; idlists names each one's field, to_email the addresses."""
        mailid = self.entity("Emails", at, owner, body)
        self.insert("vtiger_activity", {"activityid": mailid, "subject": subject, "activitytype": "Emails",
                                        "date_start": at.date(), "time_start": at.strftime("%H:%M")})
        idlists = "".join(f"{crmid}@{fieldid}|" for crmid, fieldid, _ in to)
        idlists += "".join(f"{user}@-1|" for user in to_users)
        addresses = [address for *_, address in to] + [self.users[user] for user in to_users]
        self.insert("vtiger_emaildetails", {
            "emailid": mailid, "from_email": self.users[owner], "to_email": json.dumps(addresses),
            "cc_email": json.dumps([""]), "bcc_email": json.dumps([""]), "idlists": idlists,
            "email_flag": "SAVED"})
        for crmid, _, _ in to:
            self.run(statement("email_link"), (crmid, mailid))
        for user in to_users:
            self.run(statement("email_user_link"), (user, mailid))
        return mailid

    def send(self, mailid: int, owner: int, at: datetime, custom_from: str = "") -> None:
        """mailsend.php's updates: SENT with the owner's address (and a typed From after it), the day."""
        self.run(statement("send_flag"), (self.users[owner], mailid))
        if custom_from and custom_from != self.users[owner]:
            self.run(statement("send_custom_from"), (custom_from, mailid))
        self.run(statement("send_date"), (at.strftime("%Y%m%d"), mailid))

    def open(self, crmid: int, mailid: int, at: datetime) -> None:
        """TrackAccess.php's four statements: the access row, its count, then access_count = count + 1
        (or 1 on the first)."""
        self.run(statement("access_insert"), (crmid, mailid, at.strftime("%Y-%m-%d"), at.strftime("%H:%M:%S")))
        (count,) = self.query(statement("access_count"), (crmid, mailid))[0]
        if self.query(statement("access_tracked"), (crmid, mailid)):
            self.run(statement("access_update"), (count + 1, crmid, mailid))
        else:
            self.run(statement("access_first"), (crmid, mailid, 1))

    def convert(self, leadid: int, to: int, kind: str = "contact") -> None:
        """ConvertLead.php: the lead's email links moved to ``to`` (a contact or account already saved),
        the lead marked converted, ``to`` marked converted from it (where the column exists)."""
        for (activityid,) in self.query(statement("convert_links"), (leadid,)):
            self.run(statement("convert_unlink"), (leadid, activityid))
            self.run(statement("convert_link"), (to, activityid))
        self.run(statement("convert_mark"), (leadid,))
        if self.shape == "current":
            table, key = TABLE[kind]
            self.run(statement("convert_from_lead", table, key), (1, leadid, to))

    def denormalize(self, module: str, tabid: int) -> None:
        """include/integrations/denormalize: ``module``'s crmentity columns moved into its own table."""
        table, key = {"Accounts": ("vtiger_account", "accountid"), "Contacts": ("vtiger_contactdetails", "contactid"),
                      "Leads": ("vtiger_leaddetails", "leadid")}[module]
        for owner in (table, "vtiger_seactivityrel"):
            for (constraint,) in self.query(statement("denormalize_foreign_keys"), (owner, self.name)):
                self.run(statement("denormalize_drop_key", owner, constraint))
        self.run(statement("denormalize_columns", table))
        self.run(statement("denormalize_fill", table, f"{table}.{key}", *[table] * 10))
        self.run(statement("denormalize_mark"), ("1", table, tabid))
        self.run(statement("denormalize_forget"), (module,))

    def counts(self) -> dict[tuple[int, int], int]:
        return {(crmid, mailid): count for crmid, mailid, count in self.query(
            "SELECT crmid, mailid, access_count FROM vtiger_email_track")}

    def accesses(self) -> dict[tuple[int, int], int]:
        return {(crmid, mailid): n for crmid, mailid, n in self.query(
            "SELECT crmid, mailid, count(*) FROM vtiger_email_access GROUP BY crmid, mailid")}
