"""Emails: the list, compose (preview and send), the detail page with recipients and accesses."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import BadRequest, Forbidden, NotFound
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .. import attachments, localtime
from ..attachments import attachment_path
from ..db import MAX_ID
from ..http import AppRequest
from ..models import EMAIL_STATUSES, RECORD_TYPES, Attachment, Email, EmailDraft, EmailTemplate
from ..paging import page_number, paginate
from ..records import segments
from ..records.addresses import recipient_for
from ..records.search import REFERENCE, Audience, parse_reference, record_choices
from ..reports import deliverability, email_list
from ..reports.filters import parse_filters
from ..sending import drafts, guardrails, merge_fields, senders, templates, to_me
from ..sending.compose import OPTED_OUT, PreparedEmail, split_addresses
from ..sending.delivery import is_due, send_or_queue
from ..sending.preview import chosen_recipient, preview
from ..sending.send import NewEmail, SendOutcome, prepare_new, send
from ..sending.status import WHO_MAY_ACT, InFlight, cancel_by, delete_by, may_act, retry_by
from ..validation import ValidationError, whole_number
from . import email_reports

COMPOSE_FIELDS = ("to", "cc", "bcc", "reply_to", "subject", "html", "text", "signature", "send_at", "dont_track",
                  "ask_consent", "template", "preview_as", "audience", "scope", "q", "with_contacts", "draft",
                  "from_me", "segment")
# Recipients (and records left out) the preview lists: a mass send's first ones, with a count of the rest.
PREVIEW_ROWS = 100


def index(request: AppRequest) -> Response:
    return request.redirect_to("emails.list_emails")


def list_emails(request: AppRequest) -> Response:
    filters = parse_filters(request.args, request.time_zone)
    per_page = request.app.settings(request.db).get("page_size")
    statement = email_list.emails_statement(filters)
    page = paginate(request.db, statement, page_number(request.args.get("page")), per_page)
    return request.render(
        "emails/list.html", status=400 if filters.errors else 200, section="emails", page=page, filters=filters,
        counts=email_list.email_counts(request.db, [email.id for email in page.items]),
        senders=email_list.sender_names(request.db), statuses=EMAIL_STATUSES,
    )


def _references(args: MultiDict[str, str]) -> list[str]:
    """``?contact=<id>`` (and account, lead) from a record's page, as references for the To field."""
    return [reference for kind in RECORD_TYPES for value in args.getlist(kind)
            if REFERENCE.fullmatch(reference := f"{kind}:{value}")]


def _named(request: AppRequest, field_value: str) -> list[tuple[str, str]]:
    """(reference, who it is) for each record reference in a field, so the form can show names."""
    named = []
    for entry in split_addresses(field_value):
        try:
            reference = parse_reference(entry)
            if reference is None:
                continue
            found = recipient_for(request.db, *reference)
        except ValidationError as exc:
            named.append((entry, "; ".join(exc.errors.values())))
        else:
            opted_out = f" — {OPTED_OUT}" if found.opted_out else ""
            named.append((entry, f"{found.display_name} <{found.address}>{opted_out}"))
    return named


def _values(source: MultiDict[str, str]) -> dict[str, Any]:
    """The compose form's fields; ``ids``, the rows ticked on a list page, is a list."""
    values: dict[str, Any] = {key: source.get(key, "") for key in COMPOSE_FIELDS}
    values["ids"] = source.getlist("ids")
    return values


def _audience(request: AppRequest, values: dict[str, Any]) -> Audience | None:
    """The records a list page (or a segment) sent to compose (``audience`` names its section); ValidationError.
    A segment alone means all its records: ``audience`` and ``scope`` are set from it."""
    segment = None
    try:
        if values["segment"]:
            segment = segments.usable_filter(request.db, request.user, values["segment"])
            values["audience"] = values["audience"] or f"{segment.record_type}s"  # its list's section
            values["scope"] = values["scope"] or "all"
        if not values["audience"]:
            return None
        return Audience.from_form(values["audience"], values["scope"], values["q"], values["ids"],
                                  bool(values["with_contacts"]), segment)
    except ValueError as exc:
        raise ValidationError({"audience": str(exc)}) from None


def _audience_summary(request: AppRequest, values: dict[str, Any], prepared: PreparedEmail | None) -> str:
    """What the page says of a list's records; ValidationError for a list that names none."""
    audience = _audience(request, values)
    if audience is None:
        return ""
    return audience.describe(prepared.audience_size if prepared else audience.count(request.db))


