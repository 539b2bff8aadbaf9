"""Listing pages: offset pagination with an exact count (cheap at the tens of thousands of rows the
portal's lists reach) and safe substring filters."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Select, func, select

from portal.extensions import db

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    number: int
    per_page: int
    total: int

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.number > 1

    @property
    def has_next(self) -> bool:
        return self.number < self.pages


def paginate(query: Select, page: int, per_page: int, scalars: bool = True) -> Page:
    """One page of ``query``; with ``scalars=False`` the items are the result's row tuples."""
    page = max(1, page)
    total = db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery())) or 0
    result = db.session.execute(query.limit(per_page).offset((page - 1) * per_page))
    items = list(result.scalars() if scalars else result.tuples())
    return Page(items=items, number=page, per_page=per_page, total=total)


def contains(column, text: str):
    """A case-insensitive substring filter; the user's '%' and '_' match themselves."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return column.ilike(f"%{escaped}%", escape="\\")
