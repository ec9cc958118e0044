"""Screenshots of every main page at desktop and phone widths (run by scripts/screenshots).

Starts its own Apache (tests/support/apache.py) with the demo dataset of demo.py, so nothing
needs to be installed or configured by hand.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # tests/: the support and e2e packages

from support.apache import STAFF_PASSWORD, ApacheServer  # noqa: E402

from e2e import demo  # noqa: E402
from e2e.chromium import DESKTOP, PHONE, Browser, as_user  # noqa: E402

DEFAULT_FOLDER = HERE.parents[1] / "test-artifacts" / "screenshots" / "pages"


def main(argv: list[str]) -> int:
    folder = Path(argv[0]) if argv else DEFAULT_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    server = ApacheServer("site", "/crm").start()
    browsers: list[Browser] = []
    try:
        data = demo.fill(server)
        with_reports = server.request("GET", "/crm/reports", user=("sam", STAFF_PASSWORD)).status != 404
        for width_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
            logged_in = {}
            for user, password in demo.PASSWORDS.items():
                logged_in[user] = Browser(f"{user}-{width_name}", as_user(server.public_url, user, password), size=size)
                browsers.append(logged_in[user])
            for page in demo.pages(data, with_reports):
                browser = logged_in[page.user].open(page.path)
                if page.act:
                    page.act(browser)
                path = browser.screenshot(folder / f"{page.name}-{width_name}.png", page.focus)
                print(path)
        if not with_reports:
            print("(no /reports route yet: no reports screenshot)")
    finally:
        for browser in browsers:
            browser.quit()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
