"""``coretrack doctor``: checks an install and says what to fix, in plain words."""

from __future__ import annotations

import dataclasses
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from .apache import write_private_server
from .config import Config
from .db import make_engine, make_session_factory
from .http import APP_REFUSAL_HEADER
from .schema import alembic_config
from .sending import dns_check
from .settings import SettingsService
from .tracking.image import GIF, TRACK_ACCESS_PATH
from .tracking.ingester import backlog
from .tracking.spool import Spool

if TYPE_CHECKING:
    from .apache import Install

# Paths a stranger must be refused on, and must be refused by Apache itself.
PROTECTED_PATHS = ("/", "/emails", "/api/emails", "/settings", "/users", "/contacts", "/static/coretrack.css",
                   TRACK_ACCESS_PATH + "/x")


@dataclass
class Check:
    ok: bool
    what: str
    fix: str = ""

    def line(self) -> str:
        return f"ok    {self.what}" if self.ok else f"FAIL  {self.what}\n      fix: {self.fix}"


def _as_worker(user: str, test: str, path: Path) -> bool:
    """Whether the Apache workers' user passes ``test -r/-w`` on path (only checkable as root)."""
    if os.geteuid() != 0:
        return os.access(path, os.R_OK if test == "-r" else os.W_OK)
    return subprocess.run(["runuser", "-u", user, "--", "test", test, str(path)]).returncode == 0


def check_files(config: Config, user: str) -> Iterator[Check]:
    home = config.home
    yield Check(home.is_dir(), f"data directory {home} exists",
                "run 'coretrack db upgrade' (or scripts/run) to create it")
    if not home.is_dir():
        return
    yield Check(_as_worker(user, "-w", home), f"data directory is writable by {user}",
                f"chown -R {user}: {home}")
    yield Check(_as_worker(user, "-r", config.htpasswd_path), f"{config.htpasswd_path} is readable by {user}",
                f"chgrp {user} {config.htpasswd_path} && chmod 640 {config.htpasswd_path}")
    key = config.secret_key_path
    yield Check(key.exists(), f"secret key {key} exists", "run 'coretrack db upgrade'")
    if key.exists():
        yield Check(_as_worker(user, "-r", key), f"secret key is readable by {user}", f"chown {user} {key}")
    kept = []
    for path, widest in config.private_paths():
        try:
            kept.append((path, widest, path.lstat()))
        except FileNotFoundError:
            pass  # a spool file replayed meanwhile
    too_open = [(path, widest) for path, widest, status in kept if stat.S_IMODE(status.st_mode) & ~widest]
    yield Check(not too_open, f"only {user} (and its group, reading) can reach the data: folders at most 750, "
                "files 640, the secret key 600",
                _some(f"chmod {widest:o} {path}" for path, widest in too_open)
                + "; or 'coretrack db upgrade' (as root), which makes them all private")
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        yield Check(False, f"user {user} exists", "name the user Apache's workers run as (--user)")
        return
    strangers = [str(path) for path, _, status in kept if status.st_uid != uid]
    yield Check(not strangers, f"everything in the data directory belongs to {user}",
                f"chown -R {user}: {home}  (not {user}'s: {_some(strangers, ', ')})")


def _some(items: Iterable[str], separator: str = " && ", shown: int = 5) -> str:
    listed = list(items)
    more = f" (and {len(listed) - shown} more)" if len(listed) > shown else ""
    return separator.join(listed[:shown]) + more


def check_database(config: Config) -> Iterator[Check]:
    try:
        engine = make_engine(config.database_url)
        with engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
        engine.dispose()
    except Exception as exc:  # any driver error: report it, do not crash the doctor
        yield Check(False, "database is reachable", f"check CORETRACK_DATABASE_URL ({type(exc).__name__}: {exc})")
        return
    head = ScriptDirectory.from_config(alembic_config(config.database_url)).get_current_head()
    yield Check(current == head, f"database schema is up to date ({current or 'empty'})",
                "run 'coretrack db upgrade'")


def check_spool(config: Config) -> Iterator[Check]:
    state = Spool(config.spool_dir, config.spool_max_bytes).state()
    yield Check(state.size == 0, "no tracking hits wait in the spool",
                f"{state.hits} hit(s) ({state.size // 1024} kB of {config.spool_max_bytes // 2**20} MB) wait in "
                f"{config.spool_dir}: they are counted within seconds once the database takes writes again "
                "(check the database and that 'coretrack worker' runs; 'coretrack spool replay' counts them now)")


