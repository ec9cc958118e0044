"""Contacts, accounts and leads: lists, forms, detail pages with their emails, CSV import."""

from __future__ import annotations

import json
from typing import Any

from werkzeug.exceptions import NotFound
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..db import MAX_ID
from ..http import AppRequest, admin_only, download, json_response
from ..models import Account, Record, Segment, utcnow
from ..paging import Page, page_number
from ..people import consent, consent_proof, suppression
from ..records import addresses, csv_import, fields, related, search, segments, store
from ..reports import email_list
from ..timeline import SHOWN as TIMELINE_SHOWN
from ..timeline import timeline
from ..validation import ValidationError, whole_number

SECTIONS = {"contacts": "contact", "accounts": "account", "leads": "lead"}
SECTION = "<any(contacts, accounts, leads):section>"


def _context(section: str, **context: Any) -> dict[str, Any]:
    record_type = SECTIONS[section]
    noun, nouns = fields.NOUNS[record_type]
    return dict(section=section, record_type=record_type, fields=fields.FIELDS[record_type],
                noun=noun, nouns=nouns, **context)


def _record_or_404(request: AppRequest, section: str, record_id: int) -> Record:
    record = store.get_record(request.db, SECTIONS[section], record_id)
    if record is None:
        raise NotFound(f"there is no {fields.NOUNS[SECTIONS[section]][0]} with id {record_id}")
    return record


def _submitted(request: AppRequest, section: str) -> dict[str, str]:
    # Every field, so an unchecked box (absent from the form) is saved as unchecked.
    return {definition.name: request.form.get(definition.name, "") for definition in fields.FIELDS[SECTIONS[section]]}


def _form(request: AppRequest, section: str, values: dict[str, str], errors: dict[str, str],
          record: Record | None = None, duplicates: list[Record] | None = None) -> Response:
    # An edit form carries the values it was opened with: saving changes only what the user changed.
    loaded = store.form_values(record) if record is not None else {}
    return request.render("records/form.html", status=400 if errors else 200,
                          **_context(section, values=values, errors=errors, record=record, loaded=loaded,
                                     duplicates=duplicates or []))


_LOADED = "loaded-"


def _loaded(request: AppRequest) -> dict[str, str] | None:
    loaded = {name[len(_LOADED):]: value for name, value in request.form.items() if name.startswith(_LOADED)}
    return loaded or None


def _segment(request: AppRequest, section: str) -> Segment | None:
    """The segment a list is filtered by (?segment=<id>): one of this section's that the user may see."""
    if not request.args.get("segment"):
        return None
    try:
        segment = segments.visible_segment(request.db, request.user, whole_number(request.args["segment"], 1, MAX_ID))
    except ValueError:
        segment = None
    if segment is None or segment.record_type != SECTIONS[section]:
        raise NotFound(f"there is no segment of {section} with id {request.args['segment'][:20]}")
    return segment


def list_records(request: AppRequest, section: str) -> Response:
    query = request.args.get("q", "").strip()
    per_page = request.app.settings(request.db).get("page_size")
    segment, error = _segment(request, section), ""
    try:
        page = search.search_records(request.db, SECTIONS[section], query, page_number(request.args.get("page")),
                                      per_page, segments.filter_of(segment) if segment else None)
    except ValueError as exc:
        page, error = Page(items=[], number=1, per_page=per_page, total=0), str(exc)
    return request.render("records/list.html", status=400 if error else 200, **_context(
        section, page=page, query=query, error=error, segment=segment,
        segments=segments.visible_segments(request.db, request.user, SECTIONS[section])))


def new_record(request: AppRequest, section: str) -> Response:
    # /contacts/new?account=<id> comes from an account's page: the picker shows that account.
    try:
        account = store.get_record(request.db, "account", whole_number(request.args.get("account"), 1, MAX_ID))
    except ValueError:
        account = None  # none given, or not an id: an empty picker
    return _form(request, section, {"account": store.account_label(account) if isinstance(account, Account) else ""},
                 {})


def create_record(request: AppRequest, section: str) -> Response:
    values = _submitted(request, section)
    if SECTIONS[section] in fields.PERSON_TYPES and request.form.get("duplicate_ok") != "on":
        # The same person twice splits their email history: say so before, and let them go on.
        duplicates: list[Record] = list(addresses.people_with_address(request.db, values.get("email", "")))
        if duplicates:
            return _form(request, section, values, {}, duplicates=duplicates)
    try:
        record = store.create_record(request.db, SECTIONS[section], values, request.user.name)
    except ValidationError as exc:
        return _form(request, section, values, exc.errors)
    noun = fields.NOUNS[SECTIONS[section]][0]
    return request.redirect_to("records.show_record", section=section, record_id=record.id,
                               notice=f"Created {noun} {record.display_name}.")


