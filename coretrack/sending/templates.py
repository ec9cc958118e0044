"""Saved email templates: a subject, HTML and text with merge fields, and attachments, to start an
email from.  Anyone may write one; its owner and administrators may change or delete it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..attachments import attachment_data, attachment_path, files_or_nothing, store_file
from ..config import Config
from ..models import EmailTemplate, TemplateAttachment, User, utcnow
from ..sanitize import clean_html
from ..validation import ValidationError, clean_mail_text
from .compose import check_message

FIELDS = ("name", "subject", "html", "text")
FLAGS = ("asks_consent",)  # checkboxes: "on" when ticked

# The built-in consent request, offered on the template list: its values fill the new-template form,
# and saving them makes an ordinary template, which its owner and administrators may change.
# Sending it asks each recipient for tracking consent (the consent link is added to each message).
CONSENT_REQUEST = {
    "name": "Tracking consent request",
    "subject": "May we measure when you read our email?",
    "html": "<p>Hello,</p>\n<p>We would like to know which of our messages interest you, so that we can send you "
            "fewer that do not. For that we would measure when you open our email and which links you follow, "
            "but only if you agree.</p>\n<p>Please tell us with the link below. You can change your mind at any "
            "time.</p>",
    "text": "",
    "asks_consent": "on",
}


def all_templates(session: Session) -> list[EmailTemplate]:
    return list(session.scalars(select(EmailTemplate).order_by(func.lower(EmailTemplate.name))))


def may_change(user: User, template: EmailTemplate) -> bool:
    return user.is_admin or template.owner_id == user.id


def _clean(session: Session, submitted: Mapping[str, str], template_id: int | None) -> dict[str, str]:
    """The template's fields to store, or ValidationError with one message per field.  Its HTML is
    sanitised like a signature: nothing in it may run, in the preview or in anyone's mail."""
    errors: dict[str, str] = {}
    values = {name: submitted.get(name) or "" for name in FIELDS}
    try:
        values["name"] = clean_mail_text(values["name"], field="name", max_length=200)
        same_name = session.scalar(select(EmailTemplate.id).where(
            func.lower(EmailTemplate.name) == values["name"].lower()))
        if same_name is not None and same_name != template_id:
            raise ValueError(f"a template named “{values['name']}” exists already: choose another name")
    except ValueError as exc:
        errors["name"] = str(exc)
    values["subject"] = check_message(values["subject"], values["html"], values["text"], errors)
    if errors:
        raise ValidationError(errors)
    values["html"] = clean_html(values["html"])
    return values


def save(session: Session, config: Config, user: User, submitted: Mapping[str, str],
         uploads: Iterable[tuple[str, str, bytes]] = (), remove: Iterable[int] = (),
         template: EmailTemplate | None = None) -> EmailTemplate:
    """Create a template (``template`` None, owned by ``user``) or change one: its fields, new
    attachments, and the attachments whose ids are in ``remove`` gone.  All or nothing."""
    values = _clean(session, submitted, template.id if template else None)
    if template is None:
        template = EmailTemplate(owner_id=user.id)
        session.add(template)
    template.name, template.subject = values["name"], values["subject"]
    template.html_body, template.text_body = values["html"], values["text"]
    template.asks_consent = submitted.get("asks_consent") == "on"
    template.updated_at = utcnow()
    removed_ids = set(remove)
    removed = [attachment for attachment in template.attachments if attachment.id in removed_ids]
    for attachment in removed:
        template.attachments.remove(attachment)
    with files_or_nothing(session) as written:
        for upload in uploads:
            data = attachment_data(*upload)
            template.attachments.append(TemplateAttachment(
                filename=data.filename, content_type=data.content_type, size=len(data.data),
                storage_name=store_file(config, data.data, written)))
        session.commit()
    for attachment in removed:  # only once the rows are gone: a failed commit keeps both
        attachment_path(config, attachment).unlink(missing_ok=True)
    return template


def delete(session: Session, config: Config, template: EmailTemplate) -> None:
    """The template and its attachments' files; emails started from it keep their own copies."""
    paths = [attachment_path(config, attachment) for attachment in template.attachments]
    session.delete(template)
    session.commit()
    for path in paths:
        path.unlink(missing_ok=True)


def attachments_of(config: Config, template: EmailTemplate) -> list[tuple[str, str, bytes]]:
    """The template's attachments as uploads, for an email started from it; ValidationError when a
    file has gone from the attachments folder."""
    files = []
    for attachment in template.attachments:
        try:
            files.append((attachment.filename, attachment.content_type,
                          attachment_path(config, attachment).read_bytes()))
        except OSError:
            raise ValidationError({"template": f"the file of the template's attachment {attachment.filename!r} "
                                               "is missing from the attachments folder"}) from None
    return files

