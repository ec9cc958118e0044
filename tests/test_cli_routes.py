"""`coretrack routes`: the URL map as a table of methods, path, endpoint and access."""

from __future__ import annotations

from click.testing import CliRunner

from coretrack.apache import public_paths
from coretrack.app import URL_MAP
from coretrack.cli import main


def routes() -> list[list[str]]:
    result = CliRunner().invoke(main, ["routes"])
    assert result.exit_code == 0, result.output
    header, *lines = result.output.splitlines()
    assert header.split() == ["METHODS", "PATH", "ENDPOINT", "ACCESS"]
    # Aligned columns (a path may hold spaces: <any(contacts, accounts, leads):section>).
    starts = [header.index(title) for title in ("METHODS", "PATH", "ENDPOINT", "ACCESS")]
    return [[line[start:end].strip() for start, end in zip(starts, [*starts[1:], None], strict=True)] for line in lines]


def test_every_rule_is_listed_once_sorted_by_path():
    rows = routes()
    assert len(rows) == len([rule for rule in URL_MAP.iter_rules() if not rule.build_only])
    assert [path for _, path, _, _ in rows] == sorted(path for _, path, _, _ in rows)
    assert ["GET,HEAD", "/emails/<int:email_id>", "emails.show_email", "staff"] in rows
    assert ["POST", "/emails", "emails.send_email", "staff"] in rows


def test_every_rule_answers_one_method():
    # One handler per method: a page's GET shows it, its POST changes something.
    assert all(methods in ("GET,HEAD", "POST", "DELETE") for methods, _, _, _ in routes())


def test_the_public_rules_are_exactly_the_public_handlers():
    public = [path for _, path, _, access in routes() if access == "public"]
    assert sorted(set(public)) == list(public_paths()) == ["/email/click", "/email/consent", "/email/stop-measuring",
                                                         "/email/unsubscribe", "/modules/Emails/TrackAccess.php",
                                                         "/webhooks/sendgrid"]
    assert public_paths()["/email/click"] == ["GET", "HEAD"]
    assert public_paths()["/modules/Emails/TrackAccess.php"] == ["GET", "HEAD"]
    assert public_paths()["/webhooks/sendgrid"] == ["POST"]
    for page in ("/email/unsubscribe", "/email/consent", "/email/stop-measuring"):
        assert public_paths()[page] == ["GET", "HEAD", "POST"]


def test_admin_pages_say_admin_and_the_rest_staff():
    access = {(methods, path): access for methods, path, _, access in routes()}
    assert access["GET,HEAD", "/settings"] == access["POST", "/settings"] == "admin"
    assert access["GET,HEAD", "/users"] == access["POST", "/users"] == "admin"
    assert access["GET,HEAD", "/users/<name>/disable"] == access["POST", "/users/<name>/disable"] == "admin"
    assert access["POST", "/users/<name>/role"] == "admin"
    assert access["GET,HEAD", "/reports"] == "staff"
    assert access["GET,HEAD", "/api/emails"] == "staff"
    assert set(access.values()) == {"public", "staff", "admin"}
