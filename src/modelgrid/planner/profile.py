"""Engine profiles: measured prefill and decode times of one model on one engine, and the fit
the simulator uses.

``modelgrid plan profile`` runs the real engine over a grid of prompt lengths and batch sizes
(``planner.profiling``) and stores each measurement as a ``ProfilePoint``; ``fit`` turns the
batch-1 points into two small models:

- prefill (start of service to the first token) ``a + b n + c n^2`` ms for ``n`` prompt
  tokens not in the replica's prefix cache (``c`` for attention's quadratic term; refitted
  linear when the quadratic fit bends the wrong way);
- decode ``d0 + d1 m`` ms per output token after the first, ``m`` being the context length
  at the middle of the answer (prompt + half the output): each step attends to the whole
  context, so long prompts decode a little slower.

Two things the fit's mean does not say, both measured:

- **spread**: the measured over the fitted time of each measured request, prefill and decode
  apart (``prefill_spread``, ``decode_spread``, dimensionless, median ~1). The simulator draws
  a request's factors from them (seeded), so the p95s see the real engine's jitter rather
  than a constant step. ``fit`` takes them from the profile's own batch-1 points;
  ``calibrate`` from requests sent through the real serving path.
- **overhead** (``overhead_ms``): what a request through the serving path (gateway, HTTP
  hops, chat template and tokenization, SSE) takes on top of the engine's prefill when its
  replica is idle: ``calibrate`` sets it to the median of (TTFT at idle - fitted prefill of
  the prompt tokens not cached). The simulator adds it before the replica, like the
  gateway's overhead.
- **host slowdown** (``host_slowdown``): how much slower a replica serves while ``k``
  replicas of this model share its machine's cores and are busy (itself included), at index
  ``k - 1``; its length is how many replicas one machine holds (``replicas_per_host``).
  ``modelgrid plan calibrate`` measures it through the gateway, ``k`` requests at once on
  ``k`` distinct replicas (``planner.calibration``); empty: a machine per replica (no
  slowdown). The simulator packs each deployment's replicas that many to a machine and
  shares its cores over time (``planner.sim``).

``slots`` is how many sequences a replica runs at once: the llama.cpp engine runs ONE (its
requests queue in the replica), which the profile shows as an aggregate throughput that does
not grow with the batch size. An engine that batches (vLLM) has ``slots`` > 1 and its decode
step at batch ``b`` scaled by ``decode_scale[b]``.

Profiles are JSON files (``save``/``load``), by default ``<data_dir>/planner/profiles/
<model>.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelgrid.core.files import write_text_atomic
from modelgrid.planner.errors import PlanInputError, problem


class ProfilePoint(BaseModel):
    """One measurement: ``batch`` requests of ``prompt_tokens`` prompt tokens each, run at
    once.

    Attributes:
        batch: Requests submitted together.
        prompt_tokens: Prompt tokens of each (none cached).
        output_tokens: Tokens each generated (mean).
        prefill_ms: Submission to first token, batch 1 (ms; at a larger batch the first
            request's).
        decode_ms: Mean gap between a request's consecutive tokens (ms).
        throughput_tps: Output tokens per second of the whole batch.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch: Annotated[int, Field(ge=1)]
    prompt_tokens: Annotated[int, Field(ge=1)]
    output_tokens: Annotated[float, Field(ge=1)]
    prefill_ms: Annotated[float, Field(ge=0)]
    decode_ms: Annotated[float, Field(ge=0)]
    throughput_tps: Annotated[float, Field(ge=0)] = 0.0


class EngineProfile(BaseModel):
    """What one replica of ``model`` on ``engine`` takes (see the module docstring).

    Attributes:
        model: Served model id.
        engine: Engine kind (``llamacpp``).
        slots: Sequences a replica runs at once (llama.cpp: 1).
        n_threads: Threads the engine used when measured (``None``: unknown).
        measured_at: ISO time of the measurement (empty for a made-up profile).
        points: The measurements.
        prefill: ``(a, b, c)`` of the prefill fit, ms.
        decode: ``(d0, d1)`` of the decode fit, ms per token.
        decode_scale: Decode step time at batch ``b`` over batch 1 (``slots`` > 1).
        overhead_ms: The serving path's fixed time per request (ms; see the module
            docstring), 0 until calibrated.
        prefill_spread / decode_spread: Measured over fitted prefill and decode time of each
            measured request (dimensionless; empty: no spread, the fit's mean for all).
        calibrated_at: ISO time of the calibration (empty: not calibrated).
        recalibrated_on: The usage-ledger window whose traffic the spreads were last
            read from, an ISO 8601 interval ``start/end`` (``modelgrid plan
            recalibrate``; empty: never).
        host_slowdown: Service time while ``k`` replicas of one machine are busy over the
            same alone, at index ``k - 1`` (dimensionless; see the module docstring; empty:
            a machine per replica).
        calibrated_overhead_ms / calibrated_host_slowdown: ``overhead_ms`` and
            ``host_slowdown`` as ``plan calibrate`` measured them (``None`` / empty: as the
            fields themselves). ``plan recalibrate`` re-reads both from the ledger where its
            window allows and starts each time from these (``as_calibrated``), so a
            recalibration in place does not become the next one's "calibrated" value.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    engine: str = "llamacpp"
    slots: Annotated[int, Field(ge=1)] = 1
    n_threads: int | None = None
    measured_at: str = ""
    points: tuple[ProfilePoint, ...] = ()
    prefill: tuple[float, float, float] = (0.0, 0.0, 0.0)
    decode: tuple[float, float] = (0.0, 0.0)
    decode_scale: dict[int, float] = Field(default_factory=dict)
    overhead_ms: Annotated[float, Field(ge=0)] = 0.0
    prefill_spread: tuple[Annotated[float, Field(gt=0)], ...] = ()
    decode_spread: tuple[Annotated[float, Field(gt=0)], ...] = ()
    calibrated_at: str = ""
    recalibrated_on: str = ""
    host_slowdown: tuple[Annotated[float, Field(gt=0)], ...] = ()
    calibrated_overhead_ms: Annotated[float, Field(ge=0)] | None = None
    calibrated_host_slowdown: tuple[Annotated[float, Field(gt=0)], ...] = ()

    def as_calibrated(self) -> EngineProfile:
        """This profile with ``overhead_ms`` and ``host_slowdown`` as calibrated."""
        return self.model_copy(
            update={
                "overhead_ms": (
                    self.overhead_ms
                    if self.calibrated_overhead_ms is None
                    else self.calibrated_overhead_ms
                ),
                "host_slowdown": self.calibrated_host_slowdown or self.host_slowdown,
            }
        )

    @property
    def replicas_per_host(self) -> int:
        """Replicas of this model that share one machine (``len(host_slowdown)``, at least 1)."""
        return max(1, len(self.host_slowdown))

    # --- the model the simulator uses ----------------------------------------------------

    def prefill_ms(self, prompt_tokens: np.ndarray | float) -> np.ndarray:
        """Time from the start of service to the first token (ms), per prompt length."""
        n = np.asarray(prompt_tokens, dtype=np.float64)
        a, b, c = self.prefill
        return np.maximum(a + b * n + c * n * n, 0.0)

    def decode_ms(
        self, prompt_tokens: np.ndarray | float, output_tokens: np.ndarray | float, batch: int = 1
    ) -> np.ndarray:
        """Mean time per output token after the first (ms)."""
        p = np.asarray(prompt_tokens, dtype=np.float64)
        o = np.asarray(output_tokens, dtype=np.float64)
        d0, d1 = self.decode
        scale = self.decode_scale.get(batch, 1.0) if batch > 1 else 1.0
        return np.maximum(d0 + d1 * (p + o / 2), 0.0) * scale

    def service_ms(
        self, prompt_tokens: np.ndarray | float, output_tokens: np.ndarray | float
    ) -> np.ndarray:
        """Time a replica is busy with a request alone (ms): prefill, then the other tokens."""
        o = np.asarray(output_tokens, dtype=np.float64)
        decode = np.maximum(o - 1, 0) * self.decode_ms(prompt_tokens, o)
        return np.asarray(self.prefill_ms(prompt_tokens) + decode, dtype=np.float64)


def fit(
    model: str,
    points: Sequence[ProfilePoint],
    *,
    engine: str = "llamacpp",
    n_threads: int | None = None,
    measured_at: str = "",
) -> EngineProfile:
    """The profile of these measurements: the fits over the batch-1 points, ``slots`` from
    how the aggregate throughput grows with the batch (it must grow by 50 % for the engine to
    count as batching), ``decode_scale`` from the decode gaps per batch size.

    Raises:
        PlanInputError: fewer than two batch-1 prompt lengths (nothing to fit).
    """
    ones = [p for p in points if p.batch == 1]
    if len({p.prompt_tokens for p in ones}) < 2:
        raise PlanInputError(
            f"profile of {model}: at least two prompt lengths at batch 1 are needed to fit",
            param="points",
        )
    n = np.array([p.prompt_tokens for p in ones], dtype=np.float64)
    y = np.array([p.prefill_ms for p in ones], dtype=np.float64)
    prefill = _prefill_fit(n, y)
    m = np.array([p.prompt_tokens + p.output_tokens / 2 for p in ones])
    d = np.array([p.decode_ms for p in ones])
    decode = _least_squares(np.stack([np.ones_like(m), m], axis=1), d)
    if decode[1] < 0:
        decode = np.array([float(np.mean(d)), 0.0])
    fitted = (
        np.stack([np.ones_like(n), n, n * n], axis=1) @ prefill,
        np.stack([np.ones_like(m), m], axis=1) @ decode,
    )
    prefill_spread = _ratios(y, fitted[0])
    decode_spread = _ratios(d, fitted[1])
    base_tps = np.mean([p.throughput_tps for p in ones]) or 0.0
    slots, scale = 1, {}
    for b in sorted({p.batch for p in points if p.batch > 1}):
        at_b = [p for p in points if p.batch == b]
        tps = float(np.mean([p.throughput_tps for p in at_b]))
        # 1.5x: a batching engine gives ~1.8-2x at batch 2; a one-at-a-time engine measured
        # on a busy machine has been seen at 1.3x by noise alone
        if base_tps > 0 and tps >= 1.5 * base_tps:
            slots = b
            scale[b] = float(np.mean([p.decode_ms for p in at_b]) / max(np.mean(d), 1e-9))
    return EngineProfile(
        model=model,
        engine=engine,
        slots=slots,
        n_threads=n_threads,
        measured_at=measured_at,
        points=tuple(points),
        prefill=(float(prefill[0]), float(prefill[1]), float(prefill[2])),
        decode=(float(decode[0]), float(decode[1])),
        decode_scale=scale,
        prefill_spread=prefill_spread,
        decode_spread=decode_spread,
    )


@dataclass(frozen=True, slots=True)
class Observed:
    """One request sent through the real serving path while its replica was idle (what the
    client sees).

    Attributes:
        prompt_tokens: Prompt tokens not served from the prefix cache (usage's
            ``prompt_tokens`` less ``cached_tokens``).
        output_tokens: Tokens generated.
        ttft_ms: Send to first content (ms).
        tpot_ms: (last content - first content) / (output_tokens - 1) (ms; 0 for one token).
    """

    prompt_tokens: int
    output_tokens: int
    ttft_ms: float
    tpot_ms: float


def calibrate(
    profile: EngineProfile,
    observed: Sequence[Observed],
    *,
    calibrated_at: str = "",
    prefill_speed: float = 1.0,
) -> EngineProfile:
    """``profile`` with the serving path's overhead and spreads measured from ``observed``
    (see the module docstring): ``overhead_ms`` = median over requests of (TTFT -
    ``prefill_speed`` x fitted prefill), ``prefill_spread`` = (TTFT - overhead) / fitted
    prefill, ``decode_spread`` = TPOT / fitted decode (requests of two tokens or more). The
    fits are kept.

    Args:
        profile: The profile to calibrate.
        observed: Requests sent one at a time through the serving path.
        calibrated_at: ISO time to record.
        prefill_speed: The engine's prefill time now over the fit's, measured apart from
            the serving path (``planner.calibration``: requests that waited behind another
            on their replica); 1: the fit's. An idle request's TTFT is path + prefill, so
            without it a drift of the engine's speed since the profile reads as overhead.

    Raises:
        PlanInputError: no observed request.
    """
    # raises on no request
    overhead = max(0.0, path_residual_ms(profile, observed, prefill_speed=prefill_speed))
    out = np.array([o.output_tokens for o in observed], dtype=np.float64)
    n = np.array([o.prompt_tokens for o in observed], dtype=np.float64)
    ttft = np.array([o.ttft_ms for o in observed], dtype=np.float64)
    prefill = profile.prefill_ms(n)
    many = out > 1
    tpot = np.array([o.tpot_ms for o in observed], dtype=np.float64)[many]
    decode = profile.decode_ms(n[many], out[many])
    return profile.model_copy(
        update={
            "overhead_ms": overhead,
            "calibrated_overhead_ms": overhead,
            "prefill_spread": _ratios(ttft - overhead, prefill),
            "decode_spread": _ratios(tpot, decode) or profile.decode_spread,
            "calibrated_at": calibrated_at,
            "recalibrated_on": "",  # the spreads are the calibration's again
        }
    )


def path_residual_ms(
    profile: EngineProfile, observed: Sequence[Observed], *, prefill_speed: float = 1.0
) -> float:
    """Median over ``observed`` of (TTFT - ``prefill_speed`` x fitted prefill), in ms: the
    serving path's overhead before it is floored at 0 (``calibrate``). Below 0, the idle
    requests' first tokens came sooner than the engine's prefill alone at that speed: the
    speed (read from queued requests) or the fit is off, not the path faster than free.

    Raises:
        PlanInputError: no observed request.
    """
    if not observed:
        raise PlanInputError("calibration: no request observed", param="observed")
    n = np.array([o.prompt_tokens for o in observed], dtype=np.float64)
    ttft = np.array([o.ttft_ms for o in observed], dtype=np.float64)
    return float(np.median(ttft - prefill_speed * profile.prefill_ms(n)))


def _prefill_fit(n: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``(a, b, c)`` of ``a + b n + c n^2`` by least squares, no coefficient negative: a
    quadratic that bends the wrong way (``c`` < 0, or fewer than three lengths) is refitted
    linear, and a negative fixed cost ``a`` (a short prompt would take less than no time) is
    refitted through the origin; a negative ``b`` left is set to 0."""
    columns = [np.ones_like(n), n, n * n]
    used = [0, 1, 2] if len(set(n.tolist())) >= 3 else [0, 1]
    while True:
        coef = np.zeros(3)
        coef[used] = _least_squares(np.stack([columns[i] for i in used], axis=1), y)
        wrong = [i for i in (2, 0, 1) if i in used and coef[i] < 0]
        if not wrong or len(used) == 1:
            return np.maximum(coef, 0.0)
        used.remove(wrong[0])


def _ratios(measured: np.ndarray, fitted: np.ndarray) -> tuple[float, ...]:
    """measured / fitted where both are positive, rounded to 4 digits, sorted."""
    ok = (measured > 0) & (fitted > 0)
    return tuple(sorted(round(float(r), 4) for r in measured[ok] / fitted[ok]))


def _least_squares(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    coef, *_ = np.linalg.lstsq(x, y, rcond=None)
    return np.asarray(coef, dtype=np.float64)


def synthetic(
    model: str, *, prefill_base_ms: float, prefill_per_token_ms: float, decode_ms: float
) -> EngineProfile:
    """A made-up profile (tests, examples): linear prefill, constant decode, one slot."""
    return EngineProfile(
        model=model,
        engine="synthetic",
        prefill=(prefill_base_ms, prefill_per_token_ms, 0.0),
        decode=(decode_ms, 0.0),
    )


def default_path(data_dir: Path, model: str) -> Path:
    """Where ``modelgrid plan profile`` stores a model's profile by default."""
    return data_dir / "planner" / "profiles" / f"{model}.json"


def save(profile: EngineProfile, path: Path) -> None:
    """Write ``profile`` as JSON (atomically: a temporary file beside it, then renamed).

    Raises:
        PlanInputError: ``path`` cannot be written (a directory, under a file, read-only);
            the temporary file is removed.
    """
    _write(path, profile.model_dump_json(indent=2) + "\n")


def check_writable(path: Path) -> None:
    """Fail early where ``save`` would fail at the end: ``path`` a directory, its folder not
    creatable or not writable (the temporary file is written there and removed).

    Raises:
        PlanInputError: as ``save``.
    """
    _write(path, None)


def _write(path: Path, text: str | None) -> None:
    """``core.files.write_text_atomic``, its errors as ``PlanInputError`` naming ``path``."""
    try:
        write_text_atomic(path, text)
    except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PlanInputError(f"cannot write the profile to {path}: {why}", param="out") from None


def load(path: Path) -> EngineProfile:
    """Read a profile.

    Raises:
        PlanInputError: missing, not JSON, or not a profile (the message names the file).
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PlanInputError(
            f"no engine profile at {path}: run `modelgrid plan profile` first", param="profile"
        ) from None
    except IsADirectoryError:
        raise PlanInputError(
            f"engine profile {path}: a directory, not a profile file", param="profile"
        ) from None
    except (OSError, ValueError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PlanInputError(
            f"engine profile {path}: {why.splitlines()[0]}", param="profile"
        ) from None
    if not isinstance(data, dict):
        raise PlanInputError(
            f"engine profile {path}: a JSON object is needed, not {type(data).__name__}",
            param="profile",
        )
    try:
        return EngineProfile.model_validate(data)
    except ValidationError as exc:
        raise PlanInputError(problem(exc, f"engine profile {path}"), param="profile") from None


def load_for(model: str, path: Path, *, where: str = "--profile") -> EngineProfile:
    """``load``, for simulating ``model``: the profile must be of that model and hold its
    fits (a request of 64 prompt and 16 output tokens takes time).

    Raises:
        PlanInputError: as ``load``; or ``<where>: PATH is a profile of 'x', not 'y'``; or
            ``<where>: PATH has no prefill or decode fit`` (param ``where``).
    """
    p = load(path)
    if p.model != model:
        raise PlanInputError(
            f"{where}: {path} is a profile of {p.model!r}, not {model!r}", param=where
        )
    if not any(p.prefill) or not any(p.decode) or not float(p.service_ms(64.0, 16.0)) > 0:
        raise PlanInputError(
            f"{where}: {path} has no prefill or decode fit: run `modelgrid plan profile`",
            param=where,
        )
    return p


__all__ = [
    "EngineProfile",
    "Observed",
    "ProfilePoint",
    "calibrate",
    "check_writable",
    "default_path",
    "fit",
    "load",
    "load_for",
    "path_residual_ms",
    "save",
    "synthetic",
]
