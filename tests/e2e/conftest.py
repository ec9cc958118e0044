"""Browser tests: coretrack under a real Apache (at /crm), driven through headless Chromium.

On a failure every browser the test opened saves a full-page screenshot into
test-artifacts/screenshots/ and the report shows its URL, title and visible text.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.apache import ApacheServer

from coretrack.settings import SettingsService
from e2e.chromium import DESKTOP, Browser, as_user, missing_binaries
from e2e.demo import PASSWORDS

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
BROWSERS = pytest.StashKey[list]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed and call.when == "call":
        for browser in item.stash.get(BROWSERS, []):
            name = re.sub(r"[^\w.-]+", "-", f"{item.name}-{browser.label}-{browser.step_name}")
            try:
                shot = f"screenshot: {browser.screenshot(ARTIFACTS / f'{name}.png')}"
            except Exception as exc:
                shot = f"(no screenshot: {exc!r})"
            report.sections.append(
                (f"browser {browser.label}", f"{shot}\nstep: {browser.step_name}\n{browser.describe()}"))
    return report


@pytest.fixture(scope="module")
def apache():
    if missing := missing_binaries():
        pytest.fail(f"Chromium is not installed ({', '.join(missing)} missing): scripts/test installs it, "
                    f"or deselect these tests with -m 'not browser'")
    server = ApacheServer("site", "/crm")
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def smtp(apache, smtp_server):
    """The real SMTP server of tests/conftest.py, set as the install's outgoing server; yields its sink."""
    sink, port = smtp_server
    with apache.session() as session:
        SettingsService(session, apache.config).update(
            {"smtp_host": "127.0.0.1", "smtp_port": str(port), "smtp_security": "none",
             "from_address": "crm@example.test", "from_name": "Example CRM"}, user_name="test-setup")
    return sink


@pytest.fixture
def browser(request, apache, tmp_path):
    """browser(label, user=None, size=DESKTOP): a fresh Chromium profile; with a user, logged in as them."""
    opened: list[Browser] = []
    request.node.stash[BROWSERS] = opened

    def start(label: str, user: str | None = None, size: tuple[int, int] = DESKTOP) -> Browser:
        base = as_user(apache.public_url, user, PASSWORDS[user]) if user else apache.public_url
        opened.append(Browser(label, base, size=size, downloads=tmp_path / f"downloads-{label}"))
        return opened[-1]

    yield start
    for started in opened:
        started.quit()
