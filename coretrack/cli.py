"""The ``coretrack`` command line."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypeVar

import click

from .auth import Htpasswd, UserError, UserService
from .config import Config, ConfigError
from .db import make_engine, make_session_factory, upgrade

if TYPE_CHECKING:
    import threading

    from sqlalchemy import Engine

    from .apache import Install
    from .models import Recipient
    from .sending.compose import ComposeResult

Command = TypeVar("Command", bound=Callable[..., Any])


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


@contextmanager
def user_service(config: Config) -> Iterator[UserService]:
    with database(config) as engine, make_session_factory(engine)() as session:
        yield UserService(session, Htpasswd(config.htpasswd_path))


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
    import signal

    from werkzeug.serving import WSGIRequestHandler, run_simple

    from . import jobs
    from .app import create_standalone_app

    class RequestHandler(WSGIRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # The path without its query string: tracking tokens stay out of the log.
            self.log("info", '"%s %s" %s %s', self.command, self.path.split("?", 1)[0], code, size)

    port = port or int(os.environ.get("PORT") or 8080)
    config = load_config()
    set_up(config)
    wsgi, app = create_standalone_app(config)
    # The background jobs in this process; under Apache, 'coretrack worker' runs them beside it instead.
    stop_jobs = jobs.start(app.Session, app.config, app.tracker)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SIGTERM stops as cleanly as Ctrl-C
    try:
        run_simple(host, port, wsgi, threaded=True, use_reloader=False, request_handler=RequestHandler)
    finally:
        stop_jobs()


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
    try:
        with user_service(load_config()) as service:
            service.add(name, _read_password(password_stdin), role="admin" if admin else "staff")
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"added {'admin' if admin else 'staff'} user {name}")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def user_passwd(name: str, password_stdin: bool) -> None:
    """Set a user's password."""
    try:
        with user_service(load_config()) as service:
            service.set_password(name, _read_password(password_stdin))
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"password of {name} changed")


@user.command("disable")
@click.argument("name")
def user_disable(name: str) -> None:
    """Disable a user: they are refused (403) everywhere."""
    try:
        with user_service(load_config()) as service:
            service.set_active(name, False)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"disabled {name}")


@user.command("enable")
@click.argument("name")
def user_enable(name: str) -> None:
    """Enable a disabled user again."""
    try:
        with user_service(load_config()) as service:
            service.set_active(name, True)
    except UserError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"enabled {name}")


@user.command("list")
def user_list() -> None:
    """List users with their role and state."""
    with user_service(load_config()) as service:
        for account in service.list():
            click.echo(f"{account.name}\t{account.role}\t{'active' if account.active else 'disabled'}")


@main.command()
@click.option("--once", is_flag=True, help="deliver what is queued, then exit")
@click.option("--interval", default=5.0, show_default=True, type=float, help="seconds between looks at the queue")
def worker(once: bool, interval: float) -> None:
    """Run the background jobs beside Apache: delivery, notifications, the spool, the bounce mailbox,
    retention ('coretrack serve' runs the same itself)."""
    from . import jobs
    from .tracking.tracker import Tracker

    # Delivery ends after the message in hand, never mid-message; the rest of its batch goes back
    # to pending.
    stop = _stop_on_signals()
    config = load_config()
    with database(config) as engine:
        processed = jobs.run(make_session_factory(engine), config, Tracker.for_install(config, engine), stop,
                             once=once, interval=interval)
    click.echo(f"processed {processed} messages")


@main.command()
def bounces() -> None:
    """Read the bounce mailbox once (settings: Bounces): bounced recipients marked with the status
    code, hard bounces opted out, each bounce moved to the folder coretrack-processed."""
    from .delivery_reports.bounces import BounceError, read_mailbox

    config = load_config()
    try:
        with database(config) as engine:
            report = read_mailbox(make_session_factory(engine), config)
    except BounceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(report))


