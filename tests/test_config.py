"""Configuration and first start: environment, config file, data directory, secret key, first admin."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from coretrack.auth import Htpasswd
from coretrack.cli import main
from coretrack.config import Config, ConfigError, SmtpServer
from coretrack.db import make_engine, make_session_factory
from coretrack.settings import SettingsService


def test_defaults_put_everything_in_the_data_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = Config.from_env({"PORT": "9123"})
    assert config.home == tmp_path / "var"
    assert config.database_url == f"sqlite:///{tmp_path / 'var' / 'coretrack.db'}"
    assert config.public_url == "http://127.0.0.1:9123"
    assert config.htpasswd_path == tmp_path / "var" / "htpasswd"


def test_a_config_file_is_read_and_the_environment_wins(tmp_path):
    path = tmp_path / "coretrack.conf"
    path.write_text("# comment\nCORETRACK_HOME=/srv/ct\nCORETRACK_PUBLIC_URL='https://crm.example.test/crm/'\n")
    config = Config.from_env({"CORETRACK_CONFIG": str(path), "CORETRACK_HOME": str(tmp_path / "env-home")})
    assert config.home == tmp_path / "env-home"
    assert config.public_url == "https://crm.example.test/crm"


def test_a_malformed_config_file_line_is_named(tmp_path):
    path = tmp_path / "bad.conf"
    path.write_text("CORETRACK_HOME=/x\njust words\n")
    with pytest.raises(ConfigError, match="bad.conf:2"):
        Config.from_env({"CORETRACK_CONFIG": str(path)})


@pytest.mark.parametrize(
    "url, expected",
    [
        ("smtp://127.0.0.1:2525", SmtpServer("127.0.0.1", 2525, "none")),
        ("smtp://mail.example.test", SmtpServer("mail.example.test", 25, "none")),
        ("smtp+starttls://u%40x:p%3Aw@mail.example.test",
         SmtpServer("mail.example.test", 587, "starttls", "u@x", "p:w")),
        ("smtps://mail.example.test", SmtpServer("mail.example.test", 465, "tls")),
    ],
)
def test_smtp_urls_are_parsed(url, expected):
    assert SmtpServer.from_url(url) == expected


@pytest.mark.parametrize(
    "environ, message",
    [
        ({"CORETRACK_SMTP_URL": "http://mail"}, "scheme must be one of"),
        ({"CORETRACK_SMTP_URL": "smtp://"}, "a host is required"),
        ({"CORETRACK_SMTP_URL": "smtp://h:notaport"}, "CORETRACK_SMTP_URL"),
        ({"CORETRACK_PUBLIC_URL": "ftp://x"}, "must start with http"),
        ({"CORETRACK_SPOOL_MAX_MB": "lots"}, "CORETRACK_SPOOL_MAX_MB must be a whole number"),
        ({"CORETRACK_SPOOL_MAX_MB": "0"}, "CORETRACK_SPOOL_MAX_MB must be at least 1"),
        ({"CORETRACK_HIT_LOG_MAX_MB": "1.5"}, "CORETRACK_HIT_LOG_MAX_MB must be a whole number"),
        ({"CORETRACK_HIT_LOG_MAX_MB": "0"}, "CORETRACK_HIT_LOG_MAX_MB must be at least 1"),
        ({"CORETRACK_NODE": "n" * 256}, "CORETRACK_NODE must be at most 255 characters"),
    ],
)
def test_bad_settings_get_a_clear_error(environ, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_env(environ)


def test_the_secret_key_is_made_once_and_only_its_owner_can_read_it(tmp_path):
    config = Config.from_env({"CORETRACK_HOME": str(tmp_path / "home")})
    config.prepare_home()
    key = config.secret_key()
    assert len(key) == 32
    assert stat.S_IMODE(config.secret_key_path.stat().st_mode) == 0o600
    config.prepare_home()
    assert config.secret_key() == key


def first_start(tmp_path, **environ):
    env = {"CORETRACK_HOME": str(tmp_path / "home"), "CORETRACK_DATABASE_URL": None, "CORETRACK_CONFIG": None,
           "CORETRACK_ADMIN_PASSWORD": None, "CORETRACK_SMTP_URL": None, **environ}
    return CliRunner().invoke(main, ["db", "upgrade"], env=env)


def test_the_first_start_creates_admin_with_the_given_password(tmp_path):
    result = first_start(tmp_path, CORETRACK_ADMIN_PASSWORD="chosen-password")
    assert result.exit_code == 0, result.output
    assert "password" not in result.output
    hashed = Htpasswd(tmp_path / "home" / "htpasswd").entries()["admin"]
    assert Htpasswd.check_hash("chosen-password", hashed)


def test_without_a_password_the_first_start_prints_a_random_one_once(tmp_path):
    first = first_start(tmp_path)
    assert first.exit_code == 0
    password = first.output.split("password: ")[1].split()[0]
    assert Htpasswd.check_hash(password, Htpasswd(tmp_path / "home" / "htpasswd").entries()["admin"])
    second = first_start(tmp_path)
    assert second.exit_code == 0 and "password" not in second.output


def test_the_smtp_url_is_the_initial_outgoing_server(tmp_path):
    first_start(tmp_path)
    config = Config.from_env({"CORETRACK_HOME": str(tmp_path / "home"),
                              "CORETRACK_SMTP_URL": "smtp+starttls://bot:s3cret@mail.example.test:2587"})
    engine = make_engine(config.database_url)
    with make_session_factory(engine)() as session:
        assert SettingsService(session, config).smtp_server() == SmtpServer(
            "mail.example.test", 2587, "starttls", "bot", "s3cret")
    engine.dispose()


def modes(home: Path) -> dict[str, str]:
    return {str(path.relative_to(home.parent)): oct(stat.S_IMODE(path.stat().st_mode))
            for path in [home, *sorted(home.rglob("*"))]}


def test_the_data_directory_is_private_to_the_service_user(tmp_path):
    assert first_start(tmp_path).exit_code == 0
    found = modes(tmp_path / "home")
    assert found.pop("home/coretrack.db-wal", "0o640") == found.pop("home/coretrack.db-shm", "0o640") == "0o640"
    assert found == {"home": "0o750", "home/attachments": "0o750", "home/coretrack.db": "0o640",
                     "home/htpasswd": "0o640", "home/htpasswd.lock": "0o640", "home/secret.key": "0o600",
                     "home/front-end.id": "0o640", "home/spool": "0o750", "home/hitlog": "0o2750"}


def test_the_first_start_of_a_new_version_makes_an_older_install_private(tmp_path):
    assert first_start(tmp_path).exit_code == 0
    home = tmp_path / "home"
    (home / "attachments" / "3f2a").write_bytes(b"a contract")
    (home / "spool" / "hits.jsonl").write_text("")
    for path in [home, *home.rglob("*")]:
        os.chmod(path, 0o755 if path.is_dir() else 0o644)  # what earlier versions left
    assert first_start(tmp_path).exit_code == 0
    assert {path: mode for path, mode in modes(home).items() if mode not in ("0o750", "0o640")} == {
        "home/secret.key": "0o600", "home/hitlog": "0o2750"}


def test_files_the_command_line_makes_later_are_private_whatever_its_umask(tmp_path, smtp_server):
    sink, port = smtp_server
    attachment = tmp_path / "contract.pdf"
    attachment.write_bytes(b"%PDF-1.4")
    env = {"PATH": "/usr/bin:/bin", "CORETRACK_HOME": str(tmp_path / "home"),
           "CORETRACK_SMTP_URL": f"smtp://127.0.0.1:{port}"}
    coretrack = str(Path(sys.prefix) / "bin" / "coretrack")
    for command in (["db", "upgrade"], ["send", "--from-user", "admin", "--to", "ann@example.test",
                                        "--subject", "Contract", "--html", "<p>Attached</p>",
                                        "--attach", str(attachment)]):
        subprocess.run([coretrack, *command], env=env, umask=0o022, check=True, capture_output=True, timeout=60)
    assert len(sink.received) == 1
    (stored,) = (tmp_path / "home" / "attachments").iterdir()
    assert stat.S_IMODE(stored.stat().st_mode) == 0o640


def test_making_the_data_directory_private_never_follows_a_link_out_of_it(tmp_path):
    outside = tmp_path / "system-file"
    outside.write_text("not coretrack's")
    os.chmod(outside, 0o644)
    assert first_start(tmp_path).exit_code == 0
    (tmp_path / "home" / "attachments" / "3f2a").symlink_to(outside)  # made by the service user
    os.chmod(tmp_path / "home", 0o755)
    assert first_start(tmp_path).exit_code == 0
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "home").stat().st_mode) == 0o750


def test_the_hit_log_bound_and_the_node_name_come_from_the_settings():
    # No name given: the ingester counts under its earlier name, or the host name (test_ingest.py).
    assert (Config.from_env({}).hit_log_max_bytes, Config.from_env({}).node) == (100 * 2**20, None)
    config = Config.from_env({"CORETRACK_HIT_LOG_MAX_MB": "7", "CORETRACK_NODE": "front-2"})
    assert (config.hit_log_max_bytes, config.node) == (7 * 2**20, "front-2")


def test_the_node_name_given_reaches_every_service_through_the_env_file(tmp_path):
    from coretrack.apache import env_file_text

    given = Config.from_env({"CORETRACK_HOME": str(tmp_path), "CORETRACK_NODE": "front-2"})
    (tmp_path / "coretrack.env").write_text(env_file_text(given))
    # A service started with nothing but the env file (a systemd unit, scripts/run's services).
    assert Config.from_env({"CORETRACK_CONFIG": str(tmp_path / "coretrack.env")}).node == "front-2"
    assert "CORETRACK_NODE" not in env_file_text(Config.from_env({"CORETRACK_HOME": str(tmp_path)}))
