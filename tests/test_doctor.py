"""coretrack doctor: passes on a good install, names the fix on a broken one."""

from __future__ import annotations

import os

import pytest
from apache_server import ApacheServer

from coretrack import doctor

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


def test_hits_waiting_in_the_spool_are_reported_with_what_to_do(config):
    from coretrack.tracking import Hit, Spool

    assert [check.ok for check in doctor.check_spool(config)] == [True]
    Spool(config.spool_dir, config.spool_max_bytes).append([Hit.now("x.y", "192.0.2.1", "") for _ in range(3)])
    (check,) = doctor.check_spool(config)
    assert not check.ok
    assert "3 hit(s)" in check.fix and "coretrack spool replay" in check.fix
