"""A real Dovecot IMAP server for the tests (Debian's dovecot-imapd, which scripts/test installs),
started as a process of the test's own on loopback ports, with its own users and mail folder."""

from __future__ import annotations

import imaplib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from support.ports import free_port
from support.processes import stop_group

CONFIG = """\
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
disable_plaintext_auth = no
auth_mechanisms = plain login
{ssl}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={root}/home/%u
}}
mail_location = maildir:~/Maildir
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0666
  }}
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""


class Dovecot:
    """``port`` answers plain IMAP and STARTTLS, ``tls_port`` implicit TLS (with ``certificate``:
    (cert, key) paths; without, no TLS at all)."""

    def __init__(self, certificate: tuple[Path, Path] | None = None):
        self.certificate = certificate
        self.root = Path(tempfile.mkdtemp(prefix="coretrack-dovecot."))
        self.port, self.tls_port = free_port(), free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Dovecot:
        binary = shutil.which("dovecot") or "/usr/sbin/dovecot"
        if not os.path.exists(binary):
            raise RuntimeError("Dovecot is missing: scripts/test installs it (apt-get install dovecot-imapd)")
        # Dovecot's mail processes run as nobody: they must reach the mail folder.
        self.root.chmod(0o755)
        for folder in ("run", "state", "home"):
            (self.root / folder).mkdir()
        shutil.chown(self.root / "home", "nobody", "nogroup")
        (self.root / "passwd").write_text("")
        ssl = "ssl = no"
        if self.certificate:
            ssl = f"ssl = yes\nssl_cert = <{self.certificate[0]}\nssl_key = <{self.certificate[1]}"
        (self.root / "dovecot.conf").write_text(CONFIG.format(root=self.root, port=self.port, tls_port=self.tls_port,
                                                              ssl=ssl))
        self.process = subprocess.Popen([binary, "-F", "-c", str(self.root / "dovecot.conf")],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        output = self.process.stdout.read().decode() if self.process.poll() is not None and self.process.stdout else ""
        self.stop()
        raise RuntimeError(f"Dovecot did not start: {output}")

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, patience=10)
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def add_user(self, name: str, password: str) -> None:
        with (self.root / "passwd").open("a") as passwd:
            passwd.write(f"{name}:{{PLAIN}}{password}::::\n")

    def _login(self, user: str, password: str) -> imaplib.IMAP4:
        connection = imaplib.IMAP4("127.0.0.1", self.port, timeout=10)
        connection.login(user, password)
        return connection

    def append(self, user: str, password: str, raw: bytes, folder: str = "INBOX") -> None:
        """Delivers a message into the user's folder, as the mail server would."""
        connection = self._login(user, password)
        try:
            connection.create(folder)
            status, reply = connection.append(folder, None, None, raw)
            assert status == "OK", reply
        finally:
            connection.logout()

    def messages(self, user: str, password: str, folder: str = "INBOX") -> list[tuple[bytes, bytes]]:
        """(flags, raw message) of each message in the folder; none when the folder does not exist."""
        connection = self._login(user, password)
        try:
            if connection.select(folder, readonly=True)[0] != "OK":
                return []
            found = []
            for number in (connection.search(None, "ALL")[1][0] or b"").split():
                data = connection.fetch(number, "(FLAGS BODY.PEEK[])")[1]
                item = next(entry for entry in data if isinstance(entry, tuple))
                found.append((item[0], item[1]))
            return found
        finally:
            connection.logout()