def _compose_page(request: AppRequest, values: dict[str, Any], errors: dict[str, str] | None = None,
                  prepared: PreparedEmail | None = None, tested: str = "") -> Response:
    find = request.args.get("find", "").strip()
    found, find_error = {}, ""
    try:
        if find:
            found = {kind: record_choices(request.db, kind, find, limit=10) for kind in RECORD_TYPES}
    except ValueError as exc:
        find_error = str(exc)
    # What the page's other forms (find, template) carry over: the recipients chosen so far.
    errors = dict(errors or {})
    try:
        audience = _audience_summary(request, values, prepared)
    except ValidationError as exc:  # a list the page was sent that names no records: said at once
        errors = {**exc.errors, **errors}
        audience = ""
    keep = {key: values.get(key, "") for key in ("to", "cc", "bcc", "subject", "audience", "scope", "q",
                                                 "with_contacts", "ids", "segment") if values.get(key)}

    def add_link(reference: str) -> str:
        entries = split_addresses(values.get("to"))
        to = ", ".join(entries if reference in entries else [*entries, reference])
        return request.url_for("emails.new_email", **{**keep, "to": to})

    return request.render(
        "emails/compose.html", status=400 if errors or find_error else 200, section="compose", values=values,
        errors=errors, prepared=prepared, find=find, found=found, find_error=find_error, keep=keep, add_link=add_link,
        named=_named(request, values.get("to", "")), templates=templates.all_templates(request.db),
        from_template=_template_or_none(request, values.get("template", "")), merge_fields=merge_fields.OFFERED,
        preview=preview(prepared, request.user, values.get("preview_as", "")) if prepared else None,
        audience=audience, shown=PREVIEW_ROWS, segments=segments.visible_segments(request.db, request.user),
        keep_recipients={key: value for key, value in keep.items() if key != "subject"},
        keep_without_audience={key: value for key, value in keep.items() if key in ("to", "cc", "bcc", "subject")},
        own_problem=senders.own_problem(request.app.settings(request.db), request.user), tested=tested,
        own_from=f"{senders.own_name(request.user)} <{request.user.email}>",
    )


def _template(request: AppRequest, template_id: str) -> EmailTemplate | None:
    """The template an email is written from (the form carries its id: its attachments go with it)."""
    if not template_id:
        return None
    try:
        template = request.db.get(EmailTemplate, whole_number(template_id, 1, MAX_ID))
    except ValueError:
        template = None
    if template is None:
        raise ValidationError({"template": "that template no longer exists: choose another"})
    return template


def _template_or_none(request: AppRequest, template_id: str) -> EmailTemplate | None:
    try:
        return _template(request, template_id)
    except ValidationError:
        return None  # its error is on the page already


def _own_draft(request: AppRequest, draft_id: str | int) -> EmailDraft:
    try:
        draft = drafts.own_draft(request.db, request.user, whole_number(str(draft_id), 1, MAX_ID))
    except ValueError:
        draft = None
    if draft is None:
        raise NotFound("you have no draft with that id")
    return draft


def new_email(request: AppRequest) -> Response:
    values = _values(request.args)
    if values["draft"]:  # a draft goes on where it was left
        draft = _own_draft(request, values["draft"])
        return _compose_page(request, {**values, **drafts.fields_of(draft), "draft": str(draft.id)})
    values["signature"] = "on" if request.user.signature_html.strip() else ""
    values["to"] = ", ".join([*split_addresses(values["to"]), *_references(request.args)])
    try:
        template = _template(request, values["template"])
    except ValidationError as exc:
        values["template"] = ""
        return _compose_page(request, values, exc.errors)
    if template is not None:
        values.update(subject=template.subject, html=template.html_body, text=template.text_body,
                      ask_consent="on" if template.asks_consent else values["ask_consent"])
    try:
        _audience(request, values)
    except ValidationError as exc:
        return _compose_page(request, values, exc.errors)
    return _compose_page(request, values)


