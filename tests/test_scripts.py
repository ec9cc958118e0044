"""The README's run command: scripts/run serves coretrack through Apache (or Werkzeug) from any
checkout, and however it stops, nothing it started is left running."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest
from support.hit_load import PATH, LoadResult, counted, fire, make_recipients, plan_hits, wait_until
from support.scripts import REPO, Run, call, child_env, start_run, stop

from coretrack import doctor
from coretrack.config import Config
from coretrack.db import make_engine, make_session_factory
from coretrack.tracking.image import GIF

pytestmark = pytest.mark.slow


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


def answered_counts(answered: Counter, recipients) -> Counter:
    """The count each recipient must have: how many of its loads were answered with the GIF."""
    of_token = {recipient.token: recipient.id for recipient in recipients}
    return Counter({of_token[token]: times for token, times in answered.items()})


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_stopping_under_load_counts_every_hit_answered_before_it_ends(how, root, smtp_server):
    """Apache stops taking requests and answers those in hand, its logger writes their lines, and
    the ingester counts them before scripts/run ends: nothing answered is lost at a stop."""
    run = start_run(root, smtp_server[1])
    try:
        config = Config.from_env({"CORETRACK_HOME": str(run.home)})
        engine = make_engine(config.database_url)
        try:
            with make_session_factory(engine)() as session:
                recipients = make_recipients(session, config.secret_key(), 50)
            hit_tokens, _ = plan_hits(recipients, 30_000)  # more than it answers before the stop
            load = LoadResult()
            firing = threading.Thread(target=fire, args=(int(run.base.rsplit(":", 1)[1]), PATH, hit_tokens),
                                      kwargs={"workers": 16, "result": load})
            firing.start()
            wait_until(lambda: load.answers[200, True] >= 2000, "hits answered under load", 120)
            (os.killpg if how == signal.SIGINT else os.kill)(run.process.pid, how)
            assert run.wait() == 0, run.output()
            firing.join(120)
            assert run.leftovers() == []
            # Counted by the time scripts/run ended: nothing waits for a next start.
            with make_session_factory(engine)() as session:
                counts, events = counted(session)
        finally:
            engine.dispose()
        assert load.answers[200, True] >= 2000
        assert counts == answered_counts(load.answered, recipients)
        assert events == load.answers[200, True]
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
