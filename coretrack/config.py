"""Install configuration: the data directory, the database, the secret key.

Everything comes from environment variables, optionally from a config file
named by ``CORETRACK_CONFIG`` (lines of ``NAME=value``, the same names as the
environment; the environment wins).  Reading configuration creates nothing:
``Config.prepare_home`` does, and only the CLI and ``scripts/`` call it.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says which and why."""


# The data directory belongs to the service user (www-data under Apache).  Its group may read
# what Apache's workers read (the directory, htpasswd); other local users get nothing.  Every
# coretrack process sets UMASK, so that files made later (database journals, spool files,
# attachments) are private too.
UMASK = 0o027
DIRECTORY_MODE = 0o750
FILE_MODE = 0o640
SECRET_MODE = 0o600
# The data directory's folder for Apache's hit log.
HIT_LOG_FOLDER = "hitlog"


def _narrow(fd: int, widest: int | None) -> None:
    if widest is None:
        return
    mode = stat.S_IMODE(os.fstat(fd).st_mode)
    if mode & ~widest:
        try:
            os.fchmod(fd, mode & widest)
        except PermissionError:
            pass


def _create_once(path: Path, mode: int, content: str) -> None:
    # O_EXCL: two processes starting together must not both write one (a key, an id), and a link
    # in the path's place is never followed.
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(content)


SMTP_SCHEMES = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "tls"}


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: str = "none"  # none | starttls | tls
    username: str = ""
    password: str = ""

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        parts = urlsplit(url)
        if parts.scheme not in SMTP_SCHEMES:
            raise ConfigError(
                f"CORETRACK_SMTP_URL: scheme must be one of {', '.join(SMTP_SCHEMES)}, not {parts.scheme!r}"
            )
        if not parts.hostname:
            raise ConfigError("CORETRACK_SMTP_URL: a host is required, e.g. smtp://127.0.0.1:25")
        security = SMTP_SCHEMES[parts.scheme]
        try:
            port = parts.port or (465 if security == "tls" else 587 if security == "starttls" else 25)
        except ValueError as exc:
            raise ConfigError(f"CORETRACK_SMTP_URL: {exc}") from None
        return cls(
            host=parts.hostname,
            port=port,
            security=security,
            username=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
        )


def _megabytes(env: dict[str, str], name: str) -> int:
    try:
        value = int(env.get(name) or 100)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number of megabytes") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1")
    return value


def _read_config_file(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path}:{number}: expected NAME=value")
        values[name.strip()] = value.strip().strip('"').strip("'")
    return values


