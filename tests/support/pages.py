"""Checks on the HTML pages the app serves."""

from __future__ import annotations


def assert_no_script(response) -> None:
    """No script on an HTML page but our own files: no inline <script>, no on* handler attribute."""
    if response.content_type != "text/html":
        return
    for script in response.html.find_all("script"):
        assert script.get("src"), (response.request.path, str(script)[:200])
    for tag in response.html.find_all(True):
        handlers = [name for name in tag.attrs if name.lower().startswith("on")]
        assert not handlers, (response.request.path, str(tag)[:200])
