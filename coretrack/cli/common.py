"""What every command needs: the install's configuration and database, the first start's set-up, and
a stop on SIGTERM or Ctrl-C for the commands that loop."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from ..auth import Htpasswd, UserService
from ..config import Config, ConfigError
from ..db import make_engine, make_session_factory
from ..schema import upgrade

if TYPE_CHECKING:
    from sqlalchemy import Engine


def load_config() -> Config:
    try:
        return Config.from_env()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@contextmanager
def database(config: Config) -> Iterator[Engine]:
    """The install's database for one command, its connections closed at the end (commands also
    run inside other processes: tests, and the set-up of 'coretrack serve')."""
    engine = make_engine(config.database_url)
    try:
        yield engine
    finally:
        engine.dispose()


@contextmanager
def user_service(config: Config) -> Iterator[UserService]:
    with database(config) as engine, make_session_factory(engine)() as session:
        yield UserService(session, Htpasswd(config.htpasswd_path))


def set_up(config: Config) -> None:
    """Everything a first start needs: data directory, secret key, schema, an admin."""
    config.prepare_home()
    upgrade(config.database_url)
    with user_service(config) as users:
        generated = users.ensure_admin(config.admin_password)
    config.make_private()  # the new database too, and what an older version left open
    if generated:
        click.echo(f"Created user 'admin' with password: {generated}  (shown once; change it with "
                   f"'coretrack user passwd admin')", err=True)


def stop_on_signals() -> threading.Event:
    """Set by SIGTERM (systemd, scripts/run) or Ctrl-C: a loop ends after the batch in hand, never mid-way."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