def _new_email(request: AppRequest, values: dict[str, Any]) -> tuple[NewEmail, dict[str, str]]:
    """The form's email, its "Send at" in the user's zone, and the problems found parsing it (the
    send lists them with its own, so that the form shows every problem at once)."""
    send_at, errors = None, {}
    if values["send_at"].strip():
        try:
            send_at = localtime.parse_local(values["send_at"], request.time_zone)
        except ValueError as exc:
            errors["send_at"] = str(exc)
    audience = template = None
    try:
        audience = _audience(request, values)
        template = _template(request, values["template"])
    except ValidationError as exc:
        errors.update(exc.errors)
    new = NewEmail(
        to=split_addresses(values["to"]), cc=split_addresses(values["cc"]), bcc=split_addresses(values["bcc"]),
        subject=values["subject"], html=values["html"], text=values["text"], reply_to=values["reply_to"],
        attachments=request.uploads("attachments"), template=template, audience=audience, send_at=send_at,
        track=not values["dont_track"], asks_consent=bool(values["ask_consent"]), signature=bool(values["signature"]),
        from_me=bool(values["from_me"]),
    )
    return new, errors


def send_email(request: AppRequest) -> Response:
    values = _values(request.form)
    if request.form.get("action") == "draft":
        return _save_draft(request, values)
    new, problems = _new_email(request, values)
    try:
        if request.form.get("action") in ("preview", "test"):
            prepared = prepare_new(request.db, request.app.config, request.user, new, problems)
            tested = ""
            if request.form.get("action") == "test":  # saved nowhere: the preview, and one message to me
                recipient = chosen_recipient(prepared, values["preview_as"])
                tested = f"{to_me.send_test(request.db, request.app.config, request.user, prepared, recipient)}, " \
                         f"as {recipient.address} gets it"
            return _compose_page(request, values, prepared=prepared, tested=tested)
        if values["draft"]:
            try:
                new = replace(new, draft=_own_draft(request, values["draft"]))
            except NotFound:
                pass  # deleted meanwhile (another tab): the email goes all the same
        outcome = send(request.db, request.app.Session, request.app.config, request.user, new, problems=problems)
    except ValidationError as exc:
        return _compose_page(request, values, exc.errors)
    return request.redirect_to("emails.show_email", email_id=outcome.email.id, notice=_outcome(request, outcome))


def _save_draft(request: AppRequest, values: dict[str, Any]) -> Response:
    existing = _own_draft(request, values["draft"]) if values["draft"] else None
    kept = {key: value for key, value in values.items() if key not in ("draft", "preview_as")}
    try:
        saved = drafts.save(request.db, request.user, kept, existing)
    except ValidationError as exc:
        return _compose_page(request, values, exc.errors)
    return request.redirect_to("emails.new_email", draft=saved.id,
                               notice="Draft saved: find it under Drafts. Attachments are chosen when you send.")


def list_drafts(request: AppRequest) -> Response:
    return request.render("emails/drafts.html", section="emails", drafts=drafts.drafts_of(request.db, request.user))


def delete_draft(request: AppRequest, draft_id: int) -> Response:
    draft = _own_draft(request, draft_id)
    if request.form.get("confirm") != "yes":
        return request.redirect_to("emails.list_drafts", notice="Nothing was deleted: tick the box to confirm.")
    subject = draft.subject or "(no subject)"
    drafts.delete(request.db, draft)
    return request.redirect_to("emails.list_drafts", notice=f"Deleted the draft “{subject}”.")


def _outcome(request: AppRequest, result: SendOutcome) -> str:
    counts = email_list.email_counts(request.db, [result.email.id])[result.email.id]
    if result.sent_now:
        notice = f"Sent to {counts.sent} of {counts.recipients} recipients."
        if counts.failed:
            notice += f" {counts.failed} failed: see the reason below."
    elif result.pending:
        notice = f"Queued: the background worker will send it to {result.pending} recipients."
    else:
        notice = "Nothing to send."
    if result.skipped:
        addresses = ", ".join(recipient.address for recipient in result.skipped[:5])
        more = f" and {len(result.skipped) - 5} more" if len(result.skipped) > 5 else ""
        notice += f" Skipped {len(result.skipped)} ({OPTED_OUT}): {addresses}{more}."
    return notice


def _email_or_404(request: AppRequest, email_id: int) -> Email:
    return request.get_or_404(Email, email_id, f"there is no email with id {email_id}")


def _detail_page(request: AppRequest, email: Email, status: int = 200, error: str | None = None,
                 confirm_cancel: bool = False) -> Response:
    counts = email_list.email_counts(request.db, [email.id])[email.id]
    return request.render(
        "emails/detail.html", status=status, error=error, section="emails", email=email, counts=counts,
        in_progress=email.status in ("queued", "sending") and is_due(email.send_at),
        scheduled=email.status == "queued" and not is_due(email.send_at),
        events=email_list.access_events(request.db, email.id), clicks=email_list.click_events(request.db, email.id),
        may_act=may_act(request.user, email), confirm_cancel=confirm_cancel,
        pause=guardrails.current(request.db, email.id) if email.paused_at else None,
        deliverability=deliverability.email_panel(request.db, request.app.settings(request.db), email.id),
        **email_reports.email_parts(request, email),
    )


