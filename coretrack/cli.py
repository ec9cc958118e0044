"""The ``coretrack`` command line."""

from __future__ import annotations

import sys

import click

from .auth import Htpasswd, UserError, UserService
from .config import Config, ConfigError
from .db import make_engine, make_session_factory, upgrade


def load_config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def set_up(config: Config) -> None:
    """Everything a first start needs: data directory, secret key, schema, an admin."""
    config.prepare_home()
    upgrade(config.database_url)
    engine = make_engine(config.database_url)
    try:
        with make_session_factory(engine)() as session:
            generated = UserService(session, Htpasswd(config.htpasswd_path)).ensure_admin(config.admin_password)
    finally:
        engine.dispose()
    if generated:
        click.echo(f"Created user 'admin' with password: {generated}  (shown once; change it with "
                   f"'coretrack user passwd admin')", err=True)


def user_service(config: Config):
    engine = make_engine(config.database_url)
    return UserService(make_session_factory(engine)(), Htpasswd(config.htpasswd_path))


@click.group()
def main() -> None:
    """coretrack: CRM email with open tracking."""


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema (and the data directory, secret key and first admin)."""
    set_up(load_config())
    click.echo("database is up to date")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=None, type=int, help="default: $PORT or 8080")
def serve(host: str, port: int | None) -> None:
    """Serve with Werkzeug's server (development and tests); Basic auth checked in Python."""
    import os

    from werkzeug.serving import run_simple

    from .app import create_standalone_app

    port = port or int(os.environ.get("PORT") or 8080)
    config = load_config()
    set_up(config)
    wsgi, app = create_standalone_app(config)
    start_background_worker(app)
    run_simple(host, port, wsgi, threaded=True, use_reloader=False)


def start_background_worker(app) -> None:
    """Standalone mode sends queued email itself; under Apache 'coretrack worker' does."""
    from .sending import start_worker_thread

    start_worker_thread(app)


@main.group()
def user() -> None:
    """Users: the database and the htpasswd file, kept in step."""


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


@user.command("add")
@click.argument("name")
@click.option("--admin", is_flag=True, help="give the admin role")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def user_add(name: str, admin: bool, password_stdin: bool) -> None:
    """Add a user (staff unless --admin)."""
    service = user_service(load_config())
    try:
        service.add(name, _read_password(password_stdin), role="admin" if admin else "staff")
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {'admin' if admin else 'staff'} user {name}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def user_passwd(name: str, password_stdin: bool) -> None:
    """Set a user's password."""
    service = user_service(load_config())
    try:
        service.set_password(name, _read_password(password_stdin))
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"password of {name} changed")


@user.command("disable")
@click.argument("name")
def user_disable(name: str) -> None:
    """Disable a user: they are refused (403) everywhere."""
    try:
        user_service(load_config()).set_active(name, False)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"disabled {name}")


@user.command("enable")
@click.argument("name")
def user_enable(name: str) -> None:
    """Enable a disabled user again."""
    try:
        user_service(load_config()).set_active(name, True)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"enabled {name}")


@user.command("list")
def user_list() -> None:
    """List users with their role and state."""
    for account in user_service(load_config()).list():
        click.echo(f"{account.name}\t{account.role}\t{'active' if account.active else 'disabled'}")


@main.group()
def spool() -> None:
    """Tracking hits kept on disk while the database was unavailable."""


@spool.command("replay")
def spool_replay() -> None:
    """Count the spooled hits now (each exactly once)."""
    from .tracking import Tracker

    config = load_config()
    tracker = Tracker(make_engine(config.database_url), config.secret_key(), config.spool_dir)
    pending = tracker.spool.pending()
    replayed = tracker.replay_spool()
    if pending and tracker.spool.pending():
        raise click.ClickException("the database is still unavailable; the spool is kept for later")
    click.echo(f"replayed {replayed} hits")


if __name__ == "__main__":
    main()
