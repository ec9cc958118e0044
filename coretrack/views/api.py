"""The JSON API: the same identity rules as the pages; errors are JSON with a 4xx status."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from werkzeug.exceptions import BadRequest, Conflict, Forbidden, NotFound
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from .. import localtime, paging
from ..http import AppRequest, json_response
from ..models import Email, Recipient, utc_iso, utcnow
from ..paging import page_number, paginate
from ..people import consent, consent_proof
from ..records.related import related_emails
from ..records.store import get_record
from ..reports import email_list
from ..reports.filters import parse_filters
from ..sending import merge_fields
from ..sending.compose import split_addresses
from ..sending.send import NewEmail, send
from ..sending.status import WHO_MAY_ACT, InFlight, cancel_by, delete_by, may_act
from ..validation import ValidationError, clean_address


def _time(value: datetime | None) -> str | None:
    return utc_iso(value) if value else None


def _email_summary(email: Email, counts: email_list.EmailCounts) -> dict[str, Any]:
    return {
        "id": email.id,
        "subject": email.subject,
        "subject_display": merge_fields.readable(email.subject),
        "sender": email.sender.name,
        "status": email.status,
        "tracking": email.tracking,
        "asks_consent": email.asks_consent,
        "created_at": _time(email.created_at),
        "sent_at": _time(email.sent_at),
        "send_at": _time(email.send_at),
        "recipients": counts.recipients,
        "opened": counts.opened,
        "accesses": counts.accesses,
        "loaded": counts.loaded,
        "human_opens": counts.human_opens,
        "clicks": counts.clicks,
        "human_clicks": counts.human_clicks,
        # Every count above is of measured recipients; the others' reading is only the anonymous totals.
        "measured": counts.measured,
        "unmeasured": counts.unmeasured,
        "anonymous": {"loads": counts.anonymous_loads, "human_loads": counts.anonymous_human_loads,
                      "clicks": counts.anonymous_clicks},
    }


def _recipient(recipient: Recipient) -> dict[str, Any]:
    record = recipient.record
    return {
        "id": recipient.id,
        "address": recipient.address,
        "name": recipient.name,
        "kind": recipient.kind,
        "record": {"type": record.record_type, "id": record.id, "name": record.display_name} if record else None,
        "status": recipient.status,
        "reply": recipient.reply,
        "delivery_status": recipient.delivery_status,
        "delivery_detail": recipient.delivery_detail,
        "delivery_at": _time(recipient.delivery_at),
        "bounce_class": recipient.bounce_class,
        "tracked": recipient.tracked,
        "access_count": recipient.access_count,
        "human_opens": recipient.human_opens,
        "opened_at": _time(recipient.first_human_at),
        "first_access": _time(recipient.first_access),
        "last_access": _time(recipient.last_access),
        "click_count": recipient.click_count,
        "human_clicks": recipient.human_clicks,
    }


def _email_detail(request: AppRequest, email: Email) -> dict[str, Any]:
    counts = email_list.email_counts(request.db, [email.id])[email.id]
    return {
        **_email_summary(email, counts),
        "from": email.from_address,
        "attachments": [{"filename": a.filename, "content_type": a.content_type, "size": a.size}
                        for a in email.attachments],
        "recipient_list": [_recipient(recipient) for recipient in email.recipients],
        "links": [{"position": link.position, "url": link.url, "click_count": link.click_count,
                   "human_clicks": link.human_clicks} for link in email.links],
    }


def list_emails(request: AppRequest) -> Response:
    filters = parse_filters(request.args)
    per_page = paging.per_page(request.args.get("per_page"), filters.errors)
    if filters.errors:
        return json_response({"error": "invalid filters", "fields": filters.errors}, 400)
    statement = email_list.emails_statement(filters)
    page = paginate(request.db, statement, page_number(request.args.get("page")), per_page)
    counts = email_list.email_counts(request.db, [email.id for email in page.items])
    return json_response({
        "emails": [_email_summary(email, counts[email.id]) for email in page.items],
        "page": page.number, "pages": page.pages, "total": page.total,
    })


def _email_or_404(request: AppRequest, email_id: int) -> Email:
    return request.get_or_404(Email, email_id, f"no email {email_id}")


def show_email(request: AppRequest, email_id: int) -> Response:
    return json_response(_email_detail(request, _email_or_404(request, email_id)))


def _email_to_act_on(request: AppRequest, email_id: int) -> Email:
    email = _email_or_404(request, email_id)
    if not may_act(request.user, email):
        raise Forbidden(WHO_MAY_ACT)
    return email


def cancel_email(request: AppRequest, email_id: int) -> Response:
    email = _email_to_act_on(request, email_id)
    count = cancel_by(request.db, request.user, email)
    request.db.expire_all()
    return json_response({**_email_detail(request, _email_or_404(request, email_id)), "cancelled": count})


def delete_email(request: AppRequest, email_id: int) -> Response:
    email = _email_to_act_on(request, email_id)
    try:
        delete_by(request.db, request.app.config, request.user, email)
    except InFlight as exc:
        raise Conflict(str(exc)) from None
    return json_response({"deleted": email_id})


def _addresses(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key) or []
    if isinstance(value, str):
        return split_addresses(value)
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError({key: "a list of addresses or record references (contact:<id>, account:<id>, lead:<id>)"})
    return value


def _text(body: dict[str, Any], key: str) -> str:
    value = body.get(key, "")
    if not isinstance(value, str):
        raise ValidationError({key: "must be a string"})
    return value


def _flag(body: dict[str, Any], key: str, default: bool = True) -> bool:
    value = body.get(key, default)
    if not isinstance(value, bool):
        raise ValidationError({key: "must be true or false"})
    return value


def _new_email(request: AppRequest) -> NewEmail:
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    send_at = None
    if _text(body, "send_at").strip():
        try:
            send_at = localtime.parse_iso(_text(body, "send_at"))
        except ValueError as exc:
            raise ValidationError({"send_at": str(exc)}) from None
    return NewEmail(
        subject=_text(body, "subject"), html=_text(body, "html"), text=_text(body, "text"),
        reply_to=_text(body, "reply_to"), to=_addresses(body, "to"), cc=_addresses(body, "cc"),
        bcc=_addresses(body, "bcc"), send_at=send_at, track=_flag(body, "track"),
        asks_consent=_flag(body, "ask_consent", default=False), from_me=_flag(body, "from_me", default=False),
    )


def send_email(request: AppRequest) -> Response:
    try:
        outcome = send(request.db, request.app.Session, request.app.config, request.user, _new_email(request))
    except ValidationError as error:
        return json_response({"error": str(error), "fields": error.errors}, 400)
    email = _email_or_404(request, outcome.email.id)
    return json_response({**_email_detail(request, email), "delivery": "sent" if outcome.sent_now else "queued"}, 201)


def record_emails(request: AppRequest, record_type: str, record_id: int) -> Response:
    record = get_record(request.db, record_type, record_id)
    if record is None:
        raise NotFound(f"no {record_type} {record_id}")
    related = related_emails(request.db, record_type, record_id)
    return json_response({
        "record": {"type": record_type, "id": record.id, "name": record.display_name},
        "emails": [
            {"id": row.email_id, "subject": row.subject, "subject_display": merge_fields.readable(row.subject),
             "sent_at": _time(row.sent_at), "sender": row.sender,
             "status": row.status, "access_count": row.access_count, "human_opens": row.human_opens,
             "last_access": _time(row.last_access), "click_count": row.click_count,
             "human_clicks": row.human_clicks}
            for row in related
        ],
    })


def show_consent(request: AppRequest) -> Response:
    """An address's consent to measuring its reading and every change of it, with their evidence."""
    try:
        address = clean_address(request.args.get("address", ""))
    except ValueError as exc:
        return json_response({"error": str(exc), "fields": {"address": str(exc)}, "status": 400}, 400)
    return json_response(consent_proof.as_json(consent_proof.proof(request.db, address)))