def show_email(request: AppRequest, email_id: int) -> Response:
    # ?confirm=cancel: the cancel form, on a page that does not reload itself while it is filled in.
    return _detail_page(request, _email_or_404(request, email_id),
                        confirm_cancel=request.args.get("confirm") == "cancel")


def _email_to_act_on(request: AppRequest, email_id: int) -> Email:
    email = _email_or_404(request, email_id)
    if not may_act(request.user, email):
        raise Forbidden(WHO_MAY_ACT)
    return email


def cancel_email(request: AppRequest, email_id: int) -> Response:
    email = _email_to_act_on(request, email_id)
    if request.form.get("confirm") != "yes":
        return _detail_page(request, email, 400, "Nothing was cancelled: tick the box to confirm.", True)
    count = cancel_by(request.db, request.user, email)
    notice = (f"Cancelled: {count} recipients will not get this email." if count else
              "Nothing left to cancel: every message has already been handed to the mail server.")
    return request.redirect_to("emails.show_email", email_id=email_id, notice=notice)


def delete_email(request: AppRequest, email_id: int) -> Response:
    email = _email_to_act_on(request, email_id)
    if request.form.get("confirm") != "yes":
        return _detail_page(request, email, 400, "Nothing was deleted: tick the box to confirm.")
    subject = email.subject
    try:
        delete_by(request.db, request.app.config, request.user, email)
    except InFlight as exc:
        return _detail_page(request, email, 409, f"Nothing was deleted: {exc}.")
    return request.redirect_to("emails.list_emails", notice=f"Deleted the email “{subject}”.")


def retry_email(request: AppRequest, email_id: int) -> Response:
    email = _email_to_act_on(request, email_id)
    recipient_id = request.form.get("recipient_id", "")
    try:
        chosen = whole_number(recipient_id, 1, MAX_ID) if recipient_id else None  # None: every failed one
    except ValueError as error:
        raise BadRequest(f"recipient_id: {error}") from None
    count = retry_by(request.db, request.user, email, chosen)
    if not count:
        return request.redirect_to("emails.show_email", email_id=email_id, notice="No failed recipients to retry.")
    if send_or_queue(request.app.Session, request.app.config, email_id, count):
        counts = email_list.email_counts(request.db, [email_id])[email_id]
        notice = f"Retried {count}: {counts.failed} still failed." if counts.failed else f"Retried {count}: sent."
    else:
        notice = f"Queued {count} recipients again for the background worker."
    return request.redirect_to("emails.show_email", email_id=email_id, notice=notice)


def download_attachment(request: AppRequest, email_id: int, attachment_id: int) -> Response:
    attachment = request.db.get(Attachment, attachment_id)
    if attachment is None or attachment.email_id != email_id:
        raise NotFound("there is no such attachment")
    path = attachment_path(request.app.config, attachment)
    if not path.is_file():
        raise NotFound("the attachment's file is missing from the attachments folder")
    return attachments.send_upload(request.environ, path, attachment.filename, attachment.content_type)


rules = [
    Rule("/", endpoint="emails.index", methods=["GET"]),
    Rule("/emails", endpoint="emails.list_emails", methods=["GET"]),
    Rule("/emails", endpoint="emails.send_email", methods=["POST"]),
    Rule("/emails/new", endpoint="emails.new_email", methods=["GET"]),
    Rule("/emails/drafts", endpoint="emails.list_drafts", methods=["GET"]),
    Rule("/emails/drafts/<int:draft_id>/delete", endpoint="emails.delete_draft", methods=["POST"]),
    Rule("/emails/<int:email_id>", endpoint="emails.show_email", methods=["GET"]),
    Rule("/emails/<int:email_id>/retry", endpoint="emails.retry_email", methods=["POST"]),
    Rule("/emails/<int:email_id>/cancel", endpoint="emails.cancel_email", methods=["POST"]),
    Rule("/emails/<int:email_id>/delete", endpoint="emails.delete_email", methods=["POST"]),
    Rule("/emails/<int:email_id>/attachments/<int:attachment_id>", endpoint="emails.download_attachment",
         methods=["GET"]),
]