@dataclass(frozen=True)
class Config:
    home: Path
    database_url: str
    public_url: str
    smtp_url: str | None = None
    admin_password: str | None = None
    max_upload_bytes: int = 25 * 1024 * 1024
    # Recipients sent within the request; larger sends go to the worker.
    inline_send_limit: int = 10
    # Tracking hits kept on disk while the database is unavailable: about 2,000 hits a MB.
    spool_max_bytes: int = 100 * 2**20
    # Apache's hit log not yet counted, past which 'coretrack doctor' fails (the ingester is behind or stopped).
    hit_log_max_bytes: int = 100 * 2**20
    # This front-end's name for its place in its hit log, when CORETRACK_NODE gives one; else the
    # name its ingester counted under before, or the host name (tracking/ingester.py:claim_node decides).
    node: str | None = None
    # The DNS server the mail DNS check asks (sending/dns_check.py), as HOST or HOST:PORT
    # (CORETRACK_DNS_SERVER; [::1]:53 for IPv6); None: the system's resolvers.
    dns_server: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Config:
        env = dict(os.environ if environ is None else environ)
        if env.get("CORETRACK_CONFIG"):
            env = {**_read_config_file(env["CORETRACK_CONFIG"]), **env}
        home = Path(env.get("CORETRACK_HOME") or "./var").resolve()
        port = env.get("PORT") or "8080"
        database_url = env.get("CORETRACK_DATABASE_URL") or f"sqlite:///{home / 'coretrack.db'}"
        public_url = (env.get("CORETRACK_PUBLIC_URL") or f"http://127.0.0.1:{port}").rstrip("/")
        if urlsplit(public_url).scheme not in ("http", "https"):
            raise ConfigError(f"CORETRACK_PUBLIC_URL must start with http:// or https://, not {public_url!r}")
        smtp_url = env.get("CORETRACK_SMTP_URL") or None
        if smtp_url:
            SmtpServer.from_url(smtp_url)  # validate early, with a clear message
        node = env.get("CORETRACK_NODE") or None
        if node and len(node) > 255:
            raise ConfigError("CORETRACK_NODE must be at most 255 characters")
        return cls(
            home=home,
            spool_max_bytes=_megabytes(env, "CORETRACK_SPOOL_MAX_MB") * 2**20,
            hit_log_max_bytes=_megabytes(env, "CORETRACK_HIT_LOG_MAX_MB") * 2**20,
            node=node,
            database_url=database_url,
            public_url=public_url,
            smtp_url=smtp_url,
            admin_password=env.get("CORETRACK_ADMIN_PASSWORD") or None,
            dns_server=env.get("CORETRACK_DNS_SERVER") or None,
        )

    @property
    def htpasswd_path(self) -> Path:
        return self.home / "htpasswd"

    @property
    def secret_key_path(self) -> Path:
        return self.home / "secret.key"

    @property
    def front_end_id_path(self) -> Path:
        return self.home / "front-end.id"

    def front_end_id(self) -> str:
        """This data directory's own random id, made the first time it is asked for: what a hit-log
        position is owned by, so that two front-ends can never count under one place.  A copy of the
        whole data directory would copy it too: a second front-end gets secret.key and htpasswd only."""
        _create_once(self.front_end_id_path, FILE_MODE, secrets.token_hex(16) + "\n")
        return self.front_end_id_path.read_text().strip()

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def hit_log_dir(self) -> Path:
        """Apache's log of image hits (written through rotatelogs as root; read by 'coretrack ingest')."""
        return self.home / HIT_LOG_FOLDER

    @property
    def attachments_dir(self) -> Path:
        return self.home / "attachments"

    @property
    def sqlite_path(self) -> Path | None:
        """The SQLite database file, when the database is one."""
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and len(self.database_url) > len(prefix):
            return Path(self.database_url[len(prefix):].split("?", 1)[0])
        return None

    def private_paths(self) -> Iterator[tuple[Path, int]]:
        """Every path coretrack keeps (those that exist), with the widest mode it may have."""
        candidates = [(self.home, DIRECTORY_MODE), (self.secret_key_path, SECRET_MODE),
                      (self.htpasswd_path, FILE_MODE), (self.home / "htpasswd.lock", FILE_MODE),
                      (self.front_end_id_path, FILE_MODE)]
        if self.sqlite_path:
            candidates += [(self.sqlite_path.with_name(self.sqlite_path.name + suffix), FILE_MODE)
                           for suffix in ("", "-wal", "-shm", "-journal")]
        # The hit log's folder, not its files: those are root's, written by Apache's rotatelogs.
        candidates.append((self.hit_log_dir, DIRECTORY_MODE | stat.S_ISGID))
        for directory in (self.spool_dir, self.attachments_dir):
            candidates.append((directory, DIRECTORY_MODE))
            if directory.is_dir():
                candidates += [(path, DIRECTORY_MODE if path.is_dir() else FILE_MODE)
                               for path in sorted(directory.rglob("*"))]
        for path, widest in candidates:
            if path.exists() and not path.is_symlink():
                yield path, widest

    def make_private(self) -> None:
        """Takes from every path coretrack keeps in the data directory what its mode allows beyond
        the widest (an older install's 0755 and 0644); what this user may not change is left for
        'coretrack doctor' to report."""
        widest = dict(self.private_paths())
        # Through descriptors opened folder by folder without following symbolic links: root,
        # running this, must not be led out of the data directory by a link the service user made.
        for folder, folders, files, folder_fd in os.fwalk(self.home):
            if Path(folder) == self.home:
                folders[:] = [name for name in folders
                              if self.home / name in (self.spool_dir, self.attachments_dir, self.hit_log_dir)]
            _narrow(folder_fd, widest.get(Path(folder)))
            for name in files:
                if Path(folder, name) in widest:
                    try:
                        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=folder_fd)
                    except OSError:
                        continue  # a link, gone meanwhile, or not readable by this user
                    try:
                        _narrow(fd, widest[Path(folder, name)])
                    finally:
                        os.close(fd)

    def prepare_home(self) -> None:
        """Create the data directory, its folders, the secret key and htpasswd if missing."""
        for directory in (self.home, self.spool_dir, self.attachments_dir):
            directory.mkdir(mode=DIRECTORY_MODE, parents=True, exist_ok=True)
        _create_once(self.secret_key_path, SECRET_MODE, secrets.token_hex(32) + "\n")
        _create_once(self.htpasswd_path, FILE_MODE, "")
        self.front_end_id()
        # rotatelogs runs as root (Apache's piped loggers do): set-group-id, the folder gives its
        # files its group, which the ingester reads them through.
        self.hit_log_dir.mkdir(mode=DIRECTORY_MODE, exist_ok=True)
        try:
            fd = os.open(self.hit_log_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError:
            return  # a link: never followed ('coretrack doctor' reports the folder)
        try:
            mode = stat.S_IMODE(os.fstat(fd).st_mode)
            if not mode & stat.S_ISGID:
                os.fchmod(fd, (mode & DIRECTORY_MODE) | stat.S_ISGID)
        except PermissionError:
            pass  # not this user's: 'coretrack doctor' names the fix
        finally:
            os.close(fd)

    def secret_key(self) -> bytes:
        try:
            text = self.secret_key_path.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"no secret key at {self.secret_key_path}: run 'coretrack db upgrade' (or scripts/run) first"
            ) from None
        return bytes.fromhex(text)
