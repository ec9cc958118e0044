"""The README's run command on this machine: scripts/run serves the UI and the image endpoint."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import free_port
from coretrack.tracking import GIF

REPO = Path(__file__).resolve().parent.parent


def wait_for(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except urllib.error.HTTPError:
            return  # answering, even with 401
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {seconds}s")


@pytest.mark.slow
def test_scripts_run_serves_the_ui_and_the_image_endpoint(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PORT": str(port),
        "CORETRACK_HOME": str(tmp_path / "home"),
        "CORETRACK_ADMIN_PASSWORD": "first-admin-pw",
    }
    env.pop("CORETRACK_DATABASE_URL", None)
    process = subprocess.Popen(
        [str(REPO / "scripts" / "run"), "--standalone"], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(base + "/modules/Emails/TrackAccess.php")
        with urllib.request.urlopen(base + "/modules/Emails/TrackAccess.php?t=nothing") as response:
            assert response.status == 200 and response.read() == GIF
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/emails")
        assert refused.value.code == 401
        request = urllib.request.Request(
            base + "/emails",
            headers={"Authorization": "Basic " + base64.b64encode(b"admin:first-admin-pw").decode()},
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 200
            assert b"coretrack" in response.read()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output = process.communicate(timeout=30)[0].decode(errors="replace")
    assert process.returncode in (0, -signal.SIGTERM, 128 + signal.SIGTERM), output
