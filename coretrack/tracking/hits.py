"""A hit: one load of the image (or a provider's open), as it is queued, spooled, logged and counted."""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime

from ..models import utcnow

# Control characters: PostgreSQL refuses NUL outright, and one hit the database refuses would
# fail its whole batch and, spooled, every replay of it.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def clean_agent(user_agent: str) -> str:
    """A user agent as the event tables keep it: no control characters, at most 512 characters."""
    return _CONTROL.sub("", user_agent)[:512]


class _HitIds:
    """Hit ids unique across processes and time without a system call per hit: a random prefix
    per process (made again in a forked child) and a counter.  uuid4 reads os.urandom, which lets
    go of the GIL: getting it back behind busy request threads cost the image up to milliseconds."""

    def __init__(self) -> None:
        self._renew()
        os.register_at_fork(after_in_child=self._renew)

    def _renew(self) -> None:
        self._prefix = os.urandom(10).hex()  # 80 random bits
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"  # 32 characters in all


_new_hit_id = _HitIds()


@dataclass(frozen=True)
class Hit:
    token: str
    at: datetime
    ip: str
    user_agent: str
    hit_id: str = field(default_factory=_new_hit_id)
    # A machine-open reason a mail provider gave (e.g. "SendGrid sg_machine_open"); hits from the
    # image carry none, so spool and log lines leave it out.
    provider_verdict: str = ""

    @classmethod
    def now(cls, token: str, ip: str, user_agent: str) -> Hit:
        return cls(token, utcnow(), ip[:45], clean_agent(user_agent))

    def as_line(self) -> str:
        return json.dumps({"token": self.token, "at": self.at.isoformat(), "ip": self.ip,
                           "user_agent": self.user_agent, "hit_id": self.hit_id}) + "\n"

    @classmethod
    def from_line(cls, line: str) -> Hit:
        data = json.loads(line)
        return cls(data["token"], datetime.fromisoformat(data["at"]), data["ip"], data["user_agent"], data["hit_id"])
