"""Setting up and checking an install: ``db upgrade``, ``apache-config``, ``doctor`` and ``routes``.

The Apache, doctor and URL-map code is imported by the command that uses it, when it runs: the other
commands start without it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..config import Config, ConfigError
from .common import load_config, set_up

if TYPE_CHECKING:
    from ..apache import Install

Command = TypeVar("Command", bound=Callable[..., Any])


@click.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema (and the data directory, secret key and first admin)."""
    set_up(load_config())
    click.echo("database is up to date")


def _install_options(command: Command) -> Command:
    """Options shared by apache-config and doctor: what the Apache install looks like."""
    options = [
        click.option("--home", type=click.Path(file_okay=False), help="data directory (default: $CORETRACK_HOME)"),
        click.option("--prefix", default="", help="URL prefix such as /crm (default: at /)"),
        click.option("--server-name", default="localhost", show_default=True),
        click.option("--listen", default="*:80", show_default=True, help="ADDRESS:PORT of the virtual host"),
        click.option("--venv", default=sys.prefix, show_default=True, type=click.Path(file_okay=False)),
        click.option("--user", "run_user", default="www-data", show_default=True, help="user of the Apache workers"),
        click.option("--group", "run_group", default="www-data", show_default=True),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _install(home: str | None, prefix: str, server_name: str, listen: str, venv: str, run_user: str, run_group: str,
             output: str | None = None, tls_certificate: str | None = None,
             tls_key: str | None = None, hit_log: bool = True) -> tuple[Config, Install]:
    # Lazy: the Apache config writer loads for apache-config and doctor only.
    from ..apache import ApacheConfigError, Install

    environ = dict(os.environ)
    if home:
        environ["CORETRACK_HOME"] = home
    try:
        config = Config.from_env(environ)
        return config, Install(
            home=config.home, venv=Path(venv), prefix=prefix, server_name=server_name, listen=listen, user=run_user,
            group=run_group, output_dir=Path(output) if output else None,
            tls_certificate=Path(tls_certificate) if tls_certificate else None,
            tls_key=Path(tls_key) if tls_key else None, hit_log=hit_log)
    except (ConfigError, ApacheConfigError) as exc:
        raise click.ClickException(str(exc)) from None


@click.command("apache-config")
@click.option("--form", type=click.Choice(["site", "express", "htaccess"]), default="site", show_default=True)
@_install_options
@click.option("--output", type=click.Path(file_okay=False), help="where to write (default: $CORETRACK_HOME/apache)")
@click.option("--private-server", is_flag=True, help="also write httpd.conf for a private instance (site/htaccess)")
@click.option("--tls-cert", type=click.Path(dir_okay=False), help="HTTPS (site/htaccess): the certificate chain, PEM")
@click.option("--tls-key", type=click.Path(dir_okay=False), help="HTTPS (site/htaccess): its private key, PEM")
@click.option("--no-hit-log", is_flag=True,
              help="site/express: the application answers the image itself (no hit log, no 'coretrack ingest')")
def apache_config(form: str, home: str | None, prefix: str, server_name: str, listen: str, venv: str, run_user: str,
                  run_group: str, output: str | None, private_server: bool, tls_cert: str | None,
                  tls_key: str | None, no_hit_log: bool) -> None:
    """Write the Apache config of one form for this install; prints the files written."""
    # Lazy: the Apache config writer loads for this command only.
    from ..apache import ApacheConfigError, express_command, write_config, write_private_server

    if form == "express" and (tls_cert or tls_key):
        raise click.ClickException("the express form takes HTTPS from mod_wsgi-express's own options "
                                   "(--https-port, --ssl-certificate-file, --ssl-certificate-key-file)")
    config, install = _install(home, prefix, server_name, listen, venv, run_user, run_group, output,
                               tls_certificate=tls_cert, tls_key=tls_key, hit_log=not no_hit_log)
    try:
        if private_server:
            click.echo(write_private_server(form, install, config))
            return
        for path in write_config(form, install, config):
            click.echo(path)
    except ApacheConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if form == "express":
        port = int(listen.rsplit(":", 1)[1])
        click.echo("start it with:\n  " + " ".join(express_command(install, port)), err=True)
        if install.hit_log:
            click.echo(f"and beside it, as {install.user} (or the coretrack-ingest unit), to count the image hits:\n"
                       f"  CORETRACK_CONFIG={install.output / 'coretrack.env'} {install.venv}/bin/coretrack ingest",
                       err=True)


@click.command()
@_install_options
@click.option("--public-url", help="check this URL instead of the configured public URL")
def doctor(home: str | None, prefix: str, server_name: str, listen: str, venv: str, run_user: str, run_group: str,
           public_url: str | None) -> None:
    """Check an install: files and permissions, database, Apache syntax, the public surface, and the
    DNS of the mail it sends (SPF, DKIM, DMARC; the DNS server of CORETRACK_DNS_SERVER, else the system's)."""
    # Lazy: the checks (HTTP, Apache, the database) load for this command only.
    from .. import doctor as checks

    config, install = _install(home, prefix, server_name, listen, venv, run_user, run_group)
    results = checks.run(config, install, public_url)
    for result in results:
        click.echo(result.line())
    failed = sum(not result.ok for result in results)
    if failed:
        raise click.ClickException(f"{failed} check(s) failed; see the fixes above")
    click.echo("everything looks right")


@click.command()
def routes() -> None:
    """List the URL map: methods, path, endpoint and who may reach it, sorted by path."""
    # Lazy: the URL map imports the application and every view.
    from ..app import HANDLERS, URL_MAP
    from ..http import access

    rows = [("METHODS", "PATH", "ENDPOINT", "ACCESS")]
    for rule in sorted(URL_MAP.iter_rules(), key=lambda rule: (rule.rule, sorted(rule.methods or ()))):
        if rule.build_only:
            continue  # /static: served by Apache (or the standalone middleware) behind the login
        rows.append((",".join(sorted(rule.methods or ())), rule.rule, rule.endpoint, access(HANDLERS[rule.endpoint])))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        click.echo("  ".join(value.ljust(width) for value, width in zip(row[:3], widths, strict=True)) + "  " + row[3])
