"""The cursor query parameters of the list routes, one rule for all of them.

OpenAI's lists page with ``after`` (the last id of the previous page) and, on some
(vector stores and their files), ``before``. Here:

- ``after=`` / ``before=`` with no value is the same as leaving the parameter out (a form or
  a script that always sends the parameter gets the first page, not a 404);
- a cursor that names no item of the list is a 404 naming the cursor parameter (``after`` or
  ``before``), as the admin usage API answers (the control layer raises it);
- a list that cannot page backwards refuses ``before`` with a 400 naming it (OpenAI's own
  lists without ``before``: files, batches, a response's input items), instead of
  ignoring it and answering the first page as if it were the one asked for; the audit log
  (newest first, paged by ``before``) refuses ``after`` alike;
- ``limit`` out of its range is a 400 naming it (the routes' ``Query(ge=…, le=…)``).

The admin API's small lists (workspaces, keys, prices: the control plane answers them whole)
are paged here, by ``page_of``, in the /v1 lists' shape (``first_id``, ``last_id``); an
unknown ``after`` there is a 404 whose code names the kind of item (``workspace_not_found``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Protocol

from fastapi import Depends
from pydantic import AfterValidator

from modelgrid.core.errors import NotFoundError, UnsupportedParameterError
from modelgrid.protocol.admin import ListPage


def _cursor(value: str | None) -> str | None:
    return value or None


# ``after`` / ``before`` as a route parameter: ``None`` when absent or empty.
Cursor = Annotated[str | None, AfterValidator(_cursor)]


def _no_before(before: Cursor = None) -> None:
    """Raises: UnsupportedParameterError: ``before`` given to a list that pages forward only."""
    if before is not None:
        raise UnsupportedParameterError(
            "'before' is not supported on this list: page forward with 'after' (the "
            "previous page's last_id).",
            param="before",
        )


# A route dependency: the list pages with ``after`` only.
ForwardOnly = Annotated[None, Depends(_no_before)]


def _no_after(after: Cursor = None) -> None:
    """Raises: UnsupportedParameterError: ``after`` given to a list that pages backwards."""
    if after is not None:
        raise UnsupportedParameterError(
            "'after' is not supported on this list: it lists the newest items first; page to "
            "older ones with 'before' (the previous page's last_id).",
            param="after",
        )


# A route dependency: the list (newest first) pages with ``before`` only (the audit log).
BackwardOnly = Annotated[None, Depends(_no_after)]


class _Identified(Protocol):
    @property
    def id(self) -> str | int: ...


def page(items: Sequence[_Identified], *, has_more: bool) -> ListPage:
    """``items`` as a list page: ``first_id`` / ``last_id`` their ends' ids as text."""
    return ListPage(
        data=list(items),
        first_id=str(items[0].id) if items else None,
        last_id=str(items[-1].id) if items else None,
        has_more=has_more,
    )


def page_of(items: Sequence[_Identified], *, after: str | None, limit: int, noun: str) -> ListPage:
    """At most ``limit`` of ``items`` (in their order) after the one whose id (as text) is
    ``after``, with ``has_more`` when more follow. ``noun`` names the items (``workspace``):
    the 404's message and code (``workspace_not_found``), as the /v1 lists name theirs.

    Raises:
        NotFoundError: no item has the id ``after`` (``param`` ``after``).
    """
    start = 0
    if after is not None:
        ids = [str(item.id) for item in items]
        if after not in ids:
            raise NotFoundError(
                f"No {noun} '{after[:64]}' in this list.",
                param="after",
                code=f"{noun}_not_found",
            )
        start = ids.index(after) + 1
    return page(items[start : start + limit], has_more=start + limit < len(items))


__all__ = ["BackwardOnly", "Cursor", "ForwardOnly", "page", "page_of"]