def show_record(request: AppRequest, section: str, record_id: int, consent_entry: dict[str, str] | None = None,
                consent_errors: dict[str, str] | None = None) -> Response:
    record = _record_or_404(request, section, record_id)
    emails = related.related_emails(request.db, SECTIONS[section], record_id)
    unmeasured = email_list.unmeasured_emails(request.db, related.recipient_condition(SECTIONS[section], record_id))
    contacts = store.contacts_of(request.db, record_id) if section == "accounts" else []
    return request.render("records/detail.html", status=400 if consent_errors else 200, **_context(
        section, record=record, emails=emails, contacts=contacts, unmeasured=unmeasured,
        timeline=timeline(request.db, record), timeline_shown=TIMELINE_SHOWN,
        address=suppression.state(request.db, record.email),
        address_history=suppression.history(request.db, record.email),
        consent=consent_proof.proof(request.db, record.email), consent_states=consent.STATES,
        consent_entry=consent_entry or {}, consent_errors=consent_errors or {}))


def edit_record(request: AppRequest, section: str, record_id: int) -> Response:
    record = _record_or_404(request, section, record_id)
    return _form(request, section, store.form_values(record), {}, record)


def update_record(request: AppRequest, section: str, record_id: int) -> Response:
    record = _record_or_404(request, section, record_id)
    values, loaded = _submitted(request, section), _loaded(request)
    try:
        store.update_record(request.db, record, values, loaded, request.user.name)
    except ValidationError as exc:
        # Shown again over the record as it is now, with this user's changes: saving again changes
        # only those, and a field refused as changed meanwhile is then theirs to replace.
        return _form(request, section, {**store.form_values(record), **store.changed_fields(values, loaded)},
                     exc.errors, record)
    return request.redirect_to("records.show_record", section=section, record_id=record.id,
                               notice=f"Saved {record.display_name}.")


def lift_opt_out(request: AppRequest, section: str, record_id: int) -> Response:
    """Staff take back the opt-out of the record's address, saying why (kept in its history)."""
    record = _record_or_404(request, section, record_id)
    reason = " ".join(request.form.get("reason", "").split())
    if not reason:
        notice = "Nothing changed: say why the opt-out is lifted (for example, the person asked to receive email)."
    elif suppression.lift_opt_out(request.db, record.email, request.user.name, reason):
        notice = f"Lifted the opt-out of {record.email}: email to it is sent again."
    else:
        notice = f"Nothing changed: {record.email or 'this record'} is not opted out."
    return request.redirect_to("records.show_record", section=section, record_id=record.id, notice=notice)


def record_consent(request: AppRequest, section: str, record_id: int) -> Response:
    """Any signed-in staff user states the consent of the record's address, with a note saying how
    they know (kept in its history with their name): the person said so on the phone, in writing..."""
    record = _record_or_404(request, section, record_id)
    entry = {"state": request.form.get("state", ""), "note": request.form.get("note", "")}
    if not record.email:
        raise NotFound(f"this {fields.NOUNS[SECTIONS[section]][0]} has no email address")
    errors = {}
    if entry["state"] not in consent.STATES:
        errors["state"] = "choose granted, refused or withdrawn"
    if not entry["note"].strip():
        errors["note"] = "say how you know (for example: asked by phone on 3 March, letter of 4 March)"
    if not errors:
        try:
            consent.record(request.db, record.email, entry["state"], consent.STAFF, entry["note"],
                           consent.Evidence(user_name=request.user.name))
        except consent.ConsentError as exc:
            errors["note"] = str(exc)
    if errors:
        request.db.rollback()
        return show_record(request, section, record_id, entry, errors)
    request.db.commit()
    return request.redirect_to("records.show_record", section=section, record_id=record.id,
                               notice=f"Recorded: {record.email} {entry['state']} consent to measuring their reading.")


def _consent_proof(request: AppRequest, section: str, record_id: int) -> tuple[Record, consent_proof.ConsentProof]:
    record = _record_or_404(request, section, record_id)
    if not record.email:
        raise NotFound(f"this {fields.NOUNS[SECTIONS[section]][0]} has no email address")
    return record, consent_proof.proof(request.db, record.email)


def _download(body: bytes, mimetype: str, section: str, record_id: int, extension: str) -> Response:
    return download(body, f"coretrack-consent-{SECTIONS[section]}-{record_id}-{utcnow():%Y%m%d-%H%M}.{extension}",
                    mimetype)


