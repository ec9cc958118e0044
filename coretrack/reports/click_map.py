"""The click map: an email's HTML as it was sent (before its links were rewritten per recipient), each
stored link badged with its share of the likely-human clicks (and all clicks in its title).

The badges are added here, on the server, as inert markup (a <mark> with an inline style: no script),
and the page shows the result in its sandboxed frame like the message itself."""

from __future__ import annotations

import html as html_lib

from ..tracking.clicks import stored_link_tags
from .report import Row

BADGE_STYLE = ("background:#fde68a;color:#1f2937;font:bold 11px/1.4 system-ui,sans-serif;padding:0 4px;"
               "margin-right:3px;border:1px solid #b45309;border-radius:3px;text-decoration:none")


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def badge(row: Row) -> str:
    """The badge of a link row (reports/links.py): its share of the likely-human clicks."""
    title = (f"Link {row['link']}: {row['human_clicks']} likely-human clicks "
             f"({_percent(row['human_share'])} of {row['total_human_clicks']}); "
             f"{row['clicks']} clicks in all ({_percent(row['share'])} of {row['total_clicks']}); "
             f"{row['human_people']} people clicked it")
    return (f'<mark class="coretrack-click-badge" data-link="{row["link"]}" style="{BADGE_STYLE}" '
            f'title="{html_lib.escape(title)}">{_percent(row["human_share"])}</mark>')


def click_map(html: str, rows: list[Row]) -> str:
    """``html`` with each stored link's badge just before it (``rows``: link_rows, in order)."""
    places = stored_link_tags(html, [row["url"] for row in rows])
    parts, done = [], 0
    for place, row in zip(places, rows, strict=False):
        parts += [html[done:place], badge(row)]
        done = place
    return "".join(parts) + html[done:]
