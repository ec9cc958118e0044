"""Drafts: the compose form saved as it is, to finish later.  Each user sees and deletes only their
own; sending one deletes it."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..models import EmailDraft, User, utcnow
from ..validation import ValidationError, check_text

# A draft holds what the form can hold (the bodies included) and no more.
MAX_DRAFT = 2 * 2**20  # characters of JSON


def drafts_of(session: Session, user: User) -> list[EmailDraft]:
    return list(session.scalars(select(EmailDraft).where(EmailDraft.owner_id == user.id)
                                .order_by(EmailDraft.updated_at.desc(), EmailDraft.id.desc())))


def own_draft(session: Session, user: User, draft_id: int) -> EmailDraft | None:
    draft = session.get(EmailDraft, draft_id)
    return draft if draft is not None and draft.owner_id == user.id else None


def fields_of(draft: EmailDraft) -> dict[str, Any]:
    return dict(json.loads(draft.fields))


def save(session: Session, user: User, values: Mapping[str, Any], draft: EmailDraft | None = None) -> EmailDraft:
    """Keep the form's values (a new draft, or ``draft`` changed); ValidationError when they are not
    text or too large.  Nothing else is checked: a draft may be unfinished."""
    for name, value in values.items():
        for each in value if isinstance(value, list) else [value]:
            try:
                check_text(str(each), field=name)
            except ValueError as exc:
                raise ValidationError({name: str(exc)}) from None
    stored = json.dumps(dict(values))
    if len(stored) > MAX_DRAFT:
        raise ValidationError({"html": f"a draft holds at most {MAX_DRAFT:,} characters"})
    if draft is None:
        draft = EmailDraft(owner_id=user.id)
        session.add(draft)
    draft.subject = " ".join(str(values.get("subject", "")).split())[:998]
    draft.fields, draft.updated_at = stored, utcnow()
    session.commit()
    return draft


def delete(session: Session, draft: EmailDraft) -> None:
    session.delete(draft)
    session.commit()
