"""The README's run command: scripts/run serves coretrack through Apache (or Werkzeug) from any
checkout, and however it stops, nothing it started is left running."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import free_port
from hit_load import wait_until

from coretrack import doctor
from coretrack.config import Config
from coretrack.tracking import GIF

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ADMIN = base64.b64encode(b"admin:first-admin-pw").decode()


def child_env(**chosen: str) -> dict[str, str]:
    """A child's environment: the basics and what the test chooses, never the CORETRACK_*, PORT
    and PostgreSQL variables that scripts/test exported for this suite."""
    basics = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return {**basics, **chosen}


@pytest.fixture
def root():
    """A folder Apache's workers (www-data) can enter, for a data directory."""
    path = Path(tempfile.mkdtemp(prefix="coretrack-run-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


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


def start_run(root: Path, smtp_port: int, *args: str) -> Run:
    port, home, log = free_port(), root / "home", root / "run.log"
    env = child_env(PORT=str(port), CORETRACK_HOME=str(home), CORETRACK_ADMIN_PASSWORD="first-admin-pw",
                    CORETRACK_SMTP_URL=f"smtp://127.0.0.1:{smtp_port}")
    with open(log, "wb") as output:
        process = subprocess.Popen([str(REPO / "scripts" / "run"), *args], env=env, cwd=root, stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    run = Run(process, home, log, f"http://127.0.0.1:{port}")
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


@pytest.mark.parametrize("mode", ["apache", "standalone"])
def test_scripts_run_serves_sends_and_counts_an_opened_message(mode, root, smtp_server):
    sink, smtp_port = smtp_server
    run = start_run(root, smtp_port, *(["--standalone"] if mode == "standalone" else []))
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            call(run.base + "/emails", auth=False)
        assert refused.value.code == 401
        status, page = call(run.base + "/emails")
        assert status == 200 and b"admin" in page

        status, sent = call(run.base + "/api/emails", body={"to": ["reader@example.test"], "subject": "Hello",
                                                            "html": "<p>Hi</p>"})
        assert status == 201
        email_id = json.loads(sent)["id"]
        html = sink.received[-1].message.get_body(preferencelist=("html",)).get_content()
        (url,) = re.findall(r'src="([^"]+TrackAccess\.php\?t=[^"]+)"', html)
        assert url.startswith(run.base + "/modules/Emails/TrackAccess.php?t=")
        assert call(url, auth=False) == (200, GIF)

        def access_count() -> int:
            detail = json.loads(call(f"{run.base}/api/emails/{email_id}")[1])
            return detail["recipient_list"][0]["access_count"]
        # Under Apache, 'coretrack ingest' counts it from Apache's hit log, within a second.
        wait_until(lambda: access_count() == 1, "the hit counted", 5)
        if mode == "apache":
            # What the workers made meanwhile (the database's -wal and -shm) is as private as the rest.
            files = doctor.check_files(Config.from_env({"CORETRACK_HOME": str(run.home)}), "www-data")
            assert [check.line() for check in files if not check.ok] == []
        os.kill(run.process.pid, signal.SIGTERM)
        assert run.wait() == 0, run.output()
        assert run.leftovers() == []
    finally:
        stop(run)
    if mode == "apache":
        assert "Apache + mod_wsgi" in run.output()


def ctrl_c(run: Run) -> None:
    os.killpg(run.process.pid, signal.SIGINT)  # a terminal sends it to the foreground process group


def worker_dies(run: Run) -> None:
    os.kill(run.child(lambda argv: argv[-1:] == ["worker"]), signal.SIGKILL)


def ingester_dies(run: Run) -> None:
    os.kill(run.child(lambda argv: argv[-1:] == ["ingest"]), signal.SIGKILL)


def apache_dies(run: Run) -> None:
    # Its mod_wsgi daemons stay behind, orphaned, unless scripts/run stops them.
    os.kill(run.child(lambda argv: argv[:1] == ["apache2"]), signal.SIGKILL)


@pytest.mark.parametrize("how, expected_status", [
    (lambda run: os.kill(run.process.pid, signal.SIGTERM), 0),
    (ctrl_c, 0),
    (worker_dies, "failure"),
    (ingester_dies, "failure"),
    (apache_dies, "failure"),
], ids=["SIGTERM", "Ctrl-C", "the worker dies", "the ingester dies", "Apache dies"])
def test_however_scripts_run_stops_nothing_it_started_is_left_running(how, expected_status, root, smtp_server):
    run = start_run(root, smtp_server[1])
    try:
        assert call(run.base + "/emails")[0] == 200  # the mod_wsgi daemons at work
        how(run)
        status = run.wait()
        assert run.leftovers() == []
        if expected_status == 0:
            assert status == 0, run.output()
        else:
            assert status != 0 and "ended (exit" in run.output(), run.output()
    finally:
        stop(run)


def setup_decision(checkout: Path, **environ: str) -> tuple[str, str, str]:
    """Where scripts/lib/setup.sh, in a checkout at this path, puts the venv (and whether it links
    the checkout into it) and the default data directory."""
    (checkout / "scripts" / "lib").mkdir(parents=True)
    shutil.copy(REPO / "scripts" / "lib" / "setup.sh", checkout / "scripts" / "lib")
    shutil.copy(REPO / "pyproject.toml", checkout)
    result = subprocess.run(["bash", "-c", 'source "$1" && printf "%s\\n" "$VENV" "$EDITABLE" "$DEFAULT_HOME"',
                             "-", str(checkout / "scripts" / "lib" / "setup.sh")],
                            env=child_env(**environ), capture_output=True, text=True, timeout=60, check=True)
    venv, editable, home = result.stdout.splitlines()
    return venv, {"1": "linked", "0": "copied"}[editable], home


@pytest.mark.parametrize("folder_mode, name, inherited, where", [
    (0o755, "checkout", {}, "in the checkout"),
    (0o700, "checkout", {}, "in /opt"),
    (0o755, "check out", {}, "in /opt"),
    (0o755, "checkout", {"CORETRACK_VENV": "/somewhere/else"}, "in the checkout"),
    (0o700, "checkout", {"CORETRACK_VENV": "/somewhere/else"}, "in /opt"),
], ids=["readable", "only root can read it", "a space in its path", "readable, CORETRACK_VENV inherited",
        "only root can read it, CORETRACK_VENV inherited"])
def test_the_venv_is_in_the_checkout_only_when_apache_can_use_it_there(folder_mode, name, inherited, where):
    folder = Path(tempfile.mkdtemp(prefix="coretrack-checkout-", dir="/tmp"))
    try:
        os.chmod(folder, folder_mode)
        checkout = folder / name
        venv, install, home = setup_decision(checkout, **inherited)
        if where == "in the checkout":
            assert (venv, install, home) == (f"{checkout}/.venv", "linked", f"{checkout}/var")
        else:
            # www-data cannot read the checkout, or Apache's config could not name it: a copy.
            assert re.fullmatch(r"/opt/coretrack/venv-[0-9a-f]{12}", venv) and install == "copied"
            assert re.fullmatch(r"/var/lib/coretrack-[0-9a-f]{12}", home)
    finally:
        shutil.rmtree(folder)


def test_a_working_mod_wsgi_is_kept_on_every_run_never_rebuilt():
    # The check reads ldd's output under pipefail: it must not fail now and then (it did, about one
    # run in ten), rebuilding mod_wsgi in a venv a running Apache uses.
    result = subprocess.run(["bash", "-c", 'set -euo pipefail; source "$1"; for _ in $(seq 40); do ensure_apache; done',
                             "-", str(REPO / "scripts" / "lib" / "setup.sh")],
                            env=child_env(), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "building mod_wsgi" not in result.stderr
