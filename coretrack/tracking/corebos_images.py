"""The images inside email coreBOS sent before the switch, still counted.

coreBOS put ``modules/Emails/TrackAccess.php?record=<crmid>&mailid=<mailid>&app_key=<key>`` into
its mail: the path coretrack serves.  Its identity is not signed (the ids are sequential and the
key is one for the whole install), so such a hit counts only for a recipient imported from
coreBOS with that (mailid, crmid) pair, only while the old install's key is set in the
configuration editor and matches, and only while legacy counting is on; its events are marked
legacy.

The key is kept as a digest (``key_digest``), never in clear: a hit's key is digested the same
way where the hit is read, so the hit log, the queue and the spool never carry it either.  A
hit's token is then ``corebos:<mailid>:<crmid>:<digest>``, which ``counting.count_hits`` resolves
to the imported recipient's own token.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import NamedTuple

from ..db import MAX_ID

PREFIX = "corebos:"
# coreBOS's application_unique_key is an md5 hex digest; anything much longer is not one.
MAX_KEY_LENGTH = 200


class LegacyHit(NamedTuple):
    mailid: int
    crmid: int
    key_digest: str


def key_digest(secret: bytes, app_key: str) -> str:
    return hmac.new(secret, b"coretrack-corebos-app-key:" + app_key.encode("utf-8", "replace"),
                    hashlib.sha256).hexdigest()


def token(secret: bytes, record: str, mailid: str, app_key: str) -> str:
    """The token for coreBOS's image arguments; "" when they cannot name an imported recipient."""
    if not (_id(record) and _id(mailid) and 0 < len(app_key) <= MAX_KEY_LENGTH):
        return ""
    return f"{PREFIX}{int(mailid)}:{int(record)}:{key_digest(secret, app_key)}"


def is_token(value: str) -> bool:
    return value.startswith(PREFIX)


def parse(value: str) -> LegacyHit | None:
    """The parts of a token ``token`` made (from a spool line, perhaps edited): None if it is not one."""
    if not is_token(value):
        return None
    mailid, _, rest = value[len(PREFIX):].partition(":")
    crmid, _, digest = rest.partition(":")
    if not (_id(mailid) and _id(crmid) and len(digest) == 64):
        return None
    return LegacyHit(int(mailid), int(crmid), digest)


def key_matches(hit: LegacyHit, stored_digest: str) -> bool:
    return bool(stored_digest) and hmac.compare_digest(hit.key_digest, stored_digest)


def _id(value: str) -> bool:
    # ASCII digits only (str.isdigit takes other scripts' digits), short enough for int(), a row id's range.
    return len(value) <= 10 and value.isascii() and value.isdigit() and 0 < int(value) <= MAX_ID
