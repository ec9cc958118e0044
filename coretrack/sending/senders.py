"""Who an email is from: the install's From address and name (the settings), or, "send as me", the
sending user's own name and address, when an administrator allows their domain (own_from_domains)
and, for staff, sending as themselves at all (own_from_staff)."""

from __future__ import annotations

from dataclasses import dataclass

from ..models import User
from ..settings import SettingsService
from ..validation import clean_address, mail_problem


@dataclass(frozen=True)
class From:
    address: str
    name: str
    own: bool  # the user's own address: replies go to them by default


def own_name(user: User) -> str:
    """The name a user's own mail goes out under: their first and last name, else their login."""
    return " ".join(f"{user.first_name} {user.last_name}".split()) or user.name


def allowed_domains(settings: SettingsService) -> list[str]:
    return [name.strip() for name in settings.get("own_from_domains").split(",") if name.strip()]


def own_problem(settings: SettingsService, user: User) -> str | None:
    """Why ``user`` may not send from their own address, in words they can act on; None when they may."""
    domains = allowed_domains(settings)
    if not domains:
        return "sending from your own address is not enabled: an administrator can allow your domain in the settings"
    if not user.is_admin and not settings.get("own_from_staff"):
        return "only administrators may send from their own address"
    if not user.email.strip():
        return "add your email address on your Account page first"
    try:
        address = clean_address(user.email)
    except ValueError as exc:
        return f"your address on your Account page cannot be used: {exc}"
    domain = address.rpartition("@")[2].lower()
    if domain not in domains:
        return f"{domain} is not among the domains an administrator allowed ({', '.join(domains)})"
    if problem := mail_problem(own_name(user)):
        return f"your name cannot be put in an email ({problem}): correct it on your Account page"
    return None


def sender_of(settings: SettingsService, user: User, as_me: bool) -> From:
    """The From of an email ``user`` sends: their own (``as_me``; ValueError saying why not) or the install's."""
    if not as_me:
        return From(settings.get("from_address"), settings.get("from_name"), own=False)
    if problem := own_problem(settings, user):
        raise ValueError(problem)
    return From(clean_address(user.email), own_name(user), own=True)
