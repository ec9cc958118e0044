"""Install configuration: the data directory, the database, the secret key.

Everything comes from environment variables, optionally from a config file
named by ``CORETRACK_CONFIG`` (lines of ``NAME=value``, the same names as the
environment; the environment wins).  Reading configuration creates nothing:
``Config.prepare_home`` does, and only the CLI and ``scripts/`` call it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit


class ConfigError(ValueError):
    """A configuration value that cannot be used; the message says which and why."""


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
        try:
            spool_max_mb = int(env.get("CORETRACK_SPOOL_MAX_MB") or 100)
        except ValueError:
            raise ConfigError("CORETRACK_SPOOL_MAX_MB must be a whole number of megabytes") from None
        if spool_max_mb < 1:
            raise ConfigError("CORETRACK_SPOOL_MAX_MB must be at least 1")
        return cls(
            home=home,
            spool_max_bytes=spool_max_mb * 2**20,
            database_url=database_url,
            public_url=public_url,
            smtp_url=smtp_url,
            admin_password=env.get("CORETRACK_ADMIN_PASSWORD") or None,
        )

    @property
    def htpasswd_path(self) -> Path:
        return self.home / "htpasswd"

    @property
    def secret_key_path(self) -> Path:
        return self.home / "secret.key"

    @property
    def spool_dir(self) -> Path:
        return self.home / "spool"

    @property
    def attachments_dir(self) -> Path:
        return self.home / "attachments"

    def prepare_home(self) -> None:
        """Create the data directory, its folders and the secret key if missing."""
        for directory in (self.home, self.spool_dir, self.attachments_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if not self.secret_key_path.exists():
            # O_EXCL: two processes starting together must not both write a key.
            try:
                fd = os.open(self.secret_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                return
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
        if not self.htpasswd_path.exists():
            self.htpasswd_path.touch(mode=0o640)

    def secret_key(self) -> bytes:
        try:
            text = self.secret_key_path.read_text().strip()
        except FileNotFoundError:
            raise ConfigError(
                f"no secret key at {self.secret_key_path}: run 'coretrack db upgrade' (or scripts/run) first"
            ) from None
        return bytes.fromhex(text)
