"""The set of served models: id -> engine (a ``routing.RoutedEngine`` for generation models,
which spreads requests over the model's replicas; embedding models directly)."""

from __future__ import annotations

from collections.abc import Iterable

from modelgrid.core.errors import ModelNotFoundError, ServiceUnavailableError
from modelgrid.engines.base import Engine, ModelCard


class ModelRegistry:
    """Served models by id (one replica each in the embedded default)."""

    def __init__(self, engines: Iterable[Engine] = ()) -> None:
        self._engines: dict[str, Engine] = {e.card.model_id: e for e in engines}
        self._routed: set[str] = set()

    def add(self, engine: Engine) -> None:
        self._engines[engine.card.model_id] = engine

    def sync_routed(self, engines: Iterable[Engine]) -> None:
        """Serve exactly these routed engines (one per deployed model, ``routing.Grid``):
        each replaces what was served under its id, and previously routed models that are
        no longer deployed go away."""
        current = {e.card.model_id: e for e in engines}
        for gone in self._routed - current.keys():
            self._engines.pop(gone, None)
        self._engines.update(current)
        self._routed = set(current)

    def get(self, model_id: str) -> Engine:
        """The engine serving ``model_id``.

        Raises:
            ModelNotFoundError: no such model (404).
            ServiceUnavailableError: known but still loading (503).
        """
        engine = self._engines.get(model_id)
        if engine is None:
            raise ModelNotFoundError(
                f"The model '{model_id}' does not exist or you do not have access to it.",
                param="model",
            )
        if not engine.ready:
            raise ServiceUnavailableError(f"The model '{model_id}' is still loading.")
        return engine

    def cards(self) -> list[ModelCard]:
        return [e.card for e in self._engines.values()]

    def card(self, model_id: str) -> ModelCard:
        engine = self._engines.get(model_id)
        if engine is None:
            raise ModelNotFoundError(f"The model '{model_id}' does not exist.", param="model")
        return engine.card

    def engines(self) -> list[Engine]:
        return list(self._engines.values())

    @property
    def ready(self) -> bool:
        return bool(self._engines) and all(e.ready for e in self._engines.values())


__all__ = ["ModelRegistry"]
