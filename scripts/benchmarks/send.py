"""Bulk send through the real worker against the SMTP ceiling; run by scripts/bench-send.

An aiosmtpd server in its own process accepts and counts messages.  For each variant (a 6 kB
HTML email, then the same with a 50 kB attachment) the ceiling is the same message bytes handed
to that server process by coretrack's own SMTP client, with no database, over as many
connections as the send uses; the send is `coretrack worker --once` on a fresh SQLite database,
run as scripts/run runs it (its own process, only its config file in the environment).  Both
rates are taken at the server, from the first message's arrival to the last's, so the worker's
start-up does not count.  The worker's peak RSS is the kernel's high-water mark (VmHWM).

Run: scripts/bench-send [--recipients N] [--connections C] [--rounds N]
"""

from __future__ import annotations

import argparse
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SERVE = "serve"
STATS, RESET = "stats@bench.invalid", "reset@bench.invalid"
HTML = ("<html><body>"
        + "<p>Dear customer, here is this month’s news about our products and services.</p>\n" * 75
        + "</body></html>")  # about 6 kB
ATTACHMENT = ("brochure.pdf", "application/pdf", secrets.token_bytes(50_000))


def serve() -> None:
    """The SMTP server process: accepts everything, counts it, and answers RCPT TO:<stats@…>
    with the count and the arrival times of the first and the last message."""
    from aiosmtpd.controller import Controller

    class Counting:
        def __init__(self) -> None:
            self.count, self.first, self.last = 0, 0.0, 0.0

        async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: ANN001
            if address == STATS:
                return f"550 {self.count} {self.first!r} {self.last!r}"
            if address == RESET:
                self.count, self.first, self.last = 0, 0.0, 0.0
                return "550 reset"
            envelope.rcpt_tos.append(address)
            return "250 OK"

        async def handle_DATA(self, server, session, envelope):  # noqa: ANN001
            now = time.monotonic()
            if not self.count:
                self.first = now
            self.count, self.last = self.count + 1, now
            return "250 Message accepted"

    with socket.socket() as probe:  # a free port (the Controller checks it is up by connecting to it)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    controller = Controller(Counting(), hostname="127.0.0.1", port=port)
    controller.start()
    print(controller.port, flush=True)
    sys.stdin.read()  # until the benchmark closes our stdin
    controller.stop()


class SmtpServerProcess:
    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, __file__, SERVE], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def _ask(self, address: str) -> str:
        import smtplib

        with smtplib.SMTP("127.0.0.1", self.port) as client:
            client.ehlo()
            client.mail("bench@example.test")
            return client.rcpt(address)[1].decode()

    def reset(self) -> None:
        self._ask(RESET)

    def rate(self) -> tuple[int, float]:
        """Messages taken since the reset, and their rate from the first arrival to the last."""
        count, first, last = self._ask(STATS).split()
        count_ = int(count)
        return count_, (count_ - 1) / (float(last) - float(first)) if count_ > 1 else 0.0

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


