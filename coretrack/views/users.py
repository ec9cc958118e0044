"""User management (admins only): add users, disable/enable them, change roles and passwords.

Every change goes through auth.UserService, which keeps the users table and
the htpasswd file Apache reads in step.
"""

from __future__ import annotations

from collections.abc import Callable

from werkzeug.exceptions import NotFound
from werkzeug.routing import Rule
from werkzeug.wrappers import Response

from ..auth import UserError, UserService
from ..http import AppRequest, admin_only
from ..models import ROLES, User

MISMATCH = "the two passwords are not the same"


def user_service(request: AppRequest) -> UserService:
    return UserService(request.db, request.app.htpasswd)


def existing_user(service: UserService, name: str) -> User:
    user = service.get(name)
    if user is None:
        raise NotFound(f"there is no user {name!r}")
    return user


def render_list(request: AppRequest, service: UserService, status: int = 200, new: dict[str, str] | None = None,
                errors: dict[str, str] | None = None, row_errors: dict[str, dict[str, str]] | None = None,
                alert: str | None = None) -> Response:
    """The users page; ``errors`` belong to the add form, ``row_errors`` to one user's row (name -> field -> text)."""
    return request.render(
        "users/index.html", status, section="users", users=service.list(), roles=ROLES,
        new=new or {"name": "", "role": "staff"}, errors=errors or {}, row_errors=row_errors or {}, alert=alert,
    )


def row_error(request: AppRequest, service: UserService, name: str, error: UserError) -> Response:
    request.db.rollback()
    return render_list(request, service, status=400, row_errors={name: {error.field or "action": str(error)}},
                       alert=f"{name}: {error}")


@admin_only
def users_page(request: AppRequest) -> Response:
    """The list and the add form."""
    return render_list(request, user_service(request))


@admin_only
def add_user(request: AppRequest) -> Response:
    service = user_service(request)
    form = request.form
    new = {"name": form.get("name", "").strip(), "role": form.get("role", "")}
    password = form.get("password", "")
    errors = service.new_user_errors(new["name"], password, new["role"])
    if password != form.get("confirm", ""):
        errors.setdefault("confirm", MISMATCH)
    if not errors:
        try:
            service.add(new["name"], password, new["role"])
        except UserError as exc:  # e.g. added by someone else meanwhile
            errors[exc.field or "name"] = str(exc)
    if errors:
        return render_list(request, service, status=400, new=new, errors=errors,
                           alert="The user was not added: correct the fields marked below.")
    return request.redirect_to("users.users_page", notice=f"Added {new['role']} user {new['name']}.")


@admin_only
def confirm_disable(request: AppRequest, name: str) -> Response:
    """What disabling will do, and the button."""
    user = existing_user(user_service(request), name)
    return request.render("users/disable.html", section="users", target=user, error=None)


@admin_only
def disable_user(request: AppRequest, name: str) -> Response:
    service = user_service(request)
    user = existing_user(service, name)
    try:
        service.set_active(name, False, by=request.user.name)
    except UserError as exc:
        request.db.rollback()
        return request.render("users/disable.html", 400, section="users", target=user, error=str(exc))
    return request.redirect_to("users.users_page", notice=f"{name} is disabled and is refused on every page.")


def _row_action(request: AppRequest, name: str, action: Callable[[UserService], object], notice: str) -> Response:
    """One user's row changed by ``action``; its failure is shown on that row, the rest of the page kept."""
    service = user_service(request)
    existing_user(service, name)
    try:
        action(service)
    except UserError as exc:
        return row_error(request, service, name, exc)
    return request.redirect_to("users.users_page", notice=notice)


@admin_only
def enable_user(request: AppRequest, name: str) -> Response:
    return _row_action(request, name, lambda service: service.set_active(name, True, by=request.user.name),
                       f"{name} is enabled again.")


@admin_only
def change_role(request: AppRequest, name: str) -> Response:
    role = request.form.get("role", "")
    return _row_action(request, name, lambda service: service.set_role(name, role, by=request.user.name),
                       f"{name} now has the {role} role.")


@admin_only
def set_password(request: AppRequest, name: str) -> Response:
    password = request.form.get("password", "")

    def change(service: UserService) -> None:
        if password != request.form.get("confirm", ""):
            raise UserError(MISMATCH, "confirm")
        service.set_password(name, password)

    return _row_action(request, name, change, f"The password of {name} is changed.")


rules = [
    Rule("/users", endpoint="users.users_page", methods=["GET"]),
    Rule("/users", endpoint="users.add_user", methods=["POST"]),
    Rule("/users/<name>/disable", endpoint="users.confirm_disable", methods=["GET"]),
    Rule("/users/<name>/disable", endpoint="users.disable_user", methods=["POST"]),
    Rule("/users/<name>/enable", endpoint="users.enable_user", methods=["POST"]),
    Rule("/users/<name>/role", endpoint="users.change_role", methods=["POST"]),
    Rule("/users/<name>/password", endpoint="users.set_password", methods=["POST"]),
]
