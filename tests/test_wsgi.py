"""The mod_wsgi entry point: importing it does nothing; the first request builds the app from SetEnv values."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest
import webtest

from coretrack.tracking.image import GIF


def test_importing_the_entry_point_creates_and_opens_nothing(tmp_path):
    home = tmp_path / "not-yet"
    subprocess.run([sys.executable, "-c", "import coretrack.wsgi"], check=True,
                   env={"CORETRACK_HOME": str(home), "PATH": "/usr/bin:/bin"})
    assert not home.exists()


def test_the_first_request_reads_coretrack_variables_passed_by_apache(config, monkeypatch):
    import coretrack.wsgi as entry

    monkeypatch.setattr(entry, "_app", None)
    monkeypatch.delenv("CORETRACK_HOME", raising=False)
    app = webtest.TestApp(entry.application, extra_environ={"CORETRACK_HOME": str(config.home)})
    assert app.get("/modules/Emails/TrackAccess.php").body == GIF
    assert entry._app.config.home == config.home
    app.get("/emails", status=401)  # the bare application: identity only from Apache
    entry._app.close()


@pytest.fixture(autouse=True)
def keep_umask():
    """The entry point sets the process's umask: give the test process its own back."""
    umask = os.umask(0o022)
    os.umask(umask)
    yield
    os.umask(umask)


def test_what_the_application_writes_later_is_private_whatever_umask_apache_gave_it(config, monkeypatch):
    import coretrack.wsgi as entry

    monkeypatch.setattr(entry, "_app", None)
    os.umask(0o022)
    webtest.TestApp(entry.application, extra_environ={"CORETRACK_HOME": str(config.home)}).get(
        "/modules/Emails/TrackAccess.php")
    entry._app.close()
    spool_file = config.spool_dir / "made-later"
    spool_file.write_text("")
    assert stat.S_IMODE(spool_file.stat().st_mode) == 0o640
