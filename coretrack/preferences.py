"""A user's own details and preferences: their name and address (the sender's merge fields), the
time zone they read times in, the signature of their email, and
whether they are emailed when an email of theirs is first opened."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from . import localtime
from .models import User
from .sanitize import clean_html
from .validation import ValidationError, check_text, clean_address, clean_mail_text

# The account form's fields.
PREFERENCES = ("first_name", "last_name", "email", "time_zone", "signature_html", "notify_by_email",
               "notification_address")
MAX_SIGNATURE = 20_000  # characters: a signature with a logo and a few lines is far shorter


def clean_preferences(submitted: Mapping[str, str]) -> dict[str, Any]:
    """The preferences to store, or ValidationError with one message per field.  The signature is
    sanitised (no script, no event handler: it goes into every email its owner sends)."""
    errors: dict[str, str] = {}
    # Shown in email through the $users-...$ merge fields: header-safe, one line.
    names = {}
    for field in ("first_name", "last_name"):
        try:
            names[field] = clean_mail_text(submitted.get(field, ""), field=field.replace("_", " "), max_length=100,
                                           required=False)
        except ValueError as exc:
            errors[field] = str(exc)
    own_address = submitted.get("email", "").strip()
    if own_address:
        try:
            own_address = clean_address(own_address)
        except ValueError as exc:
            errors["email"] = str(exc)
    time_zone = submitted.get("time_zone", "").strip()
    if time_zone:
        try:
            localtime.zone(time_zone)
        except ValueError as exc:
            errors["time_zone"] = str(exc)
    signature = submitted.get("signature_html", "")
    try:
        check_text(signature, field="signature")
        if len(signature) > MAX_SIGNATURE:
            raise ValueError(f"a signature has at most {MAX_SIGNATURE:,} characters")
    except ValueError as exc:
        errors["signature_html"] = str(exc)
    notify_by_email = submitted.get("notify_by_email", "") in ("on", "true", "yes")
    address = submitted.get("notification_address", "").strip()
    if notify_by_email and not address:
        errors["notification_address"] = "enter the address to email you at"
    elif address:
        try:
            address = clean_address(address)
        except ValueError as exc:
            errors["notification_address"] = str(exc)
    if errors:
        raise ValidationError(errors)
    return {**names, "email": own_address, "time_zone": time_zone, "signature_html": clean_html(signature).strip(),
            "notify_by_email": notify_by_email, "notification_address": address}


def save_preferences(session: Session, user: User, preferences: Mapping[str, Any]) -> None:
    for name, value in preferences.items():
        setattr(user, name, value)
    session.commit()
