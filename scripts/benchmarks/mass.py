"""A mass send from the contacts list, as staff make it: the compose page for "all that match",
its preview, and the send (saved and queued for the worker), at two list sizes, through the WSGI
application on SQLite.  Prints each step's time and last ``ratio=<seconds per recipient at the
large size / at the small size>``: near 1 or below, the page grows no slower than its list.

Run: scripts/bench-mass [SMALL LARGE]   (default 1000 10000)
"""

import contextlib
import io
import sys
import tempfile
import time

import webtest
from sqlalchemy import insert

from coretrack.app import CoreTrack
from coretrack.auth import Htpasswd, UserService
from coretrack.cli.common import set_up
from coretrack.config import Config
from coretrack.models import Contact

PASSWORD = "bench-password-123"


def timed(step):
    start = time.perf_counter()
    result = step()
    return time.perf_counter() - start, result


def measure(count: int) -> dict[str, float]:
    config = Config.from_env({"CORETRACK_HOME": tempfile.mkdtemp(prefix="coretrack-bench-mass-")})
    # Its first admin's password is no part of the report.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        set_up(config)
    app = CoreTrack(config)
    with app.Session() as session:
        UserService(session, Htpasswd(config.htpasswd_path)).add("sam", PASSWORD, role="staff")
        session.execute(insert(Contact), [{"first_name": f"Person{number}", "last_name": f"Listed{number:06d}",
                                           "email": f"person{number}@example.test"} for number in range(count)])
        session.commit()
    client = webtest.TestApp(app, extra_environ={"REMOTE_USER": "sam"})
    seconds = {}
    seconds["compose"], page = timed(lambda: client.get("/emails/new?audience=contacts&scope=all&q=listed"))
    form = page.forms["compose"]
    form["subject"] = "News for $contacts-firstname$"
    form["html"] = "<p>Dear $contacts-firstname$ $contacts-lastname$, our news.</p>"
    seconds["preview"], preview = timed(lambda: form.submit("action", value="preview"))
    assert f"of {count} recipients" in preview.text, preview.text[:2000]
    form = preview.forms["compose"]
    seconds["send"], sent = timed(lambda: form.submit("action", value="send", status=303))
    assert "Queued" in sent.follow().text
    app.close()
    return seconds


def main() -> None:
    small, large = (int(value) for value in sys.argv[1:3]) if len(sys.argv) > 2 else (1000, 10_000)
    results = {count: measure(count) for count in (small, large)}
    print("| contacts | compose page s | preview s | send s | ms per recipient (preview + send) |")
    print("| ---: | ---: | ---: | ---: | ---: |")
    per_recipient = {}
    for count, seconds in results.items():
        per_recipient[count] = (seconds["preview"] + seconds["send"]) / count
        print(f"| {count:,} | {seconds['compose']:.3f} | {seconds['preview']:.3f} | {seconds['send']:.3f} | "
              f"{per_recipient[count] * 1000:.3f} |")
    print(f"ratio={per_recipient[large] / per_recipient[small]:.2f}")


if __name__ == "__main__":
    main()
