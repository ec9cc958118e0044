"""Apache configs for an install, filled from the templates in ``apache/``.

Nobody edits paths by hand: ``coretrack apache-config`` writes the files for
one form (Debian site, mod_wsgi-express include, .htaccess) and the public
paths come from the URL map, so a new public endpoint joins every form.
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import subprocess
import sys
from dataclasses import InitVar, dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from . import wsgi
from .app import HANDLERS, URL_MAP
from .config import HIT_LOG_FOLDER, Config
from .http import max_body
from .tracking.hitlog import LOG_FORMAT
from .tracking.image import GIF, TRACK_ACCESS_PATH

PACKAGE_DIR = Path(__file__).parent
TEMPLATES_DIR = next(
    path for path in (PACKAGE_DIR / "apache_templates", PACKAGE_DIR.parent / "apache") if path.is_dir()
)
FORMS = ("site", "express", "htaccess")
_PREFIX = re.compile(r"^(/[A-Za-z0-9._~-]+)*$")
_SERVER_NAME = re.compile(r"^[A-Za-z0-9.-]+$")
_LISTEN = re.compile(r"^(\*|[0-9.]+|\[[0-9a-fA-F:]+\]):[0-9]{1,5}$")
# Paths go into Apache directives unquoted or in double quotes: keep them plain.
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9._/+@-]*$")
# rotatelogs' rotation: a size such as 16M (a file is started each time the current one passes it).
_ROTATION = re.compile(r"^[0-9]+[BKMG]$")


class ApacheConfigError(ValueError):
    pass


def public_paths() -> dict[str, list[str]]:
    """Each public path and the methods its rules answer (a path may have a rule per method):
    Apache lets anonymous requests through for exactly those."""
    methods: dict[str, set[str]] = {}
    for rule in URL_MAP.iter_rules():
        if getattr(HANDLERS.get(rule.endpoint), "public", False):
            methods.setdefault(rule.rule, set()).update(rule.methods or ())
    return {path: sorted(methods[path]) for path in sorted(methods)}


def public_body_limits() -> dict[str, int]:
    """Each public path that takes a POST and the most its handler reads of a body (http.body_limit):
    Apache refuses a bigger one (413) before the application sees it, chunked or not."""
    limits: dict[str, int] = {}
    for rule in URL_MAP.iter_rules():
        handler = HANDLERS.get(rule.endpoint)
        if getattr(handler, "public", False) and "POST" in (rule.methods or ()):
            limits[rule.rule] = max(limits.get(rule.rule, 1), max_body(handler))  # 0 is no limit to Apache
    return {path: limits[path] for path in sorted(limits)}


def apache_modules_dir() -> str:
    try:
        out = subprocess.run(["apxs", "-q", "LIBEXECDIR"], capture_output=True, text=True, check=True).stdout.strip()
        if out:
            return out
    except (OSError, subprocess.CalledProcessError):
        pass
    return "/usr/lib/apache2/modules"


def _program(name: str) -> str:
    path = shutil.which(name) or f"/usr/bin/{name}"
    if not _SAFE_PATH.match(path):
        raise ApacheConfigError(f"{name} at {path!r}: its path may only hold letters, digits and . _ / + @ -")
    return path


# The image Apache answers itself (the application's GIF, byte for byte), in the output folder.
GIF_FILE = "tracking.gif"


@dataclass
class Install:
    """What one Apache install of coretrack looks like."""

    home: Path
    venv: Path = field(default_factory=lambda: Path(sys.prefix))
    prefix: str = ""
    server_name: str = "localhost"
    listen: str = "*:80"
    user: str = "www-data"
    group: str = "www-data"
    processes: int = 2
    threads: int = 10
    # Where the files go: output_dir, or home/apache when it is None.
    output: Path = field(init=False)
    output_dir: InitVar[Path | None] = None
    # HTTPS for the site and htaccess forms: the certificate (chain) and its private key, PEM files.
    tls_certificate: Path | None = None
    tls_key: Path | None = None
    # Site and express forms: Apache answers the image path from a file and logs each hit for
    # 'coretrack ingest' (no Python on the anonymous surface); False keeps the application's endpoint.
    hit_log: bool = True
    hit_log_rotation: str = "16M"

    def __post_init__(self, output_dir: Path | None) -> None:
        self.home = Path(self.home).resolve()
        self.venv = Path(self.venv).resolve()
        self.prefix = self.prefix.rstrip("/")
        self.output = Path(output_dir or self.home / "apache").resolve()
        if self.tls_certificate is not None and self.tls_key is not None:
            self.tls_certificate, self.tls_key = Path(self.tls_certificate).resolve(), Path(self.tls_key).resolve()
        elif self.tls_certificate is not None or self.tls_key is not None:
            raise ApacheConfigError("HTTPS needs both --tls-cert and --tls-key")
        if not _PREFIX.match(self.prefix):
            raise ApacheConfigError("--prefix is a URL path such as /crm (letters, digits, . _ ~ -)")
        if not _SERVER_NAME.match(self.server_name):
            raise ApacheConfigError("--server-name is a host name such as crm.example.com")
        if not _LISTEN.match(self.listen):
            raise ApacheConfigError("--listen is ADDRESS:PORT such as *:80 or 127.0.0.1:8080")
        if not _ROTATION.match(self.hit_log_rotation):
            raise ApacheConfigError("the hit log's rotation is a size such as 16M (B, K, M or G)")
        for name in ("home", "venv", "output", "tls_certificate", "tls_key"):
            if getattr(self, name) is not None and not _SAFE_PATH.match(str(getattr(self, name))):
                raise ApacheConfigError(f"the {name} path may only hold letters, digits and . _ / + @ -")

    @property
    def wsgi_script(self) -> Path:
        return Path(wsgi.__file__).resolve()

    def context(self) -> dict[str, object]:
        script = self.wsgi_script
        return {
            "prefix": self.prefix,
            "mount": self.prefix or "/",
            "server_name": self.server_name,
            "listen": self.listen,
            "venv": self.venv,
            "user": self.user,
            "group": self.group,
            "processes": self.processes,
            "threads": self.threads,
            "htpasswd": self.home / "htpasswd",
            "env_file": self.output / "coretrack.env",
            "wsgi_script": script,
            "wsgi_dir": script.parent,
            "wsgi_file": script.name,
            "static_dir": PACKAGE_DIR / "static",
            "www_dir": self.output / "www",
            "empty_dir": self.output / "empty",
            "modules_dir": apache_modules_dir(),
            "tls_certificate": self.tls_certificate,
            "tls_key": self.tls_key,
            "public_paths": public_paths(),
            "public_body_limits": public_body_limits(),
            "hit_log": self.hit_log,
            "track_path": TRACK_ACCESS_PATH,
            "gif_file": self.output / GIF_FILE,
            "hit_log_dir": self.home / HIT_LOG_FOLDER,
            "hit_log_format": LOG_FORMAT,
            "hit_log_rotation": self.hit_log_rotation,
            "rotatelogs": _program("rotatelogs"),
            "env_command": _program("env"),
        }


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES_DIR),
        autoescape=False,  # Apache syntax, not HTML; every value is validated above
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["pcre"] = re.escape
    return env


def env_file_text(config: Config) -> str:
    lines = [f"CORETRACK_HOME={config.home}", f"CORETRACK_PUBLIC_URL={config.public_url}"]
    # Whenever it is not the default: it may have come from a config file, not the environment.
    if config.database_url != Config.from_env({"CORETRACK_HOME": str(config.home)}).database_url:
        lines.append(f"CORETRACK_DATABASE_URL={config.database_url}")
    if config.smtp_url:
        lines.append(f"CORETRACK_SMTP_URL={config.smtp_url}")
    if config.node:
        # Every service of this front-end reads this file (the units, scripts/run): the ingester
        # counts under this name, however it is started.
        lines.append(f"CORETRACK_NODE={config.node}")
    return "\n".join(lines) + "\n"


def _folder(path: Path) -> None:
    # A folder made here is 0755 whatever the umask: Apache's workers must reach in (the htaccess
    # form's files, the private server's sockets); the configs in it are 0644 anyway.
    for missing in reversed([path, *path.parents]):
        if not missing.is_dir():
            missing.mkdir(exist_ok=True)
            os.chmod(missing, 0o755)


def _write(path: Path, text: str, mode: int = 0o644, group: str | None = None) -> None:
    _folder(path.parent)
    path.write_text(text, encoding="utf-8")
    os.chmod(path, mode)
    if group and os.geteuid() == 0:
        try:
            os.chown(path, 0, grp.getgrnam(group).gr_gid)
        except KeyError:
            pass


def write_config(form: str, install: Install, config: Config) -> list[Path]:
    """Writes the files of one form into install.output; returns them, the main one first."""
    if form not in FORMS:
        raise ApacheConfigError(f"the form is one of {', '.join(FORMS)}")
    env = _environment()
    context = install.context()
    out = install.output
    _folder(out)
    _folder(out / "empty")
    # The env file may hold a database password: readable by root and the workers' group only.
    _write(out / "coretrack.env", env_file_text(config), 0o640, install.group)
    written: list[Path] = []
    if form == "htaccess":
        # .htaccess cannot map a URL to a file before mod_wsgi: the application answers the image.
        context["hit_log"] = False
    if context["hit_log"]:
        (out / GIF_FILE).write_bytes(GIF)
        os.chmod(out / GIF_FILE, 0o644)
    if form == "site":
        main = out / "coretrack-site.conf"
        _write(main, env.get_template("coretrack-site.conf").render(context))
        written.append(main)
    elif form == "express":
        main = out / "express-include.conf"
        _write(main, env.get_template("express-include.conf").render(context))
        written.append(main)
    else:
        main = out / "coretrack-htaccess-site.conf"
        _write(main, env.get_template("coretrack-htaccess-site.conf").render(context))
        www = out / "www"
        _write(www / ".htaccess", env.get_template("htaccess").render(context))
        _write(www / "coretrack.wsgi", "from coretrack.wsgi import application  # noqa: F401\n")
        shutil.copytree(PACKAGE_DIR / "static", www / "static", dirs_exist_ok=True)
        written += [main, www / ".htaccess", www / "coretrack.wsgi"]
    units = ["coretrack-worker.service"] + (["coretrack-ingest.service"] if context["hit_log"] else [])
    for name in units:
        _write(out / name, env.get_template(name).render(context))
        written.append(out / name)
    written.append(out / "coretrack.env")
    return written


def express_command(install: Install, port: int, host: str = "127.0.0.1") -> list[str]:
    """The mod_wsgi-express command line that goes with the express include file."""
    command = [
        str(install.venv / "bin" / "mod_wsgi-express"), "start-server", str(install.wsgi_script),
        "--host", host, "--port", str(port),
        "--user", install.user, "--group", install.group,
        "--processes", str(install.processes), "--threads", str(install.threads),
        "--include-file", str(install.output / "express-include.conf"),
        "--setenv", "CORETRACK_CONFIG", str(install.output / "coretrack.env"),
        "--url-alias", f"{install.prefix}/static", str(PACKAGE_DIR / "static"),
        "--server-root", str(install.output / "express"),
    ]
    if install.prefix:
        command += ["--mount-point", install.prefix]
    return command


def wsgi_load_module(venv: Path) -> str:
    """The LoadModule line for the venv's mod_wsgi (built for the venv's Python)."""
    out = subprocess.run(
        [str(venv / "bin" / "mod_wsgi-express"), "module-config"], capture_output=True, text=True, check=True
    ).stdout
    return "\n".join(line for line in out.splitlines() if line.startswith("LoadModule"))


def write_private_server(form: str, install: Install, config: Config) -> Path:
    """A whole httpd.conf for a private instance around the site or htaccess form; returns its path."""
    if form not in ("site", "htaccess"):
        raise ApacheConfigError("a private server wraps the site or the htaccess form")
    site_conf = write_config(form, install, config)[0]
    out = install.output
    run_dir, log_dir = out / "run", out / "log"
    for directory in (run_dir, log_dir):
        _folder(directory)
    context = {
        **install.context(),
        "form": form,
        "server_root": out,
        "run_dir": run_dir,
        "log_dir": log_dir,
        "site_conf": site_conf,
        "wsgi_load": wsgi_load_module(install.venv),
    }
    path = out / "httpd.conf"
    _write(path, _environment().get_template("private-httpd.conf").render(context))
    return path
