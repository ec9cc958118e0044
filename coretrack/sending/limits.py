"""How large an email may be: what no mail client would show anyway, refused when it is composed.

Gmail shows the first 102 kB of a message's HTML and hides the rest behind "View entire message"
(the tracking image and the unsubscribe link at the end included); other clients slow down or
give up on far less.  A body five times that, or a thousand links (the busiest newsletters have a
few hundred), is no campaign anyone reads: such an email costs the worker (every link is rewritten
and signed for each recipient) without reaching a reader.  The form, the JSON API, the command line
and templates all refuse it through ``compose.check_message``; the worker refuses a recipient whose
merge fields fill the HTML past the size.
"""

from __future__ import annotations

from ..tracking import clicks

MAX_BODY_BYTES = 500_000  # each body (HTML, text), UTF-8
MAX_LINKS = 1_000  # <a href> in the HTML body
# How much of one form field is read (Werkzeug's default is 500,000 bytes): well above the body
# limit, so that a body over it gets the form's own error naming the limit, not a bare 413.
MAX_FORM_FIELD_BYTES = 4 * MAX_BODY_BYTES


def body_problem(body: str, label: str) -> str | None:
    """Why this body is too large to send, or None."""
    size = len(body.encode("utf-8", errors="replace"))
    if size <= MAX_BODY_BYTES:
        return None
    return (f"the {label} is {size:,} bytes; at most {MAX_BODY_BYTES:,} are allowed "
            "(mail clients clip far smaller ones: Gmail shows only the first 102 kB)")


def check_bodies(html: str, text: str, errors: dict[str, str]) -> None:
    """The size and link count limits, added to ``errors`` by field (``html``, ``text``)."""
    for field, label, body in (("html", "HTML body", html), ("text", "text body", text)):
        if field not in errors and (problem := body_problem(body or "", label)):
            errors[field] = problem
    if "html" not in errors and (count := clicks.link_count(html or "")) > MAX_LINKS:
        errors["html"] = (f"the HTML body has {count:,} links; an email may have at most {MAX_LINKS:,} "
                          "(each is tracked and signed for every recipient; no newsletter comes close)")
