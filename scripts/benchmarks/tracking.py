"""The image endpoint under load through a real Apache + mod_wsgi; run by scripts/bench-tracking."""

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# tests/apache_server.py runs the real Apache the suite uses.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from apache_server import ApacheServer  # noqa: E402
from sqlalchemy import func, insert, select  # noqa: E402

from coretrack import tokens  # noqa: E402
from coretrack.models import AccessEvent, Email, Recipient, User  # noqa: E402

parser = argparse.ArgumentParser(prog="bench-tracking")
parser.add_argument("--seconds", type=int, default=10)
parser.add_argument("--connections", type=int, default=20)
options = parser.parse_args()

PATH = "/modules/Emails/TrackAccess.php"
RECIPIENTS = 1000


def wrk(url: str, script: Path | None = None) -> tuple[int, float]:
    command = ["wrk", "-t2", f"-c{options.connections}", f"-d{options.seconds}s", "--latency"]
    if script:
        command += ["-s", str(script)]
    out = subprocess.run(command + [url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw errors:\n{out}")
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return requests, rate


server = ApacheServer("site", "", processes=2, threads=10)
try:
    server.start()
    secret = server.config.secret_key()
    with server.session() as session:
        sender = session.scalar(select(User.id).where(User.name == "admin"))
        email = Email(subject="bench", html_body="<p>x</p>", sender_id=sender, from_address="crm@example.test")
        session.add(email)
        session.flush()
        made = [tokens.new_token(secret) for _ in range(RECIPIENTS)]
        session.execute(insert(Recipient), [
            {"email_id": email.id, "address": f"r{n}@example.test", "token": token, "status": "sent"}
            for n, token in enumerate(made)])
        session.commit()
    base = f"http://127.0.0.1:{server.port}{PATH}"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as lua:
        lua.write("tokens = {" + ",".join(f'"{token}"' for token in made) + "}\n"
                  "counter = 0\n"
                  "request = function()\n"
                  "  counter = counter + 1\n"
                  f'  return wrk.format("GET", "{PATH}?t=" .. tokens[(counter % #tokens) + 1])\n'
                  "end\n")
    wrk(base + "?t=warm-up")  # both Apache processes loaded, pools filled
    gif_requests, gif_rate = wrk(base + "?t=" + "x" * 22 + "." + "y" * 22)
    tracked_requests, tracked_rate = wrk(base, Path(lua.name))
    with server.session() as session:
        counted = session.scalar(select(func.sum(Recipient.access_count))) or 0
        events = session.scalar(select(func.count()).select_from(AccessEvent))
    spooled = sum(1 for _ in (server.home / "spool").glob("*.jsonl"))
finally:
    server.stop()

print(f"GIF only (bad token, no database): {gif_rate:9.0f} req/s ({gif_requests} requests)")
print(f"tracked hits, {RECIPIENTS} recipients: {tracked_rate:9.0f} req/s ({tracked_requests} requests)")
print(f"counted {counted}, event rows {events}, completed requests {tracked_requests}, "
      f"spool files left {spooled}")
print(f"tracked_to_gif_ratio={tracked_rate / gif_rate:.2f}")
