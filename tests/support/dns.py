"""A real DNS server for the tests (Debian's dnsmasq, which scripts/test installs as dnsmasq-base),
started as a process of the test's own on a loopback port, answering only the records the test gave
it: TXT (SPF, DKIM, DMARC), A and MX.  Every other name under .test does not exist."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import dns.exception
import dns.resolver

from support.ports import free_port
from support.processes import stop_group


class DnsServer:
    """Add records, then ``start``; ``address`` (HOST:PORT, as CORETRACK_DNS_SERVER takes it) is known before."""

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.lines: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="coretrack-dns."))
        self.process: subprocess.Popen[bytes] | None = None

    def txt(self, name: str, text: str) -> DnsServer:
        """A TXT record; text longer than a DNS string (255) is split into several, as a zone file does."""
        strings = [text[start:start + 255] for start in range(0, len(text), 255)] or [""]
        quoted = ",".join('"' + string.replace("\\", "\\\\").replace('"', '\\"') + '"' for string in strings)
        self.lines.append(f"txt-record={name},{quoted}")
        return self

    def a(self, name: str, address: str) -> DnsServer:
        self.lines.append(f"host-record={name},{address}")
        return self

    def mx(self, domain: str, host: str) -> DnsServer:
        self.lines.append(f"mx-host={domain},{host},10")
        return self

    def resolver(self) -> dns.resolver.Resolver:
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers, resolver.port, resolver.lifetime = ["127.0.0.1"], self.port, 5.0
        return resolver

    def start(self) -> DnsServer:
        binary = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        if not os.path.exists(binary):
            raise RuntimeError("dnsmasq is missing: scripts/test installs it (apt-get install dnsmasq-base)")
        conf = self.root / "dnsmasq.conf"
        # Only loopback, only these records (no resolv.conf, no /etc/hosts, no upstream server).
        conf.write_text("\n".join([
            f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces", "no-resolv", "no-hosts",
            "no-poll", "local=/test/", *self.lines, ""]))
        # --no-daemon: in the foreground, no PID file, a child of the test that stop() ends.
        self.process = subprocess.Popen([binary, "--no-daemon", f"--conf-file={conf}"], stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        resolver = self.resolver()
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                resolver.resolve("ready.test", "TXT", lifetime=1)
                return self
            except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
                return self  # it answers
            except dns.exception.DNSException:
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        output = self.process.stdout.read().decode() if self.process.poll() is not None and self.process.stdout else ""
        self.stop()
        raise RuntimeError(f"dnsmasq did not start: {output}")

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process, patience=10)
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)

    def txt_of(self, name: str, timeout: float = 5) -> bytes | None:
        """The TXT record at ``name`` as dkimpy's verify asks for it (its strings joined), or None."""
        try:
            answers = self.resolver().resolve(name.decode() if isinstance(name, bytes) else name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(next(iter(answers)).strings)