def _consent_time(value: object, errors: dict[str, str]) -> datetime | None:
    """The optional "at": when the consent was given, an ISO 8601 time, not in the future."""
    if value is None:
        return None
    try:
        at = localtime.parse_iso(value) if isinstance(value, str) else None
    except (ValueError, OverflowError) as exc:
        errors["at"] = str(exc) if isinstance(exc, ValueError) else "a time within the years 1 to 9999"
        return None
    if at is None:
        errors["at"] = "an ISO 8601 time such as 2026-12-24T09:30:00Z"
    elif at > utcnow():
        errors["at"] = "a consent cannot be given in the future: say when it was given"
    return at


def _consent_entry(body: dict[str, Any]) -> tuple[str, str, str, datetime | None]:
    """(address, state, source, at) of a consent posted to the API; ValidationError naming every bad field."""
    errors: dict[str, str] = {}
    texts = {name: body.get(name, "") for name in ("address", "state", "source")}
    errors.update({name: "must be a string" for name, value in texts.items() if not isinstance(value, str)})
    address, state, source = (value if isinstance(value, str) else "" for value in texts.values())
    source = " ".join(source.split())
    try:
        address = clean_address(address)
    except ValueError as exc:
        errors.setdefault("address", str(exc))
    if state not in consent.STATES:
        errors.setdefault("state", f"one of {', '.join(consent.STATES)}")
    if not source:
        errors.setdefault("source", "say where this consent was given (the sign-up form or event): it is its proof")
    elif len(source) > consent.SOURCE_LENGTH:
        errors["source"] = f"at most {consent.SOURCE_LENGTH} characters"
    at = _consent_time(body.get("at"), errors)
    if errors:
        raise ValidationError(errors)
    return address, state, source, at


def record_consent(request: AppRequest) -> Response:
    """A consent given elsewhere (a sign-up form), with the source it was given at: recorded with
    means API and the API user's name, or nothing recorded and 400."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    try:
        address, state, source, at = _consent_entry(body)
        consent.record(request.db, address, state, consent.API, source,
                       consent.Evidence(user_name=request.user.name), at=at)
    except (ValidationError, consent.ConsentError) as error:
        request.db.rollback()
        fields = error.errors if isinstance(error, ValidationError) else {}
        return json_response({"error": str(error), "fields": fields, "status": 400}, 400)
    request.db.commit()
    return json_response(consent_proof.as_json(consent_proof.proof(request.db, address)), 201)


rules = [
    Rule("/api/emails", endpoint="api.list_emails", methods=["GET"]),
    Rule("/api/emails", endpoint="api.send_email", methods=["POST"]),
    Rule("/api/emails/<int:email_id>", endpoint="api.show_email", methods=["GET"]),
    Rule("/api/emails/<int:email_id>", endpoint="api.delete_email", methods=["DELETE"]),
    Rule("/api/emails/<int:email_id>/cancel", endpoint="api.cancel_email", methods=["POST"]),
    Rule("/api/consent", endpoint="api.show_consent", methods=["GET"]),
    Rule("/api/consent", endpoint="api.record_consent", methods=["POST"]),
    Rule("/api/records/<any(contact, account, lead):record_type>/<int:record_id>/emails", endpoint="api.record_emails",
         methods=["GET"]),
]
