"""Identity: the htpasswd file shared with Apache, users and roles, standalone Basic auth.

Apache checks passwords against the htpasswd file and passes ``REMOTE_USER``;
roles and the active flag live in the database.  The file and the ``users``
table are only changed together, through ``UserService``.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import os
import re
import secrets
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import bcrypt
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .models import ROLES, User

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

USER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD_LENGTH = 8
# bcrypt reads only 72 bytes (bcrypt 5 refuses more; Apache silently ignores the rest).
MAX_PASSWORD_BYTES = 72
# Cost 10: ~60 ms per check here; Apache checks on every request, the standalone
# middleware caches successful checks.
BCRYPT_ROUNDS = 10


class UserError(ValueError):
    """A user operation that cannot be done; the message says why, ``field`` which form field it is about."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


class Htpasswd:
    """The ``name:hash`` file Apache's mod_authn_file reads (bcrypt, ``$2y$``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._cache_key: tuple[int, int, int] | None = None
        self._entries: dict[str, str] = {}

    def entries(self) -> dict[str, str]:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        # The inode changes on every rewrite (rename), even within one mtime tick and at equal size.
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if key != self._cache_key:
            entries = {}
            for line in self.path.read_text(encoding="utf-8").splitlines():
                name, sep, hashed = line.strip().partition(":")
                if sep and name:
                    entries[name] = hashed
            self._entries, self._cache_key = entries, key
        return self._entries

    @staticmethod
    def hash_password(password: str) -> str:
        hashed = bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(BCRYPT_ROUNDS)).decode("ascii")
        # Same algorithm; $2y$ is the prefix Apache's htpasswd -B writes and APR reads.
        return "$2y$" + hashed[4:]

    @staticmethod
    def check_hash(password: str, hashed: str) -> bool:
        if not hashed.startswith(("$2y$", "$2b$", "$2a$")):
            return False  # only bcrypt entries are accepted
        try:
            return bcrypt.checkpw(password.encode("utf-8"), ("$2b$" + hashed[4:]).encode("ascii"))
        except ValueError:
            return False

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, entries: dict[str, str]) -> None:
        # Write a new file and rename it over the old one: Apache never reads half a file.
        # The new file keeps the old one's mode, and its owner and group (Apache's group must read it).
        try:
            stat = self.path.stat()
            mode, owner = stat.st_mode & 0o777, (stat.st_uid, stat.st_gid)
        except FileNotFoundError:
            mode, owner = 0o640, None
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".htpasswd.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.writelines(f"{name}:{hashed}\n" for name, hashed in sorted(entries.items()))
                handle.flush()
                os.fsync(handle.fileno())
            os.chmod(tmp, mode)
            created = os.stat(tmp)
            if owner is not None and (created.st_uid, created.st_gid) != owner:
                try:
                    # root may set both; a member of the group may set the group.
                    os.chown(tmp, owner[0] if os.geteuid() == 0 else -1, owner[1])
                except PermissionError:
                    pass
            os.replace(tmp, self.path)
        except BaseException:
            os.unlink(tmp)
            raise
        self._cache_key = None

    def set_password(self, name: str, password: str) -> None:
        hashed = self.hash_password(password)
        with self._locked():
            entries = dict(self.entries())
            entries[name] = hashed
            self._write(entries)

    def remove(self, name: str) -> None:
        with self._locked():
            entries = dict(self.entries())
            if entries.pop(name, None) is not None:
                self._write(entries)


def validate_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters", "password")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise UserError(f"the password must be at most {MAX_PASSWORD_BYTES} bytes long", "password")
    if any(char in password for char in "\r\n\x00"):
        raise UserError("the password must be one line", "password")


class UserService:
    def __init__(self, session: Session, htpasswd: Htpasswd):
        self.session = session
        self.htpasswd = htpasswd

    def get(self, name: str) -> User | None:
        return self.session.scalar(select(User).where(User.name == name))

    def list(self) -> list[User]:
        return list(self.session.scalars(select(User).order_by(User.name)))

    def new_user_errors(self, name: str, password: str, role: str) -> dict[str, str]:
        """Every reason ``add`` would refuse these values, by field (name, password, role)."""
        errors = {}
        # fullmatch: "$" would accept a trailing newline, i.e. a second line in the htpasswd file.
        if not USER_NAME.fullmatch(name or ""):
            errors["name"] = "a user name is 1-64 letters, digits or . _ @ -, starting with a letter or digit"
        elif self.get(name) is not None:
            errors["name"] = f"user {name!r} already exists"
        if role not in ROLES:
            errors["role"] = f"the role must be one of {', '.join(ROLES)}"
        try:
            validate_password(password)
        except UserError as exc:
            errors["password"] = str(exc)
        return errors

    def add(self, name: str, password: str, role: str = "staff") -> User:
        errors = self.new_user_errors(name, password, role)
        if errors:
            field, message = next(iter(errors.items()))
            raise UserError(message, field)
        user = User(name=name, role=role, active=True)
        self.session.add(user)
        try:
            self.session.flush()  # a duplicate added meanwhile fails here, before the file changes
            self.htpasswd.set_password(name, password)
            self.session.commit()
        except IntegrityError:
            self.session.rollback()
            raise UserError(f"user {name!r} already exists", "name") from None
        except BaseException:
            self.session.rollback()
            raise
        return user

    def _existing(self, name: str) -> User:
        user = self.get(name)
        if user is None:
            raise UserError(f"no user {name!r}", "name")
        return user

    def set_active(self, name: str, active: bool, by: str | None = None) -> User:
        """Enable or disable ``name``; ``by`` is the admin asking, who cannot disable themself.

        Disabled users keep their htpasswd entry, so they get a clear 403 rather than a password loop.
        """
        user = self._existing(name)
        if not active and by == name:
            raise UserError("you cannot disable your own account")
        if not active and self._is_last_active_admin(user):
            raise UserError("the last active admin cannot be disabled")
        user.active = active
        self.session.commit()
        return user

    def set_role(self, name: str, role: str, by: str | None = None) -> User:
        """Change the role; ``by`` (the admin asking) cannot take away their own admin role."""
        user = self._existing(name)
        if role not in ROLES:
            raise UserError(f"the role must be one of {', '.join(ROLES)}", "role")
        if role != "admin" and user.is_admin:
            if by == name:
                raise UserError("you cannot take away your own admin role; ask another admin", "role")
            if self._is_last_active_admin(user):
                raise UserError("the last active admin cannot lose the admin role", "role")
        user.role = role
        self.session.commit()
        return user

    def set_password(self, name: str, password: str) -> None:
        self._existing(name)
        validate_password(password)
        self.htpasswd.set_password(name, password)

    def _is_last_active_admin(self, user: User) -> bool:
        if not (user.is_admin and user.active):
            return False
        other = select(User.id).where(User.role == "admin", User.active.is_(True), User.id != user.id)
        return self.session.scalar(other.limit(1)) is None

    def ensure_admin(self, password: str | None) -> str | None:
        """Create user ``admin`` when no admin exists; returns a generated password to print once."""
        if self.session.scalar(select(User.id).where(User.role == "admin")) is not None:
            return None
        generated = None
        if not password:
            password = generated = secrets.token_urlsafe(12)
        self.add("admin", password, role="admin")
        return generated


class BasicAuthMiddleware:
    """Standalone mode's stand-in for Apache: checks Basic credentials, sets REMOTE_USER.

    It never answers by itself: the application decides 401 or 403, exactly as
    it does under Apache.  Public paths are passed through unchecked.
    """

    def __init__(self, app: WSGIApplication, htpasswd: Htpasswd, is_public: Callable[[str], bool]):
        self.app = app
        self.htpasswd = htpasswd
        self.is_public = is_public
        self._verified: OrderedDict[bytes, None] = OrderedDict()

    def _check(self, name: str, password: str) -> bool:
        hashed = self.htpasswd.entries().get(name)
        if hashed is None:
            return False
        key = hashlib.sha256(f"{name}\0{password}\0{hashed}".encode()).digest()
        if key in self._verified:
            self._verified.move_to_end(key)
            return True
        if not Htpasswd.check_hash(password, hashed):
            return False
        self._verified[key] = None
        if len(self._verified) > 1024:
            self._verified.popitem(last=False)
        return True

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        environ.pop("REMOTE_USER", None)
        if not self.is_public(environ.get("PATH_INFO", "")):
            credentials = parse_basic(environ.get("HTTP_AUTHORIZATION", ""))
            if credentials and self._check(*credentials):
                environ["REMOTE_USER"] = credentials[0]
        return self.app(environ, start_response)


def parse_basic(header: str) -> tuple[str, str] | None:
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, password = decoded.partition(":")
    return (name, password) if sep else None
