"""The ``coretrack`` command line (the console script is ``coretrack.cli:run``): one module per group
of commands, each command parsing its options and calling the services.

- common.py: the configuration, the database, the first start's set-up;
- server.py: serve, worker, ingest, bounces, purge, spool replay;
- users.py: user add/passwd/disable/enable/list;
- send.py: send;
- imports.py: import corebos/csv;
- install.py: db upgrade, apache-config, doctor, routes.
"""

from __future__ import annotations

import os

import click

from ..config import UMASK
from .imports import import_
from .install import apache_config, db, doctor, routes
from .send import send
from .server import bounces, ingest, purge, serve, spool, worker
from .users import user


@click.group()
def main() -> None:
    """coretrack: CRM email with open tracking."""


for command in (db, serve, user, worker, bounces, purge, ingest, send, apache_config, doctor, routes, import_, spool):
    main.add_command(command)


def run() -> None:
    """The ``coretrack`` command: what it writes into the data directory is private (see config.UMASK)."""
    os.umask(UMASK)
    main()
