"""The image the mail carries: its public path, the GIF and its headers, and the token a load
of it stands for.  Checked before anything is queued, with no database (see tracker.py).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from . import anonymous, corebos_images, tokens

# The public path of the image, as coreBOS's mail carries it: mail sent by it keeps loading here.
TRACK_ACCESS_PATH = "/modules/Emails/TrackAccess.php"
# 1x1 transparent GIF89a.
GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b"
)
GIF_HEADERS = [
    ("Content-Type", "image/gif"),
    ("Content-Length", str(len(GIF))),
    ("Cache-Control", "no-store, no-cache, must-revalidate, private"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
]


def token_of_query(secret: bytes, query: str) -> str:
    """The token a load of the image stands for, from its query string: the first ``t``; without
    one, the token for coreBOS's ``record``, ``mailid`` and ``app_key`` (see corebos_images.py)."""
    if query.startswith("t=") and "&" not in query and "%" not in query and "+" not in query:
        return query[2:]  # what the mail carries: nothing to decode
    first: dict[str, str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        first.setdefault(key, value)
    if "t" in first or "app_key" not in first:
        return first.get("t", "")
    return corebos_images.token(secret, first.get("record", ""), first.get("mailid", ""), first["app_key"])


def countable(secret: bytes, token: str) -> bool:
    """Whether a hit may be queued for count_hits: a recipient's or an email's anonymous token this
    install signed, or one standing for a coreBOS image (whose key and recipient only count_hits can
    check, against the database)."""
    return (tokens.verify(secret, token) or anonymous.verify(secret, token)
            or corebos_images.parse(token) is not None)

