"""Outbound webhooks (admins only): the endpoints with the add form, each endpoint's page (its events,
secret and rotation, its log of deliveries with "send again"), and deleting one."""

from __future__ import annotations

from sqlalchemy import select
from werkzeug.exceptions import NotFound
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..http import AppRequest, admin_only
from ..models import WebhookDelivery, WebhookEndpoint
from ..validation import ValidationError
from ..webhooks import endpoints, signing
from ..webhooks.delivery import RETRY_DELAYS
from ..webhooks.events import TYPES


def _endpoint(request: AppRequest, endpoint_id: int) -> WebhookEndpoint:
    found = request.db.get(WebhookEndpoint, endpoint_id)
    if found is None:
        raise NotFound("No such webhook endpoint.")
    return found


def _list(request: AppRequest, values: dict[str, object], errors: dict[str, str], status: int = 200) -> Response:
    listed = [(endpoint, endpoints.counts(request.db, endpoint))
              for endpoint in request.db.scalars(select(WebhookEndpoint).order_by(WebhookEndpoint.id))]
    return request.render("webhooks/list.html", status, section="settings", listed=listed, types=TYPES,
                          values=values, errors=errors)


def _detail(request: AppRequest, endpoint: WebhookEndpoint, values: dict[str, object], errors: dict[str, str],
            status: int = 200) -> Response:
    return request.render(
        "webhooks/detail.html", status, section="settings", endpoint=endpoint, types=TYPES, values=values,
        errors=errors, secret=endpoints.secret(request.app.secret, endpoint), log=endpoints.log(request.db, endpoint),
        counts=endpoints.counts(request.db, endpoint), headers=signing, attempts=len(RETRY_DELAYS) + 1)


def _submitted(request: AppRequest) -> dict[str, object]:
    return {"url": request.form.get("url", ""), "events": request.form.getlist("events"),
            "active": request.form.get("active") in ("on", "true")}


@admin_only
def webhooks_page(request: AppRequest) -> Response:
    return _list(request, {"url": "", "events": list(TYPES)}, {})


@admin_only
def add_endpoint(request: AppRequest) -> Response:
    values = _submitted(request)
    try:
        endpoint = endpoints.create(request.db, request.app.secret, request.form.get("url", ""),
                                    request.form.getlist("events"), request.user.name)
    except ValidationError as exc:
        return _list(request, values, exc.errors, 400)
    return request.redirect_to("webhooks.endpoint_page", endpoint_id=endpoint.id,
                               notice="Endpoint added: give its signing secret, shown below, to the receiver.")


@admin_only
def endpoint_page(request: AppRequest, endpoint_id: int) -> Response:
    endpoint = _endpoint(request, endpoint_id)
    return _detail(request, endpoint, {"url": endpoint.url, "events": sorted(endpoints.wants(endpoint)),
                                       "active": endpoint.active}, {})


@admin_only
def save_endpoint(request: AppRequest, endpoint_id: int) -> Response:
    endpoint = _endpoint(request, endpoint_id)
    values = _submitted(request)
    try:
        endpoints.change(request.db, endpoint, request.form.get("url", ""), request.form.getlist("events"),
                         bool(values["active"]))
    except ValidationError as exc:
        request.db.rollback()
        return _detail(request, _endpoint(request, endpoint_id), values, exc.errors, 400)
    return request.redirect_to("webhooks.endpoint_page", endpoint_id=endpoint.id, notice="Endpoint saved.")


@admin_only
def rotate_secret(request: AppRequest, endpoint_id: int) -> Response:
    endpoint = _endpoint(request, endpoint_id)
    endpoints.rotate(request.db, request.app.secret, endpoint)
    hours = int(endpoints.ROTATION_WINDOW.total_seconds() // 3600)
    return request.redirect_to(
        "webhooks.endpoint_page", endpoint_id=endpoint.id,
        notice=f"New signing secret made: deliveries carry signatures with both secrets for {hours} hours. "
               "Give the receiver the new one within that time.")


@admin_only
def delete_endpoint(request: AppRequest, endpoint_id: int) -> Response:
    endpoint = _endpoint(request, endpoint_id)
    if request.form.get("confirm") != "yes":
        return _detail(request, endpoint, {"url": endpoint.url, "events": sorted(endpoints.wants(endpoint)),
                                           "active": endpoint.active}, {"confirm": "tick the box to confirm"}, 400)
    endpoints.delete(request.db, endpoint)
    return request.redirect_to("webhooks.webhooks_page", notice="Endpoint deleted, with its deliveries.")


@admin_only
def send_again(request: AppRequest, delivery_id: int) -> Response:
    delivery = request.db.get(WebhookDelivery, delivery_id)
    if delivery is None:
        raise NotFound("No such webhook delivery.")
    endpoint_id = delivery.endpoint_id
    endpoints.send_again(request.db, delivery)
    return request.redirect_to("webhooks.endpoint_page", endpoint_id=endpoint_id,
                               notice=f"Delivery {delivery_id} queued: it is sent again within seconds.")


rules = [
    Rule("/settings/webhooks", endpoint="webhooks.webhooks_page", methods=["GET"]),
    Rule("/settings/webhooks", endpoint="webhooks.add_endpoint", methods=["POST"]),
    Rule("/settings/webhooks/<int:endpoint_id>", endpoint="webhooks.endpoint_page", methods=["GET"]),
    Rule("/settings/webhooks/<int:endpoint_id>", endpoint="webhooks.save_endpoint", methods=["POST"]),
    Rule("/settings/webhooks/<int:endpoint_id>/rotate", endpoint="webhooks.rotate_secret", methods=["POST"]),
    Rule("/settings/webhooks/<int:endpoint_id>/delete", endpoint="webhooks.delete_endpoint", methods=["POST"]),
    Rule("/settings/webhooks/deliveries/<int:delivery_id>/again", endpoint="webhooks.send_again",
         methods=["POST"]),
]
