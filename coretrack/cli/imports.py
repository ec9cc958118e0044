"""``coretrack import``: data brought over from another system (coreBOS, a CSV file of records).

The importers load in the command that uses them, when it runs: the other commands start without them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO

import click

from ..db import make_session_factory
from ..validation import ValidationError
from .common import database, load_config


@click.group("import")
def import_() -> None:
    """Bring data over from another system."""


@import_.command("corebos")
@click.option("--from", "source", required=True, metavar="URL",
              help="the coreBOS database: mysql+pymysql://user:password@host/database (only read)")
@click.option("--time-zone", "time_zone", metavar="ZONE",
              help="the zone coreBOS ran in: $default_timezone in its config.inc.php (e.g. Europe/Madrid); "
                   "its times are read in it and kept as UTC")
@click.option("--dry-run", is_flag=True, help="say what would be imported; write nothing")
def import_corebos(source: str, time_zone: str | None, dry_run: bool) -> None:
    """Import coreBOS's users (as disabled owners), contacts, accounts, leads, emails (saved-only ones as
    drafts) and opens; a second run adds only what is new."""
    # Lazy: the coreBOS importer (and its MySQL driver) loads for this command only.
    from .. import corebos

    @contextmanager
    def progress(stage: str, total: int) -> Iterator[Callable[[int], None]]:
        # A bar on a terminal, one line per stage otherwise (logs, cron).
        if sys.stderr.isatty():
            with click.progressbar(length=total, label=f"{stage:<10}", file=sys.stderr) as bar:
                yield bar.update
        else:
            yield lambda _rows: None
            click.echo(f"{stage}: {total} read", err=True)

    try:
        clock = corebos.clock_for(time_zone)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    config = load_config()
    try:
        engine, schema = corebos.connect(source)
    except corebos.CoreBOSError as exc:
        raise click.ClickException(str(exc)) from None
    try:
        with database(config) as target, make_session_factory(target)() as session:
            report = corebos.Importer(engine, schema, session, config.secret_key(), clock, progress).run(
                dry_run=dry_run)
    except corebos.CoreBOSError as exc:
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
    # Lazy: the CSV importer and the records' fields load for this command only.
    from ..records import csv_import

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
    if result.consents:
        click.echo(f"tracking consents recorded: {result.consents}")
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