@main.command()
def purge() -> None:
    """Delete access and click events older than the retention period (settings: Tracking); the
    counts on recipients stay.  The worker does it once a day."""
    from .tracking.retention import purge as purge_events

    config = load_config()
    with database(config) as engine, make_session_factory(engine)() as session:
        deleted = purge_events(session, config)
    if deleted is None:
        click.echo("no retention period set: every event is kept")
    else:
        click.echo(" ".join(f"{table}={count}" for table, count in deleted.items()))


def _stop_on_signals() -> threading.Event:
    """Set by SIGTERM (systemd, scripts/run) or Ctrl-C: a loop ends after the batch in hand, never mid-way."""
    import signal
    import threading

    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop


@main.command()
@click.option("--once", is_flag=True, help="count what the hit log holds, then exit")
@click.option("--interval", default=0.2, show_default=True, type=float, help="seconds between looks at the log")
def ingest(once: bool, interval: float) -> None:
    """Count the image hits Apache logged, each once (run it beside Apache; systemd unit)."""
    from sqlalchemy.exc import SQLAlchemyError

    from .tracking.hitlog import IngestError
    from .tracking.ingester import Ingester

    stop = _stop_on_signals()
    config = load_config()
    try:
        with database(config) as engine:
            read = Ingester.for_install(config, engine).run(stop, once=once, interval=interval)
    except IngestError as exc:
        raise click.ClickException(str(exc)) from None
    except SQLAlchemyError as exc:  # --once only
        raise click.ClickException(f"database unavailable ({type(exc).__name__}); the hits wait in the log") from None
    except OSError as exc:  # --once only
        raise click.ClickException(f"cannot read the hit log: {exc}") from None
    click.echo(f"read {read} lines")


@main.command()
@click.option("--from-user", "from_user", required=True, help="the coretrack user sending it")
@click.option("--to", "to", multiple=True, help="address or contact:<id> / account:<id> / lead:<id> (repeatable)")
@click.option("--cc", "cc", multiple=True, help="same forms as --to (repeatable)")
@click.option("--bcc", "bcc", multiple=True, help="same forms as --to (repeatable)")
@click.option("--reply-to", "reply_to", default="")
@click.option("--subject", required=True)
@click.option("--html-file", type=click.File("r", encoding="utf-8"), help="file holding the HTML body")
@click.option("--html", "html_text", help="the HTML body itself")
@click.option("--text-file", type=click.File("r", encoding="utf-8"), help="optional text body")
@click.option("--attach", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="file to attach (repeatable)")
@click.option("--send-at", "send_at", default="",
              help="schedule it: an ISO 8601 time with its offset or Z, such as 2026-12-24T09:30:00Z "
                   "(the worker sends it then)")
@click.option("--track/--no-track", default=True, show_default=True,
              help="--no-track: no tracking image and no rewritten links in any of its messages")
def send(from_user: str, to: tuple[str, ...], cc: tuple[str, ...], bcc: tuple[str, ...], reply_to: str, subject: str,
         html_file: IO[str] | None, html_text: str | None, text_file: IO[str] | None, attach: tuple[str, ...],
         send_at: str, track: bool) -> None:
    """Compose a tracked email and deliver it now, one message per recipient (or schedule it)."""
    # (Lazy, as in the other commands: each command loads only what it needs, and --help stays quick.)
    import mimetypes

    from sqlalchemy import select

    from .localtime import parse_iso
    from .models import User
    from .sending.compose import split_addresses
    from .sending.send import NewEmail
    from .sending.send import send as send_email
    from .validation import ValidationError

    if (html_file is None) == (html_text is None):
        raise click.UsageError("give exactly one of --html-file and --html")
    try:
        scheduled = parse_iso(send_at) if send_at.strip() else None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--send-at") from None
    config = load_config()
    with database(config) as engine:
        session_factory = make_session_factory(engine)
        with session_factory() as session:
            sender = session.scalar(select(User).where(User.name == from_user))
            if sender is None or not sender.active:
                raise click.ClickException(f"no active coretrack user named {from_user!r}")
            new = NewEmail(
                to=[e for v in to for e in split_addresses(v)], cc=[e for v in cc for e in split_addresses(v)],
                bcc=[e for v in bcc for e in split_addresses(v)], subject=subject,
                html=html_file.read() if html_file else html_text or "", text=text_file.read() if text_file else "",
                reply_to=reply_to, send_at=scheduled, track=track,
                attachments=[(Path(path).name, mimetypes.guess_type(path)[0] or "application/octet-stream",
                              Path(path).read_bytes()) for path in attach],
            )
            try:
                outcome = send_email(session, session_factory, config, sender, new, deliver_all=True,
                                     progress=_progress_bar)
            except ValidationError as exc:
                raise click.ClickException("; ".join(f"{k}: {v}" for k, v in exc.errors.items())) from None
            if not outcome.sent_now:
                _echo_skipped(outcome.skipped)
            for recipient in outcome.email.recipients:
                if recipient.status == "failed":
                    click.echo(f"failed {recipient.address}: {recipient.reply}", err=True)
            email_id, skipped = outcome.email.id, len(outcome.skipped)
            if not outcome.sent_now and outcome.pending:
                click.echo(f"email {email_id}: scheduled for {outcome.email.send_at:%Y-%m-%d %H:%M} UTC, "
                           f"{outcome.pending} to send, {skipped} skipped")
                return
    report = outcome.report
    sent, failed = (report.sent, report.failed) if report else (0, 0)
    click.echo(f"email {email_id}: {sent} sent, {failed} failed, {skipped} skipped")
    if failed:
        sys.exit(1)


