"""The image endpoint four ways, through a real Apache on loopback; run by scripts/bench-pixel.

  static  Apache serves the GIF from a file, with the endpoint's headers and nothing more: the ceiling
  bare    a bare Werkzeug app returns the GIF under the shipped mod_wsgi settings (2 processes x 10 threads)
  log     coretrack's log path: Apache serves the GIF and writes a hit log, `coretrack ingest` counts it
  wsgi    coretrack's WSGI path: mod_wsgi -> the app -> group commit

Every variant gets the same wrk load (one Lua script shape, tokens rotating over 1,000 recipients),
round after round in turn, so a noisy neighbour on the machine spreads over all of them.  After each
round of a counting variant, its counts must match what wrk saw answered, and its spool be empty.

The counting variants also measure the count lag, the log path's goal being a hit counted within
1 s at p99 under load: while wrk runs, a probe sends a hit every 50 ms for a recipient of its own
and times each until that recipient's count includes it.
"""

import argparse
import math
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

# tests/ holds the real Apache the suite uses and the load helpers.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests"))
from sqlalchemy import select  # noqa: E402
from support.apache import VENV, ApacheServer, Service  # noqa: E402
from support.hit_load import PATH, counted, fire, make_recipients, spooled  # noqa: E402

from coretrack.db import make_engine  # noqa: E402
from coretrack.models import Recipient  # noqa: E402
from coretrack.tracking import tokens  # noqa: E402
from coretrack.tracking.image import GIF, GIF_HEADERS  # noqa: E402

parser = argparse.ArgumentParser(prog="bench-pixel")
parser.add_argument("--seconds", type=int, default=10, help="length of each wrk round")
parser.add_argument("--rounds", type=int, default=2, help="rounds of every variant, in turn (at least 2)")
parser.add_argument("--connections", type=int, default=32)
parser.add_argument("--catch-up", type=float, default=120,
                    help="seconds the counts may take to settle after a round (the ingester's backlog)")
options = parser.parse_args()
if options.rounds < 2:
    parser.error("--rounds: at least 2, so that every variant is measured twice, in turn with the others")

RECIPIENTS = 1000
# Every hit wrk saw answered must be counted: none short is expected, this much is room for wrk's
# own bookkeeping at the instant it stops.
SLACK = 2
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) Thunderbird/115.0"
CORETRACK = VENV / "bin" / "coretrack"
# What `coretrack apache-config` is told for the WSGI path: the log path is its default.
WSGI_PATH_OPTION = "--no-hit-log"
# The count-lag probe: a hit this often, and a look at its recipient's count this often.
PROBE_EVERY = 0.05
PROBE_LOOK_EVERY = 0.01


def log_path_available() -> str:
    """Empty when this checkout has the log path, else why not."""
    result = subprocess.run([str(CORETRACK), "ingest", "--help"], capture_output=True, text=True)
    if result.returncode != 0:
        return "`coretrack ingest --help` failed: the log path is not in this checkout"
    return ""


# -- the variants' Apache configs (each edit runs once the shipped files are written) -------------

def site_conf(server: ApacheServer) -> Path:
    return server.install.output / "coretrack-site.conf"


