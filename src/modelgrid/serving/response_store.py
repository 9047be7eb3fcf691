"""Stored responses of the Responses API: saved durably, read back, chained, deleted, expired.

Every response belongs to one workspace and is stored where this gateway's database is, in
this gateway's region: storing one (``store: true``, the default) needs a key allowed in
that region (else 403 ``region_not_allowed``, before anything runs; ``store: false`` needs
nothing). Reading it back needs the same workspace and a key still allowed in the region it
is stored in: another workspace's id, a key no longer allowed there, an expired
(``responses.ttl_s``, 30 days) or a deleted response are the same 404 ``response_not_found``,
naming the id — never silently ignored. A chain (``previous_response_id``) is resolved
whole, in one query: every link must be readable, else the 404 names the missing one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from modelgrid.config import ResponsesSettings
from modelgrid.core.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from modelgrid.core.types import RoutingHints
from modelgrid.storage import db
from modelgrid.storage import response_rows as rows
from modelgrid.storage.models import StoredResponse
from modelgrid.tenancy.audit import aware
from modelgrid.tenancy.lookup import Sessions
from modelgrid.tenancy.service import Principal

PURGE_PAGE = 500


@dataclass(frozen=True, slots=True)
class History:
    """What a chain gives the next turn.

    Attributes:
        items: Every earlier turn's input items then output items, oldest turn first.
        replica_id: The replica that ran the newest response (prefix-cache affinity).
    """

    items: list[dict[str, Any]]
    replica_id: str | None


@dataclass(frozen=True, slots=True)
class NewResponse:
    """A finished response to store (``response``: the object as returned)."""

    response: dict[str, Any]
    input_items: list[dict[str, Any]]
    replica_id: str | None


def _not_found(response_id: str, param: str | None = None) -> NotFoundError:
    shown = response_id if len(response_id) <= 80 else response_id[:79] + "…"
    return NotFoundError(
        f"Response with id '{shown}' not found (unknown, expired, deleted, or not visible "
        "to this API key).",
        param=param,
        code="response_not_found",
    )


class ResponseStore:
    """Args:
    sessions: The database.
    settings: Retention and the chain limit (``settings.responses``).
    home: This gateway's region and its jurisdiction code ("" if none), read on each call
        (the topology may change).
    """

    def __init__(
        self,
        sessions: Sessions,
        settings: ResponsesSettings,
        home: Callable[[], tuple[str, str]],
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self._home = home

    def _allows(self, principal: Principal, region: str, jurisdiction: str | None) -> bool:
        hints = RoutingHints(
            allowed_regions=principal.allowed_regions,
            allowed_jurisdictions=principal.allowed_jurisdictions,
        )
        if jurisdiction is None:  # a row's region: its jurisdiction as the topology says now
            home, home_jurisdiction = self._home()
            jurisdiction = home_jurisdiction if region == home else ""
        return hints.allows(region, jurisdiction)

    def storage_region(self, principal: Principal) -> str:
        """Where a response of ``principal`` would be stored: this gateway's region.

        Raises:
            PermissionDeniedError: the key may not keep data there (``region_not_allowed``).
        """
        region, jurisdiction = self._home()
        if not self._allows(principal, region, jurisdiction):
            raise PermissionDeniedError(
                f"Responses are stored in this gateway's region '{region}', which this API "
                "key may not use; send 'store': false.",
                code="region_not_allowed",
                param="store",
            )
        return region

    def _readable(self, principal: Principal, row: StoredResponse, now: datetime) -> bool:
        return aware(row.expires_at) > now and self._allows(principal, row.region, None)

    async def history(self, principal: Principal, response_id: str) -> History:
        """The conversation so far, for a request with ``previous_response_id``.

        Raises:
            NotFoundError: a link of the chain is unknown, expired, deleted or not visible
                (404 ``response_not_found``, naming it).
            InvalidRequestError: the chain is longer than ``responses.max_chain``.
        """
        limit = self._settings.max_chain
        now = datetime.now(UTC)
        async with self._sessions() as session:
            links = await rows.chain(session, principal.workspace_id, response_id, limit + 1)
        if not links:
            raise _not_found(response_id, "previous_response_id")
        if len(links) > limit:
            raise InvalidRequestError(
                f"The 'previous_response_id' chain is longer than {limit} responses.",
                param="previous_response_id",
                code="chain_too_long",
            )
        for row in links:
            if not self._readable(principal, row, now):
                raise _not_found(row.id, "previous_response_id")
        missing = links[-1].previous_response_id
        if missing is not None:
            raise _not_found(missing, "previous_response_id")
        items: list[dict[str, Any]] = []
        for row in reversed(links):
            items.extend(row.input_items)
            items.extend(row.response.get("output") or ())
        return History(items, links[0].replica_id)

    async def save(self, principal: Principal, new: NewResponse, region: str) -> None:
        """Store a finished response (its expiry: now + ``responses.ttl_s``)."""
        now = datetime.now(UTC)
        body = new.response
        row = StoredResponse(
            id=body["id"],
            workspace_id=principal.workspace_id,
            api_key_id=principal.key_id,
            region=region,
            model=body["model"],
            status=body["status"],
            previous_response_id=body.get("previous_response_id"),
            replica_id=new.replica_id,
            response=body,
            input_items=new.input_items,
            created_at=now,
            expires_at=now + timedelta(seconds=self._settings.ttl_s),
        )

        async def write() -> None:
            async with self._sessions.begin() as session:
                await rows.add_response(session, row)

        await db.finish_despite_cancel(write())

    async def _row(self, principal: Principal, response_id: str) -> StoredResponse:
        async with self._sessions() as session:
            row = await rows.get_response(session, principal.workspace_id, response_id)
        if row is None or not self._readable(principal, row, datetime.now(UTC)):
            raise _not_found(response_id)
        return row

    async def get(self, principal: Principal, response_id: str) -> dict[str, Any]:
        """The stored response object.

        Raises:
            NotFoundError: unknown, expired, deleted or not visible (404).
        """
        return (await self._row(principal, response_id)).response

    async def delete(self, principal: Principal, response_id: str) -> dict[str, Any]:
        """Delete it; OpenAI's deletion object.

        Raises:
            NotFoundError: unknown, expired, already deleted or not visible (404).
        """
        await self._row(principal, response_id)
        async with self._sessions.begin() as session:
            if not await rows.delete_response(session, principal.workspace_id, response_id):
                raise _not_found(response_id)
        return {"id": response_id, "object": "response", "deleted": True}

    async def input_items(
        self,
        principal: Principal,
        response_id: str,
        *,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> dict[str, Any]:
        """The items the response was generated from (the chain's earlier turns' inputs and
        outputs, then its own inputs), as a list page (``data``, ``first_id``, ``last_id``,
        ``has_more``; ``order`` ``desc``, the reference's default, is newest first).

        Raises:
            NotFoundError: the response or a link of its chain is not readable (404), or
                ``after`` is not one of its items.
        """
        row = await self._row(principal, response_id)
        items = list(row.input_items)
        if row.previous_response_id is not None:
            history = await self.history(principal, row.previous_response_id)
            items = history.items + items
        if order == "desc":
            items.reverse()
        start = 0
        if after is not None:
            ids = [item.get("id") for item in items]
            if after not in ids:
                raise NotFoundError(
                    f"No input item with id '{after[:80]}' in this response.",
                    param="after",
                    code="input_item_not_found",
                )
            start = ids.index(after) + 1
        page = items[start : start + limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": start + limit < len(items),
        }

    async def purge_expired(self) -> int:
        """Delete responses past their expiry, in pages; how many were deleted."""
        total = 0
        while True:
            async with self._sessions.begin() as session:
                ids = await rows.expired_ids(session, datetime.now(UTC), PURGE_PAGE)
                total += await rows.delete_ids(session, ids)
            if len(ids) < PURGE_PAGE:
                return total


__all__ = ["History", "NewResponse", "ResponseStore"]
