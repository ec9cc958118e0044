"""Pagination of a SELECT, for lists and the API."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from urllib.parse import urlencode

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session


@dataclass
class Page:
    items: list
    number: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, ceil(self.total / self.per_page))

    def query(self, request, number: int) -> str:
        """The current query string with another page number."""
        args = [(key, value) for key, value in request.args.items(multi=True) if key not in ("page", "notice", "ns")]
        return urlencode([*args, ("page", str(number))])


# Far past any real list; keeps OFFSET inside a 64-bit integer whatever the query string says.
MAX_PAGE = 1_000_000


def page_number(raw: str | None) -> int:
    try:
        return min(MAX_PAGE, max(1, int(raw or 1)))
    except ValueError:
        return 1


def paginate(session: Session, statement: Select, number: int, per_page: int) -> Page:
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0
    pages = max(1, ceil(total / per_page))
    number = min(max(1, number), pages)
    items = list(session.scalars(statement.limit(per_page).offset((number - 1) * per_page)))
    return Page(items=items, number=number, per_page=per_page, total=total)