def check_hit_log(config: Config, user: str = "www-data") -> Iterator[Check]:
    folder = config.hit_log_dir
    if folder.is_dir():
        # rotatelogs writes as root: the files are readable by the ingester through the folder's group.
        yield Check(bool(folder.stat().st_mode & stat.S_ISGID) and _as_worker(user, "-w", folder),
                    f"{folder} is {user}'s and set-group-id (the ingester reads Apache's root-owned hit log files)",
                    f"chown {user}: {folder} && chmod 2750 {folder}")
    waiting = backlog(config)
    yield Check(waiting.bytes <= config.hit_log_max_bytes,
                f"the hit log's backlog is within {config.hit_log_max_bytes // 2**20} MB "
                f"({waiting.files} file(s), {waiting.bytes // 1024} kB not yet counted)",
                f"{config.hit_log_dir} holds hits not yet counted: check that 'coretrack ingest' runs "
                "(systemctl status coretrack-ingest) and that the database takes writes; it counts them then "
                "(CORETRACK_HIT_LOG_MAX_MB sets this bound)")


def check_apache_syntax(config: Config, install: Install) -> Iterator[Check]:
    if shutil.which("apache2") is None:
        yield Check(False, "Apache is installed", "apt-get install apache2 apache2-dev apache2-utils")
        return
    with tempfile.TemporaryDirectory() as scratch:
        conf = write_private_server("site", dataclasses.replace(install, output_dir=Path(scratch)), config)
        result = subprocess.run(["apache2", "-t", "-f", str(conf)], capture_output=True, text=True)
    message = (result.stderr or result.stdout).strip().splitlines()
    yield Check(result.returncode == 0, "generated Apache config passes 'apache2 -t'",
                message[-1] if message else "see apache2 -t output")


def _get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="GET"), timeout=10) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def check_public_surface(public_url: str) -> Iterator[Check]:
    endpoint = public_url + TRACK_ACCESS_PATH
    try:
        status, headers, body = _get(endpoint)
    except OSError as exc:
        yield Check(False, f"public URL {public_url} is reachable",
                    f"cannot connect ({exc}); is Apache running, and is the public URL right?")
        return
    yield Check(status == 200 and body == GIF, "the image endpoint answers the GIF to anonymous requests",
                f"got HTTP {status}: add the exact exception for {TRACK_ACCESS_PATH} "
                "(regenerate with 'coretrack apache-config')")
    for path in PROTECTED_PATHS:
        status, headers, _ = _get(public_url + path)
        refused_by_app = APP_REFUSAL_HEADER in headers
        yield Check(status == 401 and not refused_by_app, f"{path} needs a password (Apache answers 401)",
                    "the application refused it by itself: Apache's Basic auth is missing; use the shipped config"
                    if refused_by_app else f"got HTTP {status}: put Basic auth over the whole site")


def configured_public_url(config: Config) -> str:
    """The public URL mail carries: the editor's setting, else the environment's."""
    try:
        engine = make_engine(config.database_url)
    except Exception:
        return config.public_url
    try:
        with make_session_factory(engine)() as session:
            return SettingsService(session, config).get("public_url")
    except Exception:
        return config.public_url
    finally:
        engine.dispose()


def check_mail_dns(config: Config) -> Iterator[Check]:
    """SPF, DKIM and DMARC of the mail this install sends (sending/dns_check.py), each problem with its fix."""
    try:
        engine = make_engine(config.database_url)
        with make_session_factory(engine)() as session:
            setup = dns_check.MailSetup.of(SettingsService(session, config))
        engine.dispose()
    except Exception as exc:  # any driver error: check_database says what it is
        yield Check(False, "the mail settings can be read", f"see the database check ({type(exc).__name__})")
        return
    if setup.local and not setup.signing:
        # A fresh install: nothing to look up until the From address is set in the configuration editor.
        yield Check(True, f"mail authentication not checked: the From address's domain {setup.from_domain} "
                          "is not a public one yet")
        return
    for finding in dns_check.check(config, setup):
        yield Check(finding.ok, f"{finding.rule.upper()}: {finding.what}", finding.fix)


def run(config: Config, install: Install, public_url: str | None = None) -> list[Check]:
    checks = [*check_files(config, install.user), *check_database(config), *check_spool(config),
              *check_hit_log(config, install.user), *check_apache_syntax(config, install), *check_mail_dns(config)]
    checks += check_public_surface((public_url or configured_public_url(config)).rstrip("/"))
    return checks