def replace_once(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if text.count(old) != 1:
        raise SystemExit(f"bench-pixel: expected {old!r} once in {path}; has the site template changed?")
    path.write_text(text.replace(old, new))


def shipped_config(log_path: bool) -> Callable[[ApacheServer], None]:
    """The site config as `coretrack apache-config` writes it for this install: the log path is
    its default, `--no-hit-log` gives the WSGI path."""
    def write(server: ApacheServer) -> None:
        if LOG_PATH_MISSING:
            return  # before the log path, the WSGI path is all there is, and ApacheServer wrote it
        environ = {"PATH": os.environ["PATH"], "CORETRACK_HOME": str(server.home),
                   "CORETRACK_PUBLIC_URL": server.public_url, "CORETRACK_DATABASE_URL": server.config.database_url}
        subprocess.run([str(CORETRACK), "apache-config", "--form", "site", "--private-server",
                        "--home", str(server.home), "--listen", server.install.listen,
                        "--output", str(server.install.output), *([] if log_path else [WSGI_PATH_OPTION])],
                       env=environ, check=True, capture_output=True)
    return write


wsgi_path_config = shipped_config(log_path=False)


def static_gif(server: ApacheServer) -> None:
    """Apache answers the image path from a file, with the endpoint's own headers and none of a
    file's (validators, ranges): the same bytes on the wire as the application's answer."""
    folder = server.root / "static"
    folder.mkdir(mode=0o755)
    (folder / "pixel.gif").write_bytes(GIF)
    os.chmod(folder / "pixel.gif", 0o644)
    headers = "".join(f'        Header set {name} "{value}"\n' for name, value in GIF_HEADERS
                      if name not in ("Content-Type", "Content-Length"))
    replace_once(site_conf(server), "</VirtualHost>",
                 f"    Alias {PATH} {folder / 'pixel.gif'}\n"
                 f"    <Location {PATH}>\n        FileETag None\n        Header unset Last-Modified\n"
                 f"        Header unset Accept-Ranges\n{headers}    </Location>\n</VirtualHost>")


BARE_APP = '''\
from werkzeug.wrappers import Request, Response

from coretrack.tracking.image import GIF, GIF_HEADERS


@Request.application
def application(request):
    return Response(GIF, headers=GIF_HEADERS)
'''


def bare_werkzeug(server: ApacheServer) -> None:
    """The same mod_wsgi daemon settings, pointed at a WSGI script that only returns the GIF."""
    from coretrack import wsgi

    shipped = Path(wsgi.__file__).resolve()
    folder = server.root / "bare"
    folder.mkdir(mode=0o755)
    (folder / shipped.name).write_text(BARE_APP)
    os.chmod(folder / shipped.name, 0o644)
    replace_once(site_conf(server), f" {shipped}\n", f" {folder / shipped.name}\n")
    replace_once(site_conf(server), f"<Directory {shipped.parent}>", f"<Directory {folder}>")


def apache(*edits: Callable[[ApacheServer], None]) -> ApacheServer:
    """The shipped site form, as the suite runs it, with the shipped mod_wsgi settings."""
    server = ApacheServer("site", "", processes=2, threads=10)

    def edit(output: Path) -> None:
        for one in edits:
            one(server)

    server.edit = edit
    return server


# -- load and measurement ---------------------------------------------------------------------

@dataclass
class Round:
    rate: float
    p50_ms: float
    p99_ms: float
    requests: int
    answered: int  # 200s
    socket_errors: int
    counted_rate: float | None = None
    count_lag_p50_ms: float | None = None
    count_lag_p99_ms: float | None = None
    note: str = ""
    ok: bool = True


@dataclass
class Variant:
    name: str
    title: str
    server: ApacheServer
    counts: bool
    lua: Path | None = None
    ingester: Service | None = None
    probe: tuple[int, str] | None = None  # the count-lag probe's own recipient: id, token
    rounds: list[Round] = field(default_factory=list)

    def counted(self) -> tuple[int, int]:
        """Hits counted (sum of access counts) and the hits the access events stand for."""
        with self.server.session() as session:
            counts, events = counted(session)
        return sum(counts.values()), events


def write_lua(variant: Variant, hit_tokens: list[str]) -> None:
    """Rotates over the tokens; wrk's two threads start half-way apart, requests built once."""
    lua = variant.server.root / "rotate.lua"
    lua.write_text(
        f'wrk.headers["User-Agent"] = "{USER_AGENT}"\n'
        "local tokens = {" + ",".join(f'"{token}"' for token in hit_tokens) + "}\n"
        "local threads = 0\n"
        "function setup(thread)\n"
        "  thread:set(\"first\", threads * math.floor(#tokens / 2))\n"
        "  threads = threads + 1\n"
        "end\n"
        "function init(args)\n"
        "  requests = {}\n"
        f'  for i, token in ipairs(tokens) do requests[i] = wrk.format("GET", "{PATH}?t=" .. token) end\n'
        "  counter = first or 0\n"
        "end\n"
        "function request()\n"
        "  counter = counter + 1\n"
        "  return requests[counter % #requests + 1]\n"
        "end\n")
    variant.lua = lua


UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def wrk(variant: Variant, seconds: int) -> Round:
    command = ["wrk", "-t2", f"-c{options.connections}", f"-d{seconds}s", "--latency",
               "-s", str(variant.lua), f"http://127.0.0.1:{variant.server.port}{PATH}"]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def number(pattern: str, default: str | None = None) -> str:
        match = re.search(pattern, out)
        if match:
            return match.group(1)
        if default is None:
            raise SystemExit(f"bench-pixel: no {pattern!r} in wrk's output:\n{out}")
        return default

    def latency(percent: str) -> float:
        value, unit = re.search(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M).groups()
        return float(value) * UNITS_MS[unit]

    requests = int(number(r"(\d+) requests in"))
    errors = sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)",
                                              number(r"Socket errors: (.*)", "")))
    return Round(rate=float(number(r"Requests/sec:\s+([\d.]+)")), p50_ms=latency("50"), p99_ms=latency("99"),
                 requests=requests, answered=requests - int(number(r"Non-2xx or 3xx responses: (\d+)", "0")),
                 socket_errors=errors)


