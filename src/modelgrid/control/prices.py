"""The price book: append-only entries per model (and optionally region), in micro-units of a
currency per 1M tokens (the admin API, the CLI and the console call this).

An entry names a served model and, if regional, a region of the topology
(``control.inventory``): a price for a model nobody serves would silently never apply. It
cannot take effect in the past (more than a minute ago: clock skew), so a price change never
alters what a past request cost. After a change the ``prices_changed`` hook reloads the
price book of this process; the change bumps the ``prices`` counter in its transaction, and
every gateway sharing the database reloads its book when it sees it move
(``control.sync``: within a second), or at the latest every ``metering.prices_refresh_s``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from modelgrid.control.area import Area
from modelgrid.core.errors import InvalidRequestError
from modelgrid.protocol.admin import PriceCreate, PriceObject
from modelgrid.storage import control_state
from modelgrid.storage import repositories as repo
from modelgrid.storage.models import Price
from modelgrid.tenancy import audit
from modelgrid.tenancy.audit import aware

BACKDATE_TOLERANCE = timedelta(seconds=60)  # clock skew between an admin and the server


def price_object(p: Price) -> PriceObject:
    return PriceObject(
        id=p.id,
        model=p.model,
        region=p.region,
        currency=p.currency,
        input_micros_per_1m=p.input_micros_per_1m,
        cached_input_micros_per_1m=p.cached_input_micros_per_1m,
        output_micros_per_1m=p.output_micros_per_1m,
        effective_from=aware(p.effective_from),
        created_at=aware(p.created_at),
    )


class Prices(Area):
    """Price book administration.

    Args:
        sessions: The database.
        inventory: What exists now (models, regions).
        hooks: Told after each change.
    """

    async def add(self, body: PriceCreate, *, actor: str) -> PriceObject:
        """Append a price book entry (never an update of an existing one).

        Raises:
            InvalidRequestError: ``effective_from`` in the past (more than a minute ago): a new
                price may not reach back to requests already billed; a model nobody serves
                or a region not in the topology.
        """
        now = datetime.now(UTC)
        effective = now if body.effective_from is None else aware(body.effective_from)
        if effective < now - BACKDATE_TOLERANCE:
            raise InvalidRequestError(
                "effective_from lies in the past; prices are append-only and never change what "
                "past requests cost.",
                param="effective_from",
            )
        inv = self._inventory()
        inv.check_models([body.model], "model")
        inv.check_regions(None if body.region is None else [body.region], "region")
        cached = body.cached_input_micros_per_1m
        entry = Price(
            model=body.model,
            region=body.region,
            currency=body.currency,
            input_micros_per_1m=body.input_micros_per_1m,
            cached_input_micros_per_1m=body.input_micros_per_1m if cached is None else cached,
            output_micros_per_1m=body.output_micros_per_1m,
            effective_from=effective,
            created_at=now,
        )
        async with self._sessions() as session, session.begin():
            await repo.add_price(session, entry)
            obj = price_object(entry)
            await audit.record(
                session,
                actor=actor,
                action="price.create",
                target=f"price:{entry.id}",
                details=obj.model_dump(exclude={"object", "id", "created_at"}),
            )
            await control_state.bump(session, control_state.PRICES)
        await self._hooks.prices_changed()
        return obj

    async def list(self, model: str | None = None) -> list[PriceObject]:
        async with self._sessions() as session:
            return [price_object(p) for p in await repo.list_prices(session, model)]


__all__ = ["Prices", "price_object"]
