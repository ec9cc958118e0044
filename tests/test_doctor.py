"""coretrack doctor: passes on a good install, names the fix on a broken one."""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest
from support.apache import ApacheServer

from coretrack import doctor
from coretrack.cli.common import set_up
from coretrack.config import Config

pytestmark = pytest.mark.slow


def failures(checks):
    return [check for check in checks if not check.ok]


def test_a_good_install_passes_every_check():
    server = ApacheServer("site", "/crm").start()
    try:
        checks = doctor.run(server.config, server.install)
        assert failures(checks) == []
        assert any("image endpoint" in check.what for check in checks)
    finally:
        server.stop()


def test_missing_apache_auth_and_unreadable_files_are_reported_with_their_fix():
    server = ApacheServer("site", "", auth_removed=True).start()
    try:
        os.chmod(server.config.htpasswd_path, 0o600)
        os.chown(server.config.htpasswd_path, 0, 0)
        failed = failures(doctor.run(server.config, server.install))
        text = "\n".join(check.line() for check in failed)
        assert "htpasswd is readable by www-data" in text and "chmod 640" in text
        assert "/emails needs a password" in text
        assert "Basic auth is missing" in text
    finally:
        server.stop()


def test_an_unreachable_public_url_is_reported():
    checks = doctor.check_public_surface("http://127.0.0.1:9")
    (check,) = checks
    assert not check.ok and "is Apache running" in check.fix


@pytest.fixture
def reachable_folder():
    """A folder www-data can enter (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="coretrack-doctor-", dir="/tmp"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path)


def test_every_mode_in_the_data_directory_is_checked_and_each_too_open_one_named_with_its_fix(reachable_folder):
    config = Config.from_env({"CORETRACK_HOME": str(reachable_folder / "home"),
                              "CORETRACK_ADMIN_PASSWORD": "pw-admin-1"})
    set_up(config)
    (config.attachments_dir / "3f2a").write_bytes(b"a contract")
    os.chmod(config.attachments_dir / "3f2a", 0o640)  # as the application writes it
    www = pwd.getpwnam("www-data")
    for path in [config.home, *config.home.rglob("*")]:
        os.chown(path, www.pw_uid, www.pw_gid)
    assert failures(doctor.check_files(config, "www-data")) == []

    os.chmod(config.home, 0o755)
    os.chmod(config.home / "coretrack.db", 0o644)
    os.chmod(config.attachments_dir / "3f2a", 0o660)
    os.chmod(config.secret_key_path, 0o640)
    os.chown(config.attachments_dir / "3f2a", 0, 0)  # written by root: the workers cannot read it
    text = "\n".join(check.line() for check in failures(doctor.check_files(config, "www-data")))
    for fix in (f"chmod 750 {config.home}", f"chmod 640 {config.home / 'coretrack.db'}",
                f"chmod 640 {config.attachments_dir / '3f2a'}", f"chmod 600 {config.secret_key_path}",
                f"chown -R www-data: {config.home}"):
        assert fix in text
    assert str(config.attachments_dir / "3f2a") in text.split("chown")[1]


def test_hits_waiting_in_the_spool_are_reported_with_what_to_do(config):
    from coretrack.tracking.hits import Hit
    from coretrack.tracking.spool import Spool

    assert [check.ok for check in doctor.check_spool(config)] == [True]
    Spool(config.spool_dir, config.spool_max_bytes).append([Hit.now("x.y", "192.0.2.1", "") for _ in range(3)])
    (check,) = doctor.check_spool(config)
    assert not check.ok
    assert "3 hit(s)" in check.fix and "coretrack spool replay" in check.fix
