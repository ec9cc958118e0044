"""The consent a CSV import's row may state for its address (to measuring its reading): optional
columns beside the record's fields, checked before the row is accepted: a row stating a consent
without saying where it was given is refused whole, as the proof would be missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .. import localtime
from ..models import utcnow
from ..people import consent
from ..validation import ValidationError

# Optional columns beside the fields: the address's consent to measuring its reading (granted,
# refused or withdrawn), where it was given (required with it: it is the consent's proof), and when
# (an ISO 8601 time with its offset; default: when imported).
CONSENT_COLUMNS = ("tracking_consent", "consent_source", "consent_at")


@dataclass(frozen=True)
class StatedConsent:
    """A row's consent, checked, to record once its record is made."""

    state: str
    source: str
    at: datetime | None


def stated_consent(values: Mapping[str, str]) -> StatedConsent | None:
    """The consent a row states, or None if it states none; ValidationError naming the column that
    makes it unusable (the row is then refused whole)."""
    state = values.get("tracking_consent", "").strip().lower()
    source, when = " ".join(values.get("consent_source", "").split()), values.get("consent_at", "").strip()
    if not state:
        if source or when:
            raise ValidationError({"tracking_consent": "consent_source and consent_at need a tracking_consent"})
        return None
    errors: dict[str, str] = {}
    if state not in consent.STATES:
        errors["tracking_consent"] = f"one of {', '.join(consent.STATES)}, or empty"
    if not values.get("email", "").strip():
        errors["tracking_consent"] = "a consent binds to an email address: this row has none"
    if not source:
        errors["consent_source"] = "required with tracking_consent: where it was given (a sign-up form, an event)"
    elif len(source) > consent.SOURCE_LENGTH:
        errors["consent_source"] = f"at most {consent.SOURCE_LENGTH} characters"
    at = None
    try:
        at = localtime.parse_iso(when) if when else None
    except (ValueError, OverflowError) as exc:
        errors["consent_at"] = str(exc) if isinstance(exc, ValueError) else "a time within the years 1 to 9999"
    if at is not None and at > utcnow():
        errors["consent_at"] = "a consent cannot be given in the future"
    if errors:
        raise ValidationError(errors)
    return StatedConsent(state, source, at)
