"""scripts/run as a user starts it, for the tests: in its own session, its output in a file, its
environment only what the test chooses; and what a stopped run must not leave behind."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from support.ports import free_port

REPO = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "first-admin-pw"
ADMIN = base64.b64encode(f"admin:{ADMIN_PASSWORD}".encode()).decode()


def child_env(**chosen: str) -> dict[str, str]:
    """A child's environment: the basics and what the test chooses, never the CORETRACK_*, PORT
    and PostgreSQL variables that scripts/test exported for this suite."""
    basics = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return {**basics, **chosen}


@dataclass
class Run:
    """One scripts/run.  Its output goes to a file, not a pipe: a process that outlived it could
    hold a pipe open, and reading it would block the test."""

    process: subprocess.Popen
    home: Path
    log: Path
    base: str

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, seconds: float = 90) -> int:
        try:
            return self.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"scripts/run still running {seconds}s after it was told to stop:\n"
                                 f"{self.output()}") from None

    def child(self, is_it) -> int:
        """The pid of the direct child of scripts/run whose argv is_it(argv) accepts."""
        for pid, argv in processes():
            if parent(pid) == self.process.pid and is_it(argv):
                return pid
        raise AssertionError(f"no such child of scripts/run:\n{self.output()}")

    def leftovers(self) -> list[str]:
        """Every process whose command line names the data directory or that holds a file in it,
        or holds scripts/run's output: what a stopped run must not leave behind."""
        found = []
        for pid, argv in processes():
            if pid == os.getpid():
                continue
            try:
                files = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
            except OSError:
                files = []
            if any(str(self.home) in arg for arg in argv) or any(
                    path.startswith(str(self.home) + "/") or path == str(self.log) for path in files):
                found.append(f"{pid}: {' '.join(argv)}")
        return found


def processes() -> list[tuple[int, list[str]]]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
            except OSError:
                continue  # ended meanwhile
            found.append((int(entry.name), argv))
    return found


def parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def start_run(root: Path, smtp_port: int, *args: str, name: str = "home", wait: bool = True,
              **environ: str) -> Run:
    """scripts/run ARGS with its data directory at root/NAME (its output in root/NAME.log) and the
    variables ``environ`` beside the usual ones; by default, once the image endpoint answers."""
    port, home, log = free_port(), root / name, root / f"{name}.log"
    env = child_env(PORT=str(port), CORETRACK_HOME=str(home), CORETRACK_ADMIN_PASSWORD=ADMIN_PASSWORD,
                    CORETRACK_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}", **environ)
    with open(log, "wb") as output:
        process = subprocess.Popen([str(REPO / "scripts" / "run"), *args], env=env, cwd=root, stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    run = Run(process, home, log, f"http://127.0.0.1:{port}")
    if not wait:
        return run
    try:
        wait_for(run)
    except BaseException:
        stop(run, signal.SIGKILL)
        raise
    return run


def wait_for(run: Run, seconds: float = 300) -> None:
    """Until the image endpoint answers (the first run in a checkout installs everything)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if run.process.poll() is not None:
            raise AssertionError(f"scripts/run exited ({run.process.returncode}):\n{run.output()}")
        try:
            urllib.request.urlopen(run.base + "/modules/Emails/TrackAccess.php", timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"scripts/run did not answer within {seconds}s:\n{run.output()}")


def stop(run: Run, how: signal.Signals = signal.SIGKILL) -> None:
    """Clean-up after a failed test: the whole session of scripts/run, and whatever it started."""
    if run.process.poll() is None:
        os.killpg(run.process.pid, how)
        run.process.wait(timeout=60)
    for line in run.leftovers():
        os.kill(int(line.split(":")[0]), signal.SIGKILL)


def call(url: str, *, body: dict | None = None, auth: bool = True):
    headers = {"Authorization": "Basic " + ADMIN} if auth else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as response:
        return response.status, response.read()


