"""Sending in the tests as the product does it: the email prepared (checked, recipients resolved) and
composed (saved) by coretrack.sending.compose, then delivered by coretrack.sending.delivery, the steps
coretrack.sending.send runs for an email that goes out at once.  They are called one by one, not
through that use case, so that a test can keep an email queued and deliver even one with nobody
left to send to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from coretrack.app import CoreTrack
from coretrack.models import User
from coretrack.sending.compose import ComposeResult, compose, prepare
from coretrack.sending.delivery import deliver


@dataclass
class Sender:
    """Sends as ``user``: the fields a call names replace those of ``defaults`` (to, subject, html...,
    as ``prepare`` takes them); ``user=`` sends one call as someone else."""

    app: CoreTrack
    session: Session
    user: User
    defaults: Mapping[str, Any]

    def compose(self, *, user: User | None = None, **fields: Any) -> ComposeResult:
        """The email prepared and saved, not delivered: queued for the worker."""
        prepared = prepare(self.session, **{**self.defaults, **fields})
        return compose(self.session, self.app.config, user or self.user, prepared)

    def __call__(self, *, user: User | None = None, **fields: Any) -> ComposeResult:
        """The email prepared, saved and delivered; the session then sees what the delivery wrote."""
        result = self.compose(user=user, **fields)
        deliver(self.app.Session, self.app.config, result.email.id)
        self.session.expire_all()
        return result
