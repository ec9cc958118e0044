"""A user's own preferences: the time zone they read times in and the signature of their email."""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy.orm import Session

from . import localtime
from .models import User
from .sanitize import clean_html
from .validation import ValidationError, check_text

MAX_SIGNATURE = 20_000  # characters: a signature with a logo and a few lines is far shorter


def clean_preferences(submitted: Mapping[str, str]) -> dict[str, str]:
    """The preferences to store, or ValidationError with one message per field.  The signature is
    sanitised (no script, no event handler: it goes into every email its owner sends)."""
    errors: dict[str, str] = {}
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
    if errors:
        raise ValidationError(errors)
    return {"time_zone": time_zone, "signature_html": clean_html(signature).strip()}


def save_preferences(session: Session, user: User, preferences: Mapping[str, str]) -> None:
    user.time_zone = preferences["time_zone"]
    user.signature_html = preferences["signature_html"]
    session.commit()
