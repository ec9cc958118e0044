"""``coretrack send``: compose a tracked email and deliver it now (or schedule it)."""

from __future__ import annotations

import mimetypes
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click
from sqlalchemy import select

from ..db import make_session_factory
from ..localtime import parse_iso
from ..models import User
from ..validation import ValidationError
from .common import database, load_config

if TYPE_CHECKING:
    from ..models import Recipient
    from ..sending.compose import ComposeResult


@click.command()
@click.option("--from-user", "from_user", required=True, help="the coretrack user sending it")
@click.option("--to", "to", multiple=True, help="address or contact:<id> / account:<id> / lead:<id> (repeatable)")
@click.option("--cc", "cc", multiple=True, help="same forms as --to (repeatable)")
@click.option("--bcc", "bcc", multiple=True, help="same forms as --to (repeatable)")
@click.option("--reply-to", "reply_to", default="")
@click.option("--subject", required=True)
@click.option("--html-file", type=click.File("r", encoding="utf-8"), help="file holding the HTML body")
@click.option("--html", "html_text", help="the HTML body itself")
@click.option("--text-file", type=click.File("r", encoding="utf-8"), help="optional text body")
@click.option("--attach", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="file to attach (repeatable)")
@click.option("--send-at", "send_at", default="",
              help="schedule it: an ISO 8601 time with its offset or Z, such as 2026-12-24T09:30:00Z "
                   "(the worker sends it then)")
@click.option("--track/--no-track", default=True, show_default=True,
              help="--no-track: no tracking image and no rewritten links in any of its messages")
@click.option("--ask-consent", "ask_consent", is_flag=True,
              help="ask each recipient for tracking consent: every message carries its consent link, none is tracked")
def send(from_user: str, to: tuple[str, ...], cc: tuple[str, ...], bcc: tuple[str, ...], reply_to: str, subject: str,
         html_file: IO[str] | None, html_text: str | None, text_file: IO[str] | None, attach: tuple[str, ...],
         send_at: str, track: bool, ask_consent: bool) -> None:
    """Compose a tracked email and deliver it now, one message per recipient (or schedule it)."""
    # Lazy: composing and delivering mail loads for this command only.
    from ..sending.compose import split_addresses
    from ..sending.send import NewEmail
    from ..sending.send import send as send_email

    if (html_file is None) == (html_text is None):
        raise click.UsageError("give exactly one of --html-file and --html")
    try:
        scheduled = parse_iso(send_at) if send_at.strip() else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--send-at") from None
    config = load_config()
    with database(config) as engine:
        session_factory = make_session_factory(engine)
        with session_factory() as session:
            sender = session.scalar(select(User).where(User.name == from_user))
            if sender is None or not sender.active:
                raise click.ClickException(f"no active coretrack user named {from_user!r}")
            new = NewEmail(
                to=[e for v in to for e in split_addresses(v)], cc=[e for v in cc for e in split_addresses(v)],
                bcc=[e for v in bcc for e in split_addresses(v)], subject=subject,
                html=html_file.read() if html_file else html_text or "", text=text_file.read() if text_file else "",
                reply_to=reply_to, send_at=scheduled, track=track, asks_consent=ask_consent,
                attachments=[(Path(path).name, mimetypes.guess_type(path)[0] or "application/octet-stream",
                              Path(path).read_bytes()) for path in attach],
            )
            try:
                outcome = send_email(session, session_factory, config, sender, new, deliver_all=True,
                                     progress=_progress_bar)
            except ValidationError as exc:
                raise click.ClickException("; ".join(f"{k}: {v}" for k, v in exc.errors.items())) from None
            if not outcome.sent_now:
                _echo_skipped(outcome.skipped)
            for recipient in outcome.email.recipients:
                if recipient.status == "failed":
                    click.echo(f"failed {recipient.address}: {recipient.reply}", err=True)
            email_id, skipped = outcome.email.id, len(outcome.skipped)
            if not outcome.sent_now and outcome.pending:
                click.echo(f"email {email_id}: scheduled for {outcome.email.send_at:%Y-%m-%d %H:%M} UTC, "
                           f"{outcome.pending} to send, {skipped} skipped")
                return
    report = outcome.report
    sent, failed = (report.sent, report.failed) if report else (0, 0)
    click.echo(f"email {email_id}: {sent} sent, {failed} failed, {skipped} skipped")
    if failed:
        sys.exit(1)


def _echo_skipped(skipped: Sequence[Recipient]) -> None:
    for recipient in skipped:
        click.echo(f"skipped {recipient.address}: {recipient.reply}", err=True)


@contextmanager
def _progress_bar(composed: ComposeResult) -> Iterator[Callable[[int], None]]:
    """What ``coretrack send`` shows while it delivers: who is skipped, then a bar of the messages."""
    _echo_skipped(composed.skipped)
    with click.progressbar(length=composed.pending, label=f"email {composed.email.id}") as bar:
        yield bar.update