def high_water_kb(pid: int) -> int:
    """VmHWM of a running process, in kB (0 once it has ended)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    return next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench-send")
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--connections", type=int, default=1, help="the smtp_connections setting (1 to 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="sends of each message, each between two ceilings (at least 1)")
    options = parser.parse_args()
    if options.rounds < 1:
        parser.error("--rounds: at least 1")

    from sqlalchemy import func, insert, select

    from coretrack.config import Config, SmtpServer
    from coretrack.db import make_engine, make_session_factory
    from coretrack.models import Email, Recipient, User
    from coretrack.sending.compose import compose, prepare
    from coretrack.sending.messages import message_template
    from coretrack.sending.smtp import SmtpSender
    from coretrack.settings import SettingsService
    from coretrack.tracking import tokens

    venv_bin = Path(sys.executable).parent
    home = Path(tempfile.mkdtemp(prefix="coretrack-bench-send-"))
    env_file = home / "coretrack.env"
    env_file.write_text(f"CORETRACK_HOME={home}\nCORETRACK_PUBLIC_URL=https://crm.example.test/crm\n")
    # As scripts/run starts the worker: nothing in its environment but the config file.
    clean_env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(home),
                 "CORETRACK_CONFIG": str(env_file)}
    subprocess.run([venv_bin / "coretrack", "db", "upgrade"], check=True, capture_output=True,
                   env={**clean_env, "CORETRACK_ADMIN_PASSWORD": "bench-password-1"})
    config = Config.from_env({"CORETRACK_CONFIG": str(env_file)})
    engine = make_engine(config.database_url)
    Session = make_session_factory(engine)
    server = SmtpServerProcess()

    def queue(subject: str, attachments: list[tuple[str, str, bytes]]) -> int:
        """An email to ``options.recipients`` addresses (bulk-inserted past the first)."""
        with Session() as session:
            prepared = prepare(session, to=["r0000000@example.test"], subject=subject, html=HTML,
                               attachments=attachments)
            sender = session.scalar(select(User).where(User.name == "admin"))
            assert sender is not None
            email_id = compose(session, config, sender, prepared).email.id
            secret = config.secret_key()
            for start in range(1, options.recipients, 20_000):
                stop = min(start + 20_000, options.recipients)
                session.execute(insert(Recipient), [
                    {"email_id": email_id, "address": f"r{number:07}@example.test",
                     "token": tokens.new_token(secret), "status": "pending"} for number in range(start, stop)])
                session.commit()
        return email_id

    def ceiling(email_id: int) -> float:
        """The same bytes the worker sends, from coretrack's SMTP client with no database work."""
        with Session() as session:
            email = session.get(Email, email_id)
            assert email is not None
            template = message_template(session, config, email)
            rows = session.execute(select(Recipient.address, Recipient.name, Recipient.token)
                                   .where(Recipient.email_id == email_id).limit(500)).all()
            from_address = email.from_address
        messages = [(address, template.render(address, name, token)) for address, name, token in rows]
        count = min(options.recipients, 2000)
        server.reset()

        def connection(share: range) -> None:
            with SmtpSender(SmtpServer("127.0.0.1", server.port)) as client:
                for number in share:
                    address, message = messages[number % len(messages)]
                    client.send(from_address, address, message)

        threads = [threading.Thread(target=connection, args=(range(start, count, options.connections),))
                   for start in range(options.connections)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        received, rate = server.rate()
        assert received == count, (received, count)
        return rate

    def send(email_id: int) -> tuple[float, int]:
        """`coretrack worker --once`: its rate at the server and its peak RSS in kB."""
        server.reset()
        peak_kb = 0
        with open(home / "worker.log", "w") as log:
            worker = subprocess.Popen([venv_bin / "coretrack", "worker", "--once"], env=clean_env, stdout=log,
                                      stderr=subprocess.STDOUT)
            # The kernel's high-water mark of the worker's own memory (wait4's ru_maxrss would also
            # count this process's pages, shared with the child between fork and exec).
            while worker.poll() is None:
                peak_kb = max(peak_kb, high_water_kb(worker.pid))
                time.sleep(0.05)
        if worker.returncode:
            raise SystemExit(f"the worker failed:\n{(home / 'worker.log').read_text()}")
        with Session() as session:
            sent = session.scalar(select(func.count()).where(Recipient.email_id == email_id,
                                                             Recipient.status == "sent"))
        received, rate = server.rate()
        assert sent == received == options.recipients, (sent, received, options.recipients)
        return rate, peak_kb

    try:
        with Session() as session:
            SettingsService(session, config).update(
                {"smtp_host": "127.0.0.1", "smtp_port": str(server.port), "smtp_security": "none",
                 "smtp_connections": str(options.connections), "from_address": "crm@example.test"},
                user_name="bench")
        rows = []
        for label, attachments in (("6 kB HTML", []), ("6 kB HTML + 50 kB attachment", [ATTACHMENT])):
            # Ceilings and sends in turn, the best of each compared: a moment of other load on
            # the machine costs either side a round, not the ratio.  One more ceiling than sends:
            # the ratio errs against the send.
            email_id = queue(label, attachments)
            ceilings, sends, peak_kb = [ceiling(email_id)], [], 0
            for round_number in range(options.rounds):
                if round_number:
                    email_id = queue(label, attachments)  # the worker sends each email once
                rate, peak = send(email_id)
                sends.append(rate)
                peak_kb = max(peak_kb, peak)
                ceilings.append(ceiling(email_id))
            print(f"{label}: send {', '.join(f'{rate:.0f}' for rate in sends)} msg/s; "
                  f"ceiling {', '.join(f'{rate:.0f}' for rate in ceilings)} msg/s", flush=True)
            rows.append((label, max(sends), max(ceilings), max(sends) / max(ceilings), peak_kb))
    finally:
        server.stop()
        engine.dispose()
        subprocess.run(["rm", "-rf", str(home)], check=False)

    print(f"{options.recipients} recipients, {options.connections} SMTP connection(s), SQLite, "
          f"one aiosmtpd server process, best of {options.rounds} sends and {options.rounds + 1} ceilings")
    print("| message | send msg/s | ceiling msg/s | ratio | worker peak RSS |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, rate, best, ratio, peak_kb in rows:
        print(f"| {label} | {rate:.0f} | {best:.0f} | {ratio:.2f} | {peak_kb / 1024:.0f} MB |")
    print(f"ratio={min(row[3] for row in rows):.2f}")


if __name__ == "__main__":
    if sys.argv[1:] == [SERVE]:
        serve()
    else:
        main()
