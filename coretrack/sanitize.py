"""HTML that people paste or type, made safe to store, show and send: no script, no event handler,
no javascript: or data: link, no form, no style sheet; a picture uploaded in the editor is kept as
an <img>'s data: URL (sent as an inline part: sending/mime.py).  nh3 (Rust's ammonia) does the
parsing and the cleaning; this module only says what email HTML may keep."""

from __future__ import annotations

import re

import nh3

# Inline styles are how email HTML is laid out; only these properties of them are kept (nothing
# that positions content over the page or fetches anything).
STYLE_PROPERTIES = frozenset({
    "background-color", "border", "border-bottom", "border-collapse", "border-color", "border-left",
    "border-radius", "border-right", "border-spacing", "border-style", "border-top", "border-width", "color",
    "font", "font-family", "font-size", "font-style", "font-weight", "height", "letter-spacing", "line-height",
    "margin", "margin-bottom", "margin-left", "margin-right", "margin-top", "max-width", "min-width", "padding",
    "padding-bottom", "padding-left", "padding-right", "padding-top", "text-align", "text-decoration",
    "text-transform", "vertical-align", "white-space", "width",
})
_ATTRIBUTES = {tag: set(names) for tag, names in nh3.ALLOWED_ATTRIBUTES.items()}
_ATTRIBUTES.setdefault("*", set()).update({"style", "align", "valign", "width", "height", "bgcolor"})
_ATTRIBUTES.setdefault("img", set()).update({"alt", "src", "width", "height", "title"})
_ATTRIBUTES.setdefault("a", set()).update({"href", "title"})
_ATTRIBUTES.setdefault("td", set()).update({"colspan", "rowspan"})
_ATTRIBUTES.setdefault("th", set()).update({"colspan", "rowspan"})
# Links and images on the web, and mail and phone links; nothing that runs or embeds.
URL_SCHEMES = frozenset({"http", "https", "mailto", "tel"})
# An image uploaded in the editor: the only data: URL kept, and only as an <img>'s source.
INLINE_IMAGE = re.compile(r"data:image/(png|jpeg|gif|webp);base64,([A-Za-z0-9+/]+={0,2})")


def _only_inline_images(tag: str, attribute: str, value: str) -> str | None:
    if value[:5].lower() != "data:":
        return value
    return value if tag == "img" and attribute == "src" and INLINE_IMAGE.fullmatch(value) else None


def clean_html(html: str) -> str:
    """``html`` with only what email HTML may keep."""
    return nh3.clean(html, attributes=_ATTRIBUTES, url_schemes=set(URL_SCHEMES) | {"data"},
                     attribute_filter=_only_inline_images,
                     filter_style_properties=set(STYLE_PROPERTIES), link_rel="noopener noreferrer")
