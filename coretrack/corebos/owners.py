"""coreBOS's users, as the owners of the email they sent: each becomes a disabled coretrack user with no
password and a note saying so, so "sent by" and the per-sender reports name who sent it.  An admin may
give one a password and enable it; until then nobody can sign in as it.  A coretrack user already of
the same name is taken as that person and left as it is.  An email owned by a group (or a user since
deleted from coreBOS) belongs to the first coretrack admin.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session

from ..auth import USER_NAME
from ..models import User
from ..validation import clean_address
from .report import ImportReport

NOTE = ("imported from coreBOS (its user {id}): disabled, no password; set a password and enable it "
        "to let this person sign in")


def _name(user_name: str, user_id: int) -> str:
    """A coretrack user name for coreBOS's ``user_name`` (coretrack's names are stricter)."""
    name = re.sub(r"[^A-Za-z0-9._@-]", "-", user_name.strip())[:64].lstrip("._@-")
    return name if USER_NAME.fullmatch(name) else f"corebos-{user_id}"


class Owner(NamedTuple):
    """The coretrack user owning an email: its id, and its address (the From when coreBOS stored none)."""

    id: int
    email: str


class Owners:
    """coreBOS user id -> the coretrack user owning what that user owned."""

    def __init__(self, source: Engine, target: Session, report: ImportReport, has_users: bool):
        self.source, self.target, self.report, self.has_users = source, target, report, has_users
        fallback = target.scalars(select(User).where(User.active).order_by(User.role != "admin", User.id)).first()
        if fallback is None:
            fallback = target.scalars(select(User).order_by(User.role != "admin", User.id)).first()
        self.fallback = Owner(fallback.id, fallback.email) if fallback is not None else None
        self.users: dict[int, Owner] = {}

    def run(self, owner_ids: set[int]) -> None:
        """The coreBOS users among ``owner_ids`` made coretrack users (those not yet imported)."""
        if not self.has_users:
            return
        with self.source.connect() as connection:
            rows: list[Any] = list(connection.execute(text(
                "SELECT id, user_name, first_name, last_name, email1 FROM vtiger_users ORDER BY id")))
        imported = select(User).where(User.corebos_id.is_not(None))
        known = {user.corebos_id: user for user in self.target.scalars(imported)}
        wanted = [row for row in rows if row.id in owner_ids]
        self.report.stages["users"].found = len(wanted)
        users = {row.id: known.get(row.id) or self._user(row) for row in wanted}
        self.target.flush()
        self.users = {corebos_id: Owner(user.id, user.email) for corebos_id, user in users.items()}

    def _user(self, row: Any) -> User:
        name = _name(str(row.user_name or ""), row.id)
        same = self.target.scalar(select(User).where(User.name == name))
        if same is not None and same.corebos_id is None:
            same.corebos_id = row.id
            self.report.owners_matched += 1
            return same
        if same is not None:
            name = f"corebos-{row.id}"
        try:
            address = clean_address(str(row.email1 or "").strip()) if row.email1 else ""
        except ValueError:
            address = ""
        user = User(name=name, role="staff", active=False, corebos_id=row.id, note=NOTE.format(id=row.id),
                    first_name=str(row.first_name or "")[:100], last_name=str(row.last_name or "")[:100],
                    email=address)
        self.target.add(user)
        self.report.stages["users"].new += 1
        return user

    def owner(self, corebos_user: int | None) -> Owner:
        user = self.users.get(corebos_user or 0)
        if user is None:
            self.report.owner_unknown += 1
            assert self.fallback is not None
            return self.fallback
        return user
