"""Running coretrack: ``serve`` (development and tests), the background jobs beside Apache (``worker``,
``ingest``), and one turn of a job by hand (``bounces``, ``purge``, ``spool replay``).

Each command imports what only it needs when it runs: ``coretrack --help`` and the other commands
start without loading the application, its views and the tracking machinery.
"""

from __future__ import annotations

import os
import signal
import sys

import click

from ..db import make_session_factory
from .common import database, load_config, set_up, stop_on_signals


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=None, type=int, help="default: $PORT or 8080")
def serve(host: str, port: int | None) -> None:
    """Serve with Werkzeug's server (development and tests); Basic auth checked in Python."""
    # Lazy: the development server, the application and every view load for this command only.
    from werkzeug.serving import WSGIRequestHandler, run_simple

    from .. import jobs
    from ..app import create_standalone_app

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


@click.command()
@click.option("--once", is_flag=True, help="deliver what is queued, then exit")
@click.option("--interval", default=5.0, show_default=True, type=float, help="seconds between looks at the queue")
def worker(once: bool, interval: float) -> None:
    """Run the background jobs beside Apache: delivery, notifications, the spool, the bounce mailbox,
    retention, outbound webhooks ('coretrack serve' runs the same itself)."""
    # Lazy: the jobs load sending, mail and tracking, which only this command and serve need.
    from .. import jobs
    from ..tracking.tracker import Tracker

    # Delivery ends after the message in hand, never mid-message; the rest of its batch goes back
    # to pending.
    stop = stop_on_signals()
    config = load_config()
    with database(config) as engine:
        processed = jobs.run(make_session_factory(engine), config, Tracker.for_install(config, engine), stop,
                             once=once, interval=interval)
    click.echo(f"processed {processed} messages")


@click.command()
def bounces() -> None:
    """Read the bounce mailbox once (settings: Bounces): bounced recipients marked with the status
    code and class, hard bounces (and soft ones past the rule) suppressed, ARF complaints suppressed,
    each report moved to the folder coretrack-processed."""
    # Lazy: IMAP and the bounce parsing load for this command only.
    from ..delivery_reports.bounces import BounceError, read_mailbox

    config = load_config()
    try:
        with database(config) as engine:
            report = read_mailbox(make_session_factory(engine), config)
    except BounceError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(str(report))


@click.command()
def purge() -> None:
    """Delete access and click events older than the retention period (settings: Tracking), and
    empty the raw bounce and complaint reports as old; the counts on recipients stay.  The worker
    does it once a day."""
    # Lazy: the retention rules load for this command only.
    from ..tracking.retention import purge as purge_events

    config = load_config()
    with database(config) as engine, make_session_factory(engine)() as session:
        deleted = purge_events(session, config)
    if deleted is None:
        click.echo("no retention period set: every event is kept")
    else:
        click.echo(" ".join(f"{table}={count}" for table, count in deleted.items()))


@click.command()
@click.option("--once", is_flag=True, help="count what the hit log holds, then exit")
@click.option("--interval", default=0.2, show_default=True, type=float, help="seconds between looks at the log")
def ingest(once: bool, interval: float) -> None:
    """Count the image hits Apache logged, each once (run it beside Apache; systemd unit)."""
    # Lazy: the hit log reader and the tracking machinery load for this command only.
    from sqlalchemy.exc import SQLAlchemyError

    from ..tracking.hitlog import IngestError
    from ..tracking.ingester import Ingester

    stop = stop_on_signals()
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


@click.group()
def spool() -> None:
    """Tracking hits kept on disk while the database was unavailable."""


@spool.command("replay")
def spool_replay() -> None:
    """Count the spooled hits now (each exactly once)."""
    # Lazy: the tracking machinery loads for this command only.
    from ..tracking.tracker import Tracker

    config = load_config()
    with database(config) as engine:
        tracker = Tracker.for_install(config, engine)
        pending = tracker.spool.pending()
        replayed = tracker.replay_spool()
        if pending and tracker.spool.pending():
            raise click.ClickException("the database is still unavailable; the spool is kept for later")
    click.echo(f"replayed {replayed} hits")