def percentile(values: list[float], percent: float) -> float:
    """Nearest rank: the smallest value with at least ``percent`` % of them at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(percent / 100 * len(ordered)) - 1)]


class CountLag(threading.Thread):
    """While wrk runs: a hit every PROBE_EVERY for the probe's own recipient (its own connection on
    loopback), and for each the time from sending it until that recipient's count includes it,
    the count read every PROBE_LOOK_EVERY with a one-row query.  Nothing else hits that recipient,
    so its n-th answered hit is in once the count has grown by n.  Once stopped, it keeps looking
    until its last hits are counted (at most --catch-up seconds)."""

    def __init__(self, variant: Variant) -> None:
        super().__init__(name=f"count-lag-{variant.name}")
        assert variant.probe is not None
        self.server, (self.recipient, self.token) = variant.server, variant.probe
        self.stopping = threading.Event()
        self.lags_ms: list[float] = []
        self.answered = 0  # the hits answered with the image: the count grows by these
        self.failed = 0  # hits without the image in answer: counted or not, nobody knows
        self.uncounted = 0  # answered, but not counted within --catch-up of the stop
        self.error = ""  # why it ended early

    def run(self) -> None:
        engine = make_engine(self.server.config.database_url)
        query = select(Recipient.access_count).where(Recipient.id == self.recipient)
        pending: deque[tuple[float, int]] = deque()  # (sent at, the count that includes it)
        try:
            with engine.connect() as database:
                def count() -> int:
                    value = database.scalar(query) or 0
                    database.rollback()  # the next look sees what has been committed since
                    return value

                base = count()
                next_hit, give_up = time.monotonic(), math.inf
                while pending or not self.stopping.is_set():
                    now = time.monotonic()
                    if not self.stopping.is_set() and now >= next_hit:
                        next_hit = max(next_hit + PROBE_EVERY, now)  # the cadence kept, no bursts
                        if self.hit():
                            self.answered += 1
                            pending.append((now, base + self.answered))
                        else:
                            self.failed += 1
                    seen = count()
                    now = time.monotonic()
                    while pending and pending[0][1] <= seen:
                        self.lags_ms.append((now - pending.popleft()[0]) * 1000)
                    if self.stopping.is_set():
                        give_up = min(give_up, now + options.catch_up)
                        if now > give_up:
                            self.uncounted = len(pending)
                            break
                    time.sleep(PROBE_LOOK_EVERY)
        except Exception as exc:  # reported with the round, whose counts then cannot be trusted
            self.error = repr(exc)
        finally:
            engine.dispose()

    def hit(self) -> bool:
        """One hit, on a connection of its own; True when answered with the image."""
        result = fire(self.server.port, PATH, [self.token], workers=1, user_agent=USER_AGENT)
        return result.answers == {(200, True): 1}


def settle(variant: Variant, before: tuple[int, int], answered: int,
           started: float | None = None) -> tuple[tuple[int, int], float | None]:
    """Waits until the counts reach what wrk saw answered and then stop moving (the ingester has
    read the log, the last batches are committed); returns them and how long that took since
    ``started`` (wrk's end; default now), None for not within --catch-up seconds."""
    started = time.monotonic() if started is None else started
    last, since = variant.counted(), time.monotonic()
    while time.monotonic() < started + options.catch_up:
        time.sleep(0.25)
        now = variant.counted()
        if now != last:
            last, since = now, time.monotonic()
        elif now[0] - before[0] >= answered - SLACK and time.monotonic() - since >= 1.5:
            return now, since - started
    return last, None


def measure(variant: Variant, seconds: int) -> Round:
    before = variant.counted() if variant.counts else (0, 0)
    probe = CountLag(variant) if variant.counts else None
    if probe:
        probe.start()
    try:
        result = wrk(variant, seconds)
        ended = time.monotonic()
    finally:
        if probe:
            probe.stopping.set()
            probe.join()
    problems = []
    if result.answered != result.requests:
        problems.append(f"{result.requests - result.answered} answers were not 200")
    if variant.counts and probe:
        if probe.error:
            problems.append(f"the count-lag probe failed: {probe.error}")
        if probe.failed:
            problems.append(f"{probe.failed} probe hits not answered with the image")
        if probe.uncounted:
            problems.append(f"{probe.uncounted} probe hits not counted {options.catch_up:.0f} s after wrk stopped")
        if probe.lags_ms:
            result.count_lag_p50_ms = percentile(probe.lags_ms, 50)
            result.count_lag_p99_ms = percentile(probe.lags_ms, 99)
        # The probe's hits are counted too: expected on top of wrk's.
        answered = result.answered + probe.answered
        after, took = settle(variant, before, answered, ended)  # the probe's wait is part of the catch-up
        hits, events = after[0] - before[0], after[1] - before[1]
        in_spool = spooled(variant.server.config)
        # Requests in flight when wrk stops are answered and counted, but wrk no longer waits for them.
        most = answered + options.connections + result.socket_errors + probe.failed
        if took is None:
            problems.append(f"the counts had not caught up {options.catch_up:.0f} s after wrk stopped")
        if not answered - SLACK <= hits <= most:
            problems.append(f"counted {hits}, outside {answered - SLACK}..{most}")
        if events != hits:
            problems.append(f"access events stand for {events} hits, the counts for {hits}")
        if in_spool:
            problems.append(f"{in_spool} hits left in the spool")
        if took is not None:
            # What the counting keeps up with: the log path's ingester may trail Apache.
            result.counted_rate = hits / (seconds + took)
        result.note = f"counted {hits} ({probe.answered} of them the probe's), {in_spool} spooled" + (
            f", caught up {took:.1f} s after wrk ({result.counted_rate:.0f} counted/s)" if took is not None else "")
    result.ok = not problems
    if problems:
        result.note = "; ".join(filter(None, [*problems, result.note]))
    return result


# -- the run ----------------------------------------------------------------------------------

LOG_PATH_MISSING = log_path_available()
for tool in ("wrk", "apache2"):
    if not shutil.which(tool):
        raise SystemExit(f"bench-pixel: {tool} is not installed")


variants = [
    Variant("static", "Apache, static GIF file", apache(wsgi_path_config, static_gif), False),
    Variant("bare", "bare Werkzeug under mod_wsgi", apache(wsgi_path_config, bare_werkzeug), False),
    Variant("log", "coretrack log path", apache(shipped_config(log_path=True)), True),
    Variant("wsgi", "coretrack WSGI path", apache(wsgi_path_config), True),
]
if LOG_PATH_MISSING:
    print(f"log path: skipped, {LOG_PATH_MISSING}", flush=True)
    variants = [variant for variant in variants if variant.name != "log"]

failed = False
try:
    for variant in variants:
        variant.server.start()
        if variant.counts:
            with variant.server.session() as session:
                *loaded, probe = make_recipients(session, variant.server.config.secret_key(), RECIPIENTS + 1)
                hit_tokens = [recipient.token for recipient in loaded]
                variant.probe = (probe.id, probe.token)
        else:  # tokens of the same shape, which nothing checks
            secret = secrets.token_bytes(32)
            hit_tokens = [tokens.new_token(secret) for _ in range(RECIPIENTS)]
        write_lua(variant, hit_tokens)
        if variant.name == "log":
            variant.ingester = variant.server.start_service("ingest")
    for variant in variants:  # both daemon processes loaded, pools filled; not measured
        wrk(variant, 1)
        if variant.counts:
            settle(variant, (0, 0), 0)
    for number in range(1, options.rounds + 1):
        for variant in variants:
            if variant.ingester and variant.ingester.process.poll() is not None:
                raise SystemExit("bench-pixel: `coretrack ingest` ended:\n"
                                 + variant.ingester.stop()[-3000:])
            one = measure(variant, options.seconds)
            variant.rounds.append(one)
            failed |= not one.ok
            lag = (f"count lag p50 {one.count_lag_p50_ms:.0f} ms p99 {one.count_lag_p99_ms:.0f} ms  "
                   if one.count_lag_p99_ms is not None else "")
            print(f"round {number} {variant.name:6} {one.rate:9.0f} req/s  p50 {one.p50_ms:7.2f} ms  "
                  f"p99 {one.p99_ms:7.2f} ms  {one.answered} answered  {lag}{one.note}".rstrip(), flush=True)
finally:
    for variant in variants:
        variant.server.stop()


def mean_rate(name: str) -> float | None:
    for variant in variants:
        if variant.name == name:
            return statistics.mean(one.rate for one in variant.rounds)
    return None


def count_lag(variant: Variant) -> tuple[float, float] | None:
    """The rounds' mean p50 and worst p99 count lag, in ms (None: not measured in every round)."""
    p50s = [one.count_lag_p50_ms for one in variant.rounds if one.count_lag_p50_ms is not None]
    p99s = [one.count_lag_p99_ms for one in variant.rounds if one.count_lag_p99_ms is not None]
    if not variant.rounds or len(p99s) < len(variant.rounds):
        return None
    return statistics.mean(p50s), max(p99s)


print()
print(f"{options.rounds} rounds of {options.seconds} s each, wrk -t2 -c{options.connections}, "
      f"tokens over {RECIPIENTS} recipients, SQLite")
print("| variant | req/s | p50 ms | p99 ms | each round, req/s | counts | counted/s, with the catch-up "
      "| count lag p50 / p99 ms |")
print("| --- | ---: | ---: | ---: | --- | --- | ---: | ---: |")
for variant in variants:
    rounds = variant.rounds
    check = ("exact" if all(one.ok for one in rounds) else "WRONG") if variant.counts else "-"
    p50, p99 = statistics.mean(one.p50_ms for one in rounds), statistics.mean(one.p99_ms for one in rounds)
    rates = [one.counted_rate for one in rounds if one.counted_rate is not None]
    lags = count_lag(variant)
    print(f"| {variant.title} | {statistics.mean(one.rate for one in rounds):.0f} | {p50:.2f} | {p99:.2f} "
          f"| {', '.join(f'{one.rate:.0f}' for one in rounds)} | {check} "
          f"| {f'{statistics.mean(rates):.0f}' if rates else '-'} "
          f"| {f'{lags[0]:.0f} / {lags[1]:.0f}' if lags else '-'} |")
for variant in variants:
    for number, one in enumerate(variant.rounds, 1):
        if not one.ok:
            print(f"CHECK FAILED: {variant.name}, round {number}: {one.note}")
if LOG_PATH_MISSING:
    print(f"log path: skipped, {LOG_PATH_MISSING}")
static, bare, logged, wsgi_path = (mean_rate(name) for name in ("static", "bare", "log", "wsgi"))
log_lag = next((count_lag(variant) for variant in variants if variant.name == "log"), None)
print(f"count_lag_p99_ms={log_lag[1]:.0f}" if log_lag else "count_lag_p99_ms=n/a")
print(f"wsgi_to_bare_ratio={wsgi_path / bare:.3f}")
print(f"ratio={logged / static:.3f}" if logged is not None else "ratio=n/a")
sys.exit(1 if failed else 0)
