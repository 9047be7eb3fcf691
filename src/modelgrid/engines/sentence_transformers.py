"""The in-process sentence-transformers embedding engine (PyTorch), one replica per model.

The only module that imports ``sentence_transformers`` (and through it ``torch``). The model
loads from a local directory with ``local_files_only=True``, so nothing is fetched from a hub.
Each replica owns one worker thread: a request's inputs are tokenized there (``count_tokens``:
exact usage and the length check) and then encoded there in one ``encode`` call (which sorts
them by length and runs ``batch_size`` per forward pass), while the event loop stays free;
requests queue for the thread (``queue_depth``). Vectors are L2-normalised float32, returned
as little-endian bytes (see ``engines.embedding.Embeddings``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import torch
from sentence_transformers import SentenceTransformer

from modelgrid.core.errors import EngineError, InvalidRequestError, ModelgridError
from modelgrid.engines.base import ModelCard
from modelgrid.engines.embedding import (
    EMBEDDINGS,
    EmbeddingOnly,
    Embeddings,
)

_T = TypeVar("_T")


class SentenceTransformersEngine(EmbeddingOnly):
    """A sentence-transformers replica of one local model directory.

    Args:
        model_id: Served id.
        model_path: Directory with ``modules.json``, the weights and the tokenizer.
        dimensions: Expected vector length (checked at load).
        owned_by: ``owned_by`` shown in ``/v1/models``.
        batch_size: Inputs per forward pass inside one ``encode`` call.
        threads: PyTorch intra-op threads (0 = torch's default); torch's pool is per process.
        device: Torch device (``None``: sentence-transformers picks, e.g. ``cuda`` if present).
    """

    def __init__(
        self,
        model_id: str,
        model_path: Path,
        *,
        dimensions: int,
        owned_by: str = "sentence-transformers",
        batch_size: int = 64,
        threads: int = 0,
        device: str | None = None,
    ) -> None:
        self.card = ModelCard(
            model_id=model_id,
            owned_by=owned_by,
            created=int(time.time()),
            context_length=0,  # the model's max_seq_length once loaded
            capabilities=frozenset({EMBEDDINGS}),
        )
        self._path = model_path
        self._dimensions = dimensions
        self._batch_size = batch_size
        self._threads = threads
        self._device = device
        self._model: SentenceTransformer | None = None
        self._tokenizer: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"st-{model_id}")
        self._waiting = 0
        self._load_lock = asyncio.Lock()

    @property
    def dimensions(self) -> int:
        return self._dimensions

    @property
    def max_input_tokens(self) -> int:
        return self.card.context_length

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def queue_depth(self) -> int:
        return self._waiting

    async def start(self) -> None:
        async with self._load_lock:
            if self._model is None:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._executor, self._load)

    def _load(self) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no progress bars
        if self._threads:
            torch.set_num_threads(self._threads)
        model = SentenceTransformer(str(self._path), device=self._device, local_files_only=True)
        dims = model.get_embedding_dimension()
        if dims != self._dimensions:
            raise EngineError(
                f"{self._path} gives {dims}-dimensional vectors, expected {self._dimensions}."
            )
        self._tokenizer = model.tokenizer
        window = model.max_seq_length
        if window is None:
            raise EngineError(f"{self._path} declares no maximum sequence length.")
        self.card = dataclasses.replace(self.card, context_length=int(window))
        self._model = model

    # -- generation is not this engine's job --

    # -- embeddings --

    async def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        vocab = len(self._tokenizer)
        for i, ids in enumerate(token_ids):
            bad = next((t for t in ids if not 0 <= t < vocab), None)
            if bad is not None:
                raise InvalidRequestError(
                    f"Token id {bad} is outside this model's vocabulary (0..{vocab - 1}).",
                    param=f"input[{i}]",
                )
        texts = [self._tokenizer.decode(list(ids), skip_special_tokens=True) for ids in token_ids]
        for i, text in enumerate(texts):
            if not text.strip():
                raise InvalidRequestError("These token ids decode to no text.", param=f"input[{i}]")
        return texts

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return await self._run(self._count, list(texts))

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        return await self._run(self._embed, list(texts))

    async def _run(self, fn: Callable[[list[str]], _T], texts: list[str]) -> _T:
        """``fn(texts)`` on the replica's worker thread (queued behind earlier calls)."""
        if self._model is None:
            raise EngineError("The model is not loaded yet.")
        loop = asyncio.get_running_loop()
        self._waiting += 1
        started = [False]

        def job() -> _T:
            started[0] = True
            loop.call_soon_threadsafe(self._dequeued)
            return fn(texts)

        future = loop.run_in_executor(self._executor, job)
        try:
            return await future
        except (ModelgridError, UnicodeError):
            raise  # UnicodeError: an unpaired surrogate in the input, a 400 at the edge
        except Exception as exc:
            raise EngineError("The embedding model failed.") from exc
        finally:
            if not started[0] and future.cancel():
                self._waiting -= 1

    def _dequeued(self) -> None:
        self._waiting -= 1

    def _count(self, texts: list[str]) -> list[int]:
        ids = self._tokenizer(
            texts,
            add_special_tokens=True,
            truncation=False,
            return_attention_mask=False,
            return_token_type_ids=False,
        )["input_ids"]
        return [len(x) for x in ids]

    def _embed(self, texts: list[str]) -> Embeddings:
        model = self._model
        assert model is not None
        matrix = model.encode(
            texts,
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        rows = matrix.astype("<f4", copy=False)
        return Embeddings(vectors=[row.tobytes() for row in rows], dimensions=int(rows.shape[1]))

    async def aclose(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._model = None


__all__ = ["SentenceTransformersEngine"]