def _echo_skipped(skipped: Sequence[Recipient]) -> None:
    for recipient in skipped:
        click.echo(f"skipped {recipient.address}: {recipient.reply}", err=True)


@contextmanager
def _progress_bar(composed: ComposeResult) -> Iterator[Callable[[int], None]]:
    """What ``coretrack send`` shows while it delivers: who is skipped, then a bar of the messages."""
    _echo_skipped(composed.skipped)
    with click.progressbar(length=composed.pending, label=f"email {composed.email.id}") as bar:
        yield bar.update


def _install_options(command: Command) -> Command:
    """Options shared by apache-config and doctor: what the Apache install looks like."""
    import sys

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
    import os

    from .apache import ApacheConfigError, Install

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


@main.command("apache-config")
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
    from .apache import ApacheConfigError, express_command, write_config, write_private_server

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


@main.command()
@_install_options
@click.option("--public-url", help="check this URL instead of the configured public URL")
def doctor(home: str | None, prefix: str, server_name: str, listen: str, venv: str, run_user: str, run_group: str,
           public_url: str | None) -> None:
    """Check an install: files and permissions, database, Apache syntax, the public surface."""
    from . import doctor as checks

    config, install = _install(home, prefix, server_name, listen, venv, run_user, run_group)
    results = checks.run(config, install, public_url)
    for result in results:
        click.echo(result.line())
    failed = sum(not result.ok for result in results)
    if failed:
        raise click.ClickException(f"{failed} check(s) failed; see the fixes above")
    click.echo("everything looks right")


@main.command()
def routes() -> None:
    """List the URL map: methods, path, endpoint and who may reach it, sorted by path."""
    from .app import HANDLERS, URL_MAP
    from .http import access

    rows = [("METHODS", "PATH", "ENDPOINT", "ACCESS")]
    for rule in sorted(URL_MAP.iter_rules(), key=lambda rule: (rule.rule, sorted(rule.methods or ()))):
        if rule.build_only:
            continue  # /static: served by Apache (or the standalone middleware) behind the login
        rows.append((",".join(sorted(rule.methods or ())), rule.rule, rule.endpoint, access(HANDLERS[rule.endpoint])))
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    for row in rows:
        click.echo("  ".join(value.ljust(width) for value, width in zip(row[:3], widths, strict=True)) + "  " + row[3])


@main.group("import")
def import_() -> None:
    """Bring data over from another system."""


@import_.command("corebos")
@click.option("--from", "source", required=True, metavar="URL",
              help="the coreBOS database: mysql+pymysql://user:password@host/database (only read)")
