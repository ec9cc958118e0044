"""The README's run command: scripts/run serves coretrack through Apache (or Werkzeug), and stops cleanly."""

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
from pathlib import Path

import pytest
from conftest import free_port

from coretrack.tracking import GIF

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
ADMIN = base64.b64encode(b"admin:first-admin-pw").decode()


def wait_for(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError("scripts/run exited:\n" + process.stdout.read().decode(errors="replace"))
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # answering, even with 401
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds}s")


def call(url: str, *, body: dict | None = None, auth: bool = True):
    headers = {"Authorization": "Basic " + ADMIN} if auth else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    with urllib.request.urlopen(urllib.request.Request(url, data=data, headers=headers), timeout=30) as response:
        return response.status, response.read()


def start_run(home: Path, port: int, smtp_port: int, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PORT": str(port), "CORETRACK_HOME": str(home), "CORETRACK_ADMIN_PASSWORD": "first-admin-pw",
           "CORETRACK_SMTP_URL": f"smtp://127.0.0.1:{smtp_port}"}
    env.pop("CORETRACK_DATABASE_URL", None)
    return subprocess.Popen([str(REPO / "scripts" / "run"), *args], env=env, cwd=home.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


def stop(process: subprocess.Popen) -> str:
    os.killpg(process.pid, signal.SIGTERM)
    output = process.communicate(timeout=60)[0].decode(errors="replace")
    assert process.returncode == 0, output
    return output


@pytest.mark.parametrize("mode", ["apache", "standalone"])
def test_scripts_run_serves_sends_and_counts_an_opened_message(mode, smtp_server):
    sink, smtp_port = smtp_server
    root = Path(tempfile.mkdtemp(prefix="coretrack-run-", dir="/tmp"))
    os.chmod(root, 0o755)  # Apache's workers (www-data) must reach the data directory
    port = free_port()
    process = start_run(root / "home", port, smtp_port, *(["--standalone"] if mode == "standalone" else []))
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/modules/Emails/TrackAccess.php", process)
        with pytest.raises(urllib.error.HTTPError) as refused:
            call(base + "/emails", auth=False)
        assert refused.value.code == 401
        status, page = call(base + "/emails")
        assert status == 200 and b"admin" in page

        status, sent = call(base + "/api/emails", body={"to": ["reader@example.test"], "subject": "Hello",
                                                        "html": "<p>Hi</p>"})
        assert status == 201
        email_id = json.loads(sent)["id"]
        html = sink.received[-1].message.get_body(preferencelist=("html",)).get_content()
        (url,) = re.findall(r'src="([^"]+TrackAccess\.php\?t=[^"]+)"', html)
        assert url.startswith(base + "/modules/Emails/TrackAccess.php?t=")
        assert call(url, auth=False) == (200, GIF)
        detail = json.loads(call(f"{base}/api/emails/{email_id}")[1])
        assert detail["recipient_list"][0]["access_count"] == 1
    finally:
        output = stop(process)
        shutil.rmtree(root, ignore_errors=True)
    if mode == "apache":
        assert "Apache + mod_wsgi" in output
