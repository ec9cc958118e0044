"""Browser tests (headless Chromium) and the screenshot tool; a package so its conftest has its own name."""