def export_consent_csv(request: AppRequest, section: str, record_id: int) -> Response:
    """The address's consent and its every change with their evidence, for an access request."""
    _, found = _consent_proof(request, section, record_id)
    return _download(consent_proof.as_csv(found, request.time_zone), "text/csv", section, record_id, "csv")


def export_consent_json(request: AppRequest, section: str, record_id: int) -> Response:
    _, found = _consent_proof(request, section, record_id)
    body = json.dumps(consent_proof.as_json(found), indent=2, ensure_ascii=False).encode("utf-8")
    return _download(body, "application/json", section, record_id, "json")


@admin_only
def confirm_delete(request: AppRequest, section: str, record_id: int, status: int = 200) -> Response:
    record = _record_or_404(request, section, record_id)
    return request.render("records/delete.html", status, **_context(
        section, record=record, impact=related.deletion_impact(request.db, record)))


@admin_only
def delete_record(request: AppRequest, section: str, record_id: int) -> Response:
    record = _record_or_404(request, section, record_id)
    if request.form.get("confirm") != "yes":
        return confirm_delete(request, section, record_id, status=400)
    name = record.display_name
    store.delete_record(request.db, record)
    return request.redirect_to("records.list_records", section=section,
                               notice=f"Deleted {fields.NOUNS[SECTIONS[section]][0]} {name}.")


def account_choices(request: AppRequest) -> Response:
    """The account picker's suggestions, as JSON, for what has been typed so far."""
    return json_response({"accounts": search.account_choices(request.db, request.args.get("q", ""))})


def _import_page(request: AppRequest, section: str, result: csv_import.ImportResult | None = None,
                 errors: dict[str, str] | None = None) -> Response:
    return request.render("records/import.html", status=400 if errors else 200,
                          **_context(section, result=result, errors=errors or {},
                                     max_rows=csv_import.MAX_PAGE_ROWS))


def import_form(request: AppRequest, section: str) -> Response:
    return _import_page(request, section)


def import_records(request: AppRequest, section: str) -> Response:
    upload = request.files.get("file")
    if upload is None or not upload.stream.read(1):
        return _import_page(request, section, errors={"file": "choose a CSV file to import"})
    try:
        # Refused whole, before anything is written, past the page's row cap; rolled back whole
        # rather than answered by Apache's timeout.
        result = csv_import.import_csv(request.db, SECTIONS[section], upload.stream,
                                          skip_duplicates=request.form.get("duplicates") != "create",
                                          max_rows=csv_import.MAX_PAGE_ROWS, seconds=csv_import.PAGE_SECONDS,
                                          user_name=request.user.name)
    except ValidationError as exc:
        return _import_page(request, section, errors=exc.errors)
    return _import_page(request, section, result)


rules = [
    Rule("/accounts/choices", endpoint="records.account_choices", methods=["GET"]),
    Rule(f"/{SECTION}", endpoint="records.list_records", methods=["GET"]),
    Rule(f"/{SECTION}/new", endpoint="records.new_record", methods=["GET"]),
    Rule(f"/{SECTION}/new", endpoint="records.create_record", methods=["POST"]),
    Rule(f"/{SECTION}/import", endpoint="records.import_form", methods=["GET"]),
    Rule(f"/{SECTION}/import", endpoint="records.import_records", methods=["POST"]),
    Rule(f"/{SECTION}/<int:record_id>", endpoint="records.show_record", methods=["GET"]),
    Rule(f"/{SECTION}/<int:record_id>/edit", endpoint="records.edit_record", methods=["GET"]),
    Rule(f"/{SECTION}/<int:record_id>/edit", endpoint="records.update_record", methods=["POST"]),
    Rule(f"/{SECTION}/<int:record_id>/lift-opt-out", endpoint="records.lift_opt_out", methods=["POST"]),
    Rule(f"/{SECTION}/<int:record_id>/consent", endpoint="records.record_consent", methods=["POST"]),
    Rule(f"/{SECTION}/<int:record_id>/consent.csv", endpoint="records.export_consent_csv", methods=["GET"]),
    Rule(f"/{SECTION}/<int:record_id>/consent.json", endpoint="records.export_consent_json", methods=["GET"]),
    Rule(f"/{SECTION}/<int:record_id>/delete", endpoint="records.confirm_delete", methods=["GET"]),
    Rule(f"/{SECTION}/<int:record_id>/delete", endpoint="records.delete_record", methods=["POST"]),
]
