"""A private MariaDB server for the coreBOS import tests (Debian's mariadb-server, which scripts/test
installs), on a free loopback port with its own data directory, and a read-only user for the import."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pymysql

from support.ports import free_port

READER_PASSWORD = "s3cret-reader-pw"
# None when mariadb-server is not installed: the tests that need it are skipped.
SERVER = shutil.which("mariadbd", path="/usr/sbin:/usr/bin")
INSTALL = shutil.which("mariadb-install-db")


@dataclass
class MariaDB:
    socket: str
    port: int

    def admin(self, database: str | None = None) -> pymysql.Connection:
        return pymysql.connect(unix_socket=self.socket, user="root", database=database, autocommit=True)

    def url(self, database: str, password: str = READER_PASSWORD) -> str:
        return f"mysql+pymysql://reader:{password}@127.0.0.1:{self.port}/{database}"


@contextmanager
def running_mariadb(root: Path) -> Iterator[MariaDB]:
    """A server with its data directory in ``root`` and the user 'reader'; stopped and ``root``
    removed afterwards."""
    assert SERVER and INSTALL, "no mariadb-server"
    # The server refuses to run as root unless told to: as whoever runs the tests, in their temp dir.
    user = ["--user=root"] if os.geteuid() == 0 else []
    subprocess.run([INSTALL, "--no-defaults", f"--datadir={root / 'data'}", "--auth-root-authentication-method=socket",
                    "--skip-test-db", *user], check=True, capture_output=True, timeout=120)
    database = MariaDB(str(root / "mysqld.sock"), free_port())
    log = open(root / "server.log", "wb")  # noqa: SIM115  (closed after the server stops)
    process = subprocess.Popen([SERVER, "--no-defaults", f"--datadir={root / 'data'}", f"--socket={database.socket}",
                                f"--port={database.port}", "--bind-address=127.0.0.1", "--skip-name-resolve",
                                f"--pid-file={root / 'mysqld.pid'}", "--innodb-flush-log-at-trx-commit=0", *user],
                               stdout=log, stderr=log)
    try:
        for _ in range(300):
            try:
                database.admin().close()
                break
            except pymysql.err.OperationalError:
                if process.poll() is not None:
                    raise RuntimeError((root / "server.log").read_text()) from None
                time.sleep(0.1)
        with database.admin() as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE USER 'reader'@'127.0.0.1' IDENTIFIED BY '{READER_PASSWORD}'")
            cursor.execute("GRANT SELECT, INSERT ON *.* TO 'reader'@'127.0.0.1'")  # INSERT: read-only is ours
        yield database
    finally:
        process.terminate()
        process.wait(60)
        log.close()
        shutil.rmtree(root, ignore_errors=True)
