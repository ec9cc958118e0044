"""``coretrack user``: users in the database and the htpasswd file, kept in step."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click

from ..auth import UserError, UserService
from .common import load_config, user_service


@click.group()
def user() -> None:
    """Users: the database and the htpasswd file, kept in step."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _change(change: Callable[[UserService], object], done: str) -> None:
    """Makes one change to the users and says ``done``; a change the service refuses is the command's error."""
    try:
        with user_service(load_config()) as service:
            change(service)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(done)


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="give the admin role")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def user_add(name: str, admin: bool, password_stdin: bool) -> None:
    """Add a user (staff unless --admin)."""
    role = "admin" if admin else "staff"
    _change(lambda service: service.add(name, _read_password(password_stdin), role=role), f"added {role} user {name}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def user_passwd(name: str, password_stdin: bool) -> None:
    """Set a user's password."""
    _change(lambda service: service.set_password(name, _read_password(password_stdin)), f"password of {name} changed")


@user.command("disable")
@click.argument("name")
def user_disable(name: str) -> None:
    """Disable a user: they are refused (403) everywhere."""
    _change(lambda service: service.set_active(name, False), f"disabled {name}")


@user.command("enable")
@click.argument("name")
def user_enable(name: str) -> None:
    """Enable a disabled user again."""
    _change(lambda service: service.set_active(name, True), f"enabled {name}")


@user.command("list")
def user_list() -> None:
    """List users with their role and state."""
    with user_service(load_config()) as service:
        for account in service.list():
            click.echo(f"{account.name}\t{account.role}\t{'active' if account.active else 'disabled'}")