@click.option("--dry-run", is_flag=True, help="say what would be imported; write nothing")
def import_corebos(source: str, dry_run: bool) -> None:
    """Import coreBOS's contacts, accounts, leads, emails and access counts; a second run adds only what is new."""

    from . import corebos_import

    def progress(stage: str, rows: list[object]) -> Iterator[object]:
        # A bar on a terminal, one line per stage otherwise (logs, cron).
        if sys.stderr.isatty():
            with click.progressbar(rows, label=f"{stage:<10}", file=sys.stderr) as bar:
                yield from bar
        else:
            yield from rows
            click.echo(f"{stage}: {len(rows)} read", err=True)

    config = load_config()
    try:
        engine = corebos_import.connect(source)
    except corebos_import.CoreBOSError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        with database(config) as target, make_session_factory(target)() as session:
            report = corebos_import.Importer(engine, session, config.secret_key(), progress).run(dry_run=dry_run)
    except corebos_import.CoreBOSError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        engine.dispose()
    for line in report.lines(dry_run):
        click.echo(line)
    if dry_run:
        click.echo("dry run: nothing was written")


@import_.command("csv")
@click.argument("file", type=click.File("rb"))
@click.option("--type", "section", required=True, type=click.Choice(["contacts", "accounts", "leads"]),
              help="what each row is")
@click.option("--create-duplicates", is_flag=True,
              help="import a contact or lead whose address one already has (listed either way)")
def import_csv(file: IO[bytes], section: str, create_duplicates: bool) -> None:
    """Import a CSV file of any size (the columns of the import page); each batch is committed as it goes."""
    from .records import csv_import
    from .validation import ValidationError

    try:
        total = csv_import.count_rows(file)  # for the bar; a file that is not UTF-8 is refused here
    except ValidationError as exc:
        raise click.ClickException(f"{file.name}: {exc.errors['file']}") from None
    config = load_config()
    with database(config) as engine, make_session_factory(engine)() as session, \
            click.progressbar(length=total, label="rows", file=sys.stderr) as bar:
        reported = 0

        def committed(result: csv_import.ImportResult) -> None:
            # Each batch stays imported even if a later one fails: the lines say how far it got.
            nonlocal reported
            session.commit()
            bar.update(result.rows - bar.pos)
            if not sys.stderr.isatty() and result.rows - reported >= 10 * csv_import.BATCH_ROWS:
                click.echo(f"{result.rows} of {total} rows read, {result.created} created", err=True)
                reported = result.rows

        try:
            result = csv_import.import_csv(session, section[:-1], file, skip_duplicates=not create_duplicates,
                                              after_batch=committed)
        except ValidationError as exc:
            raise click.ClickException(f"{file.name}: {exc.errors['file']}") from None
    click.echo(f"created {result.created} {section} from {result.rows} rows")
    for line, message in result.errors:
        click.echo(f"line {line}: {message}")
    if result.error_count > len(result.errors):
        click.echo(f"... {result.error_count - len(result.errors)} more problems")
    verb = "skipped" if result.duplicates_skipped else "imported all the same"
    click.echo(f"rows for a person already here ({verb}): {result.duplicate_count}")
    for line, message in result.duplicates:
        click.echo(f"line {line}: {message}")
    if result.duplicate_count > len(result.duplicates):
        click.echo(f"... {result.duplicate_count - len(result.duplicates)} more")


@main.group()
def spool() -> None:
    """Tracking hits kept on disk while the database was unavailable."""


@spool.command("replay")
def spool_replay() -> None:
    """Count the spooled hits now (each exactly once)."""
    from .tracking.tracker import Tracker

    config = load_config()
    with database(config) as engine:
        tracker = Tracker.for_install(config, engine)
        pending = tracker.spool.pending()
        replayed = tracker.replay_spool()
        if pending and tracker.spool.pending():
            raise click.ClickException("the database is still unavailable; the spool is kept for later")
    click.echo(f"replayed {replayed} hits")


def run() -> None:
    """The ``coretrack`` command: what it writes into the data directory is private (see config.UMASK)."""
    import os

    from .config import UMASK

    os.umask(UMASK)
    main()


if __name__ == "__main__":
    run()
