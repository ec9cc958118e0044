"""Templates: the list, the form to write or change one, and deleting one."""

from __future__ import annotations

from werkzeug.exceptions import BadRequest, Forbidden
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..db import MAX_ID
from ..http import AppRequest
from ..models import EmailTemplate
from ..sending import merge_fields, templates, to_me
from ..sending.preview import chosen_recipient
from ..sending.send import NewEmail, prepare_new
from ..validation import ValidationError, whole_number


def _template_or_404(request: AppRequest, template_id: int) -> EmailTemplate:
    return request.get_or_404(EmailTemplate, template_id, f"there is no template with id {template_id}")


def _changeable(request: AppRequest, template_id: int) -> EmailTemplate:
    template = _template_or_404(request, template_id)
    if not templates.may_change(request.user, template):
        raise Forbidden("only administrators and the template's owner can change it")
    return template


def list_templates(request: AppRequest) -> Response:
    return request.render("email_templates/list.html", section="templates",
                          templates=templates.all_templates(request.db))


def _form(request: AppRequest, template: EmailTemplate | None, values: dict[str, str] | None = None,
          errors: dict[str, str] | None = None, status: int = 200, test_as: str = "") -> Response:
    if values is None:
        values = {"name": "", "subject": "", "html": "", "text": "", "asks_consent": ""} if template is None else {
            "name": template.name, "subject": template.subject, "html": template.html_body, "text": template.text_body,
            "asks_consent": "on" if template.asks_consent else ""}
    return request.render("email_templates/form.html", status, section="templates", saved=template, values=values,
                          errors=errors or {}, merge_fields=merge_fields.OFFERED, test_as=test_as,
                          may_change=template is None or templates.may_change(request.user, template))


def new_template(request: AppRequest) -> Response:
    # ?builtin=consent-request: the built-in consent request, to save as one's own template.
    return _form(request, None, dict(templates.CONSENT_REQUEST) if request.args.get("builtin") == "consent-request"
                 else None)


def show_template(request: AppRequest, template_id: int) -> Response:
    return _form(request, _template_or_404(request, template_id))


def _save(request: AppRequest, template: EmailTemplate | None) -> Response:
    values = {name: request.form.get(name, "") for name in (*templates.FIELDS, *templates.FLAGS)}
    try:
        remove = [whole_number(value, 1, MAX_ID) for value in request.form.getlist("remove")]
    except ValueError as error:
        raise BadRequest(f"remove: {error}") from None
    try:
        saved = templates.save(request.db, request.app.config, request.user, values,
                               request.uploads("attachments"), remove, template)
    except ValidationError as exc:
        return _form(request, template, values, exc.errors, 400)
    return request.redirect_to("email_templates.show_template", template_id=saved.id,
                               notice=f"Saved the template “{saved.name}”.")


def test_template(request: AppRequest, template_id: int) -> Response:
    """Send a test to me: the template as the record or address named (else the user) gets it."""
    template = _template_or_404(request, template_id)
    test_as = request.form.get("test_as", "").strip()
    new = NewEmail(to=[test_as or request.user.email or request.user.name], subject=template.subject,
                   html=template.html_body, text=template.text_body, template=template)
    try:
        prepared = prepare_new(request.db, request.app.config, request.user, new)
        recipient = chosen_recipient(prepared, "")
        sent_to = to_me.send_test(request.db, request.app.config, request.user, prepared, recipient)
    except ValidationError as exc:
        errors = {"test_as" if key == "to" else "test": message for key, message in exc.errors.items()}
        if "test_as" in errors and not test_as:
            errors = {"test": "add your email address on your Account page: a test goes there"}
        return _form(request, template, errors=errors, status=400, test_as=test_as)
    return request.redirect_to("email_templates.show_template", template_id=template.id,
                               notice=f"Test sent to {sent_to}, as {recipient.address} gets it: marked [Test], "
                                      "counted nowhere.")


def create_template(request: AppRequest) -> Response:
    return _save(request, None)


def update_template(request: AppRequest, template_id: int) -> Response:
    return _save(request, _changeable(request, template_id))


def delete_template(request: AppRequest, template_id: int) -> Response:
    template = _changeable(request, template_id)
    if request.form.get("confirm") != "yes":
        return _form(request, template, errors={"confirm": "Nothing was deleted: tick the box to confirm."},
                     status=400)
    name = template.name
    templates.delete(request.db, request.app.config, template)
    return request.redirect_to("email_templates.list_templates", notice=f"Deleted the template “{name}”.")


rules = [
    Rule("/templates", endpoint="email_templates.list_templates", methods=["GET"]),
    Rule("/templates", endpoint="email_templates.create_template", methods=["POST"]),
    Rule("/templates/new", endpoint="email_templates.new_template", methods=["GET"]),
    Rule("/templates/<int:template_id>", endpoint="email_templates.show_template", methods=["GET"]),
    Rule("/templates/<int:template_id>", endpoint="email_templates.update_template", methods=["POST"]),
    Rule("/templates/<int:template_id>/test", endpoint="email_templates.test_template", methods=["POST"]),
    Rule("/templates/<int:template_id>/delete", endpoint="email_templates.delete_template", methods=["POST"]),
]
