"""Pagination of a SELECT, for lists and the API."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil
from typing import Generic, TypeVar

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from .validation import whole_number

T = TypeVar("T")


@dataclass
class Page(Generic[T]):
    items: list[T]
    number: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, ceil(self.total / self.per_page))


# Far past any real list; keeps OFFSET inside a 64-bit integer whatever the query string says.
MAX_PAGE = 1_000_000
MAX_PER_PAGE = 200  # the API's per_page


def page_number(raw: str | None) -> int:
    """The page a link asks for: 1 for anything but a number (a page past the last shows the last)."""
    try:
        return whole_number(raw, 1, MAX_PAGE, clamp=True)
    except ValueError:
        return 1


def per_page(raw: str | None, errors: dict[str, str], default: int = 50) -> int:
    """The API's ``per_page``; a bad one is an error for its field (and ``default`` is returned)."""
    try:
        return whole_number(raw, 1, MAX_PER_PAGE) if raw else default
    except ValueError as error:
        errors["per_page"] = str(error)
        return default


def paginate(session: Session, statement: Select[T], number: int, per_page: int) -> Page[T]:
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0
    pages = max(1, ceil(total / per_page))
    number = min(max(1, number), pages)
    items = list(session.scalars(statement.limit(per_page).offset((number - 1) * per_page)))
    return Page(items=items, number=number, per_page=per_page, total=total)
