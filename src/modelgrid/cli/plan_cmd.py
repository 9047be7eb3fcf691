"""``modelgrid plan``: replicas per region and model that meet the latency targets at least
cost (``modelgrid.planner``); ``modelgrid plan profile``: measure the real engine;
``modelgrid plan calibrate``: measure the serving path and co-location through the gateway;
``modelgrid plan recalibrate``: re-read the engine's speed and spreads from the ledger's traffic.

This module is a composition root for the planner: it reads the topology file, the usage
ledger (``tenancy.demand``) or a forecast, the profiles, and for ``profile`` builds the engine
with ``engines.registry.build_engine`` and hands it to ``planner.profiling``. Bad input (an
unknown model or region, a negative rate, a target no fleet can meet, a broken file) is one
red line naming it and exit status 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from modelgrid.cli.common import console, err_console, settings

if TYPE_CHECKING:
    import datetime

    from modelgrid.planner.recalibration import Recalibrated

app = typer.Typer(
    help="Plan the fleet: replicas per region and model that meet the latency targets at "
    "least cost, checked by simulating the product's own routing.",
    add_completion=False,
)


MAX_SPACING_S = 3600.0
"""``plan calibrate --spacing-s`` at most: an hour between requests."""


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]{escape(message)}[/]", highlight=False)
    return typer.Exit(2)


def _pairs(values: list[str], option: str) -> list[tuple[str, str]]:
    out = []
    for v in values:
        key, sep, value = v.partition("=")
        if not sep or not key or not value:
            raise _fail(f"{option}: expected NAME=VALUE, got {v!r}")
        out.append((key.strip(), value.strip()))
    return out


@app.callback(invoke_without_command=True)
def plan(
    ctx: typer.Context,
    from_usage: str = typer.Option(
        None, "--from-usage", metavar="YYYY-MM", help="Demand from the usage ledger's month."
    ),
    forecast: Path = typer.Option(None, "--forecast", help="Demand from a forecast file (TOML)."),
    config: Path = typer.Option(None, "--config", help="Plan settings (TOML): targets, costs…"),
    topology: Path = typer.Option(
        None, "--topology", help="Topology file (default: the gateway's)."
    ),
    profile: list[str] = typer.Option(
        [], "--profile", metavar="MODEL=PATH", help="An engine profile (default: measured one)."
    ),
    ttft_p95_ms: float = typer.Option(None, "--ttft-p95-ms", help="TTFT target, p95 (ms)."),
    tpot_p95_ms: float = typer.Option(None, "--tpot-p95-ms", help="Time per token target (ms)."),
    add_region: list[str] = typer.Option(
        [], "--add-region", metavar="ID", help="What if: open a region of extra_regions."
    ),
    without: list[str] = typer.Option([], "--without", metavar="ID", help="What if: lose it."),
    scale_demand: list[str] = typer.Option(
        [], "--scale-demand", metavar="REGION=FACTOR", help="What if: its demand times FACTOR."
    ),
    out: Path = typer.Option(
        Path("plan"), "--out", help="Folder for the report and topology (created if missing)."
    ),
    no_verify: bool = typer.Option(False, "--no-verify", help="Screens only, no simulation."),
    seed: int = typer.Option(None, "--seed", help="Simulation seed."),
) -> None:
    """Plan the fleet (see --help of each option); `modelgrid plan profile` measures the
    engine first."""
    if ctx.invoked_subcommand is not None:
        return
    from modelgrid.core.errors import TopologyError
    from modelgrid.planner import PlanInputError, report
    from modelgrid.planner import plan as make_plan

    if (from_usage is None) == (forecast is None):
        raise _fail("give exactly one of --from-usage YYYY-MM and --forecast FILE")
    from modelgrid.planner.inputs import load_plan_file

    _check_out_dir(out)
    settings_file = None
    try:
        settings_file = load_plan_file(config)  # read once: settings, what-ifs, messages
        scenario = _scenario(
            from_usage, forecast, settings_file, topology, profile, ttft_p95_ms, tpot_p95_ms,
            seed, no_verify,
        )  # fmt: skip
        scenario = _what_ifs(scenario, settings_file, add_region, without, scale_demand)
        result = make_plan(scenario)
    except (PlanInputError, TopologyError) as exc:
        raise _fail(_with_source(exc, config, settings_file, from_usage)) from None
    files = report.write(result, out)
    _print(result, files)


def _check_out_dir(out: Path) -> None:
    """``out`` can become the report's folder: a directory, or creatable (its nearest
    existing ancestor a writable directory) — said before the plan's seconds of work."""
    import os

    if out.exists():
        if not out.is_dir():
            raise _fail(f"--out {out}: not a directory")
        if not os.access(out, os.W_OK | os.X_OK):
            raise _fail(f"--out {out}: not writable")
        return
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise _fail(f"--out {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise _fail(f"--out {out}: {parent} is not writable")


def _with_source(exc: Any, config: Path | None, settings_file: Any, month: str | None) -> str:
    """``exc``'s message; a workspace's residency rules named with where they came from:
    the ``--config`` file (``settings_file``, which overrides the ledger's) or the API keys
    in the database."""
    param = getattr(exc, "param", None) or ""
    if not param.startswith("workspaces."):
        return str(exc.message)
    name = param.removeprefix("workspaces.")
    if settings_file is not None and name in {w.name for w in settings_file.workspaces}:
        return f"{config}: {exc.message}"
    if month is not None:
        return f"{exc.message} (the residency of its API keys in the database)"
    return str(exc.message)


def _topology(topology: Path | None) -> Any:
    """The topology file at ``topology`` (default: the gateway's; the built-in one where
    that file does not exist).

    Raises:
        PlanInputError: ``--topology`` names no file, or the file is invalid or unreadable.
    """
    from modelgrid.core.errors import TopologyError
    from modelgrid.planner import PlanInputError
    from modelgrid.routing import topology as topo

    path = topology or settings().topology_path
    if topology is not None and not path.exists():
        raise PlanInputError(f"--topology: no such file {path}", param="--topology")
    try:
        return topo.load(path) if path.exists() else topo.default_topology()
    except (OSError, TopologyError) as exc:
        why = exc.message if isinstance(exc, TopologyError) else exc.strerror or str(exc)
        named = "--topology: " if topology is not None else "topology "
        raise PlanInputError(f"{named}{path}: {why}", param="--topology") from None


def _scenario(
    month: str | None,
    forecast: Path | None,
    settings_file: Any,
    topology: Path | None,
    profile_args: list[str],
    ttft: float | None,
    tpot: float | None,
    seed: int | None,
    no_verify: bool,
) -> Any:
    from modelgrid.planner import PlanInputError, Scenario, ledger
    from modelgrid.planner import profile as profiles
    from modelgrid.planner.inputs import load_forecast

    s = settings()
    base = _topology(topology)
    if month is not None:
        from modelgrid.core.errors import InvalidRequestError
        from modelgrid.tenancy.billing import month_bounds

        try:
            month_bounds(month)
        except InvalidRequestError as exc:
            raise PlanInputError(f"--from-usage: {exc.message}", param="--from-usage") from None
        measured = _read_ledger(month, base.gateway_region)
        demand, shapes = ledger.demand_rows(measured), ledger.shapes(measured)
        arrivals, default = ledger.arrivals(measured), None
        workspaces = ledger.residency(measured)
    else:
        assert forecast is not None
        f = load_forecast(forecast)
        demand, shapes = f.rows(), f.shapes
        arrivals, default = f.stream_overrides(), f.arrivals
        workspaces = {}
    workspaces.update({w.name: w for w in settings_file.workspaces})
    explicit = {m: Path(p) for m, p in _pairs(profile_args, "--profile")}
    wanted = {d.model for d in demand}
    unprofiled = {
        m for m in wanted - set(explicit) if not profiles.default_path(s.data_dir, m).exists()
    }
    for m, p in explicit.items():
        if m not in wanted and not unprofiled:  # else the demand's model is named first
            raise PlanInputError(
                f"--profile {m}={p}: no demand for the model {m!r} (the demand names "
                f"{', '.join(sorted(wanted)) or 'none'})",
                param="--profile",
            )
    loaded = {m: profiles.load_for(m, p) for m, p in explicit.items()}
    for m in wanted - set(explicit):
        default_path = profiles.default_path(s.data_dir, m)
        if default_path.exists():  # else: Scenario.check names the demand row
            loaded[m] = profiles.load_for(m, default_path, where="engine profile")
    slo = settings_file.slo.model_copy(
        update={k: v for k, v in (("ttft_p95_ms", ttft), ("tpot_p95_ms", tpot)) if v is not None}
    )
    for name, value in (("--ttft-p95-ms", ttft), ("--tpot-p95-ms", tpot)):
        if value is not None and not value > 0:
            raise PlanInputError(f"{name}: a target must be > 0 ms, got {value:g}", param=name)
    update: dict[str, Any] = {"verify": False} if no_verify else {}
    if seed is not None:
        update["seed"] = seed
    options = settings_file.options.model_copy(update=update)
    return Scenario(
        topology=base,
        demand=demand,
        shapes=shapes,
        profiles=loaded,
        workspaces=workspaces,
        costs=settings_file.costs.regions,
        default_cost=settings_file.costs.default_micros,
        currency=settings_file.currency,
        slo=slo,
        options=options,
        arrivals=arrivals,
        **({"default_arrivals": default} if default is not None else {}),
    )


def _read_ledger(month: str, default_region: str) -> Any:
    from modelgrid.cli.common import read_run
    from modelgrid.tenancy.demand import read_demand

    return read_run(lambda sessions: read_demand(sessions, month, default_region=default_region))


def _what_ifs(
    scenario: Any, settings_file: Any, add: list[str], without: list[str], scale: list[str]
) -> Any:
    from modelgrid.planner import PlanInputError, whatif

    extra = {r.id: r for r in settings_file.extra_regions}
    for rid in add:
        if rid not in extra:
            raise PlanInputError(
                f"--add-region: {rid!r} is not among the plan file's extra_regions "
                f"({', '.join(sorted(extra)) or 'none'})",
                param="--add-region",
            )
        scenario = whatif.add_region(scenario, extra[rid])
    for rid in without:
        scenario = whatif.without_region(scenario, rid)
    for region, factor in _pairs(scale, "--scale-demand"):
        try:
            value = float(factor)
        except ValueError:
            raise PlanInputError(
                f"--scale-demand: {factor!r} is not a number", param="--scale-demand"
            ) from None
        scenario = whatif.scale_demand(scenario, region, value)
    return scenario


def _shown(value: float, spec: str) -> str:
    """A figure of the plan table; ``-`` where none was simulated (``--no-verify``)."""
    return "-" if value != value else format(value, spec)  # NaN: not simulated


def _print(result: Any, files: dict[str, Path]) -> None:
    from modelgrid.planner import report

    s, n = result.scenario, result.replicas()
    console.print(
        f"[bold]Plan: {n} replica{'' if n == 1 else 's'}, "
        f"{result.cost_micros_per_hour() / 1e6:.2f} {s.currency}/hour[/]"
    )
    rows = report.rows(result)
    for model in dict.fromkeys(r.model for r in rows):  # one table a model: 80 columns hold it
        table = Table(
            "region", "replicas", "util.", "TTFT p50 ms", "TTFT p95 ms", f"{s.currency}/h",
            title=model, title_justify="left", title_style="bold",
        )  # fmt: skip
        for r in (r for r in rows if r.model == model):
            table.add_row(
                r.region, str(r.replicas), _shown(r.utilisation, ".2f"),
                _shown(r.ttft_p50_ms, ".0f"), _shown(r.ttft_p95_ms, ".0f"),
                f"{r.cost_micros_per_hour / 1e6:.2f}",
            )  # fmt: skip
        console.print(table)
    for c in result.unserved():
        err_console.print(
            f"[yellow]unserved: {escape(c.model)} from {escape(c.origin)} (workspace "
            f"{escape(c.workspace)}): residency allows no region that can hold it[/]"
        )
    missed = [c for mp in result.models.values() for c in mp.checks if not c.met]
    for c in missed:
        err_console.print(
            f"[yellow]target missed in simulation: {escape(c.model)} from {escape(c.origin)} "
            f"at {c.hour:02d}:00, TTFT p95 {c.ttft_p95_ms:.0f} ms[/]"
        )
    for name, path in files.items():
        console.print(f"{name:12} {path}", highlight=False)
    if not any(path.suffix == ".png" for path in files.values()):
        err_console.print(f"[yellow]no plots: {escape(report.NO_PLOTS)}[/]")


@app.command(
    "profile",
    short_help="Measure the real engine (llama.cpp) over prompt lengths and batch sizes; store "
    "the prefill and decode times the planner simulates with.",
)
def profile_cmd(
    model: str = typer.Option(
        "qwen2.5-coder-0.5b-instruct", "--model", help="A packaged model to measure."
    ),
    prompt_tokens: str = typer.Option("32,128,512,1024", "--prompt-tokens", help="Lengths."),
    batch_sizes: str = typer.Option("1,2", "--batch-sizes", help="Requests at once."),
    output_tokens: int = typer.Option(32, "--output-tokens", min=2, help="Tokens each."),
    repeats: int = typer.Option(2, "--repeats", min=1, help="Runs per cell."),
    out: Path = typer.Option(
        None, "--out", help="Profile file (default: the data dir's; folders created)."
    ),
) -> None:
    """Measure the real engine (llama.cpp) over prompt lengths and batch sizes; store the
    prefill and decode times the planner simulates with."""
    import asyncio

    from modelgrid.core.errors import ModelgridError
    from modelgrid.engines.catalog import CATALOG
    from modelgrid.planner import profile as profiles
    from modelgrid.planner.profiling import ProfileGrid, profile_engine

    def ints(text: str, option: str) -> tuple[int, ...]:
        try:
            values = tuple(int(v) for v in text.split(",") if v.strip())
        except ValueError:
            raise _fail(f"{option}: comma-separated whole numbers, got {text!r}") from None
        if not values or min(values) < 1:
            raise _fail(f"{option}: give numbers >= 1, got {text!r}")
        return values

    if model not in CATALOG:
        raise _fail(f"--model: unknown packaged model {model!r}; see `modelgrid models`")
    grid = ProfileGrid(
        ints(prompt_tokens, "--prompt-tokens"), ints(batch_sizes, "--batch-sizes"),
        output_tokens, repeats,
    )  # fmt: skip
    s = settings()
    from modelgrid.cli.models_cmd import prepare_or_exit
    from modelgrid.engines.registry import build_engine

    prepare_or_exit([model], s.models_dir)
    engine = build_engine("llamacpp", model, s.models_dir, s.engine)
    threads = s.engine.n_threads or None
    context = engine.card.context_length
    if max(grid.prompt_tokens) + output_tokens > context:
        raise _fail(
            f"--prompt-tokens: at most {context - output_tokens} for {model} (a context of "
            f"{context} tokens less --output-tokens {output_tokens}), got "
            f"{max(grid.prompt_tokens)}"
        )

    def show(p: Any) -> None:
        console.print(
            f"batch {p.batch} prompt {p.prompt_tokens:5d}: prefill {p.prefill_ms:8.1f} ms, "
            f"decode {p.decode_ms:6.2f} ms/token, {p.throughput_tps:6.1f} tokens/s",
            highlight=False,
        )

    async def go() -> Any:
        await engine.start()
        try:
            return await profile_engine(engine, grid, n_threads=threads, progress=show)
        finally:
            await engine.aclose()

    try:
        result = asyncio.run(go())
    except ModelgridError as exc:  # e.g. a prompt a few tokens over the context
        raise _fail(f"profile: {exc.message}") from None
    path = out or profiles.default_path(s.data_dir, model)
    profiles.save(result, path)
    a, b, c = result.prefill
    d0, d1 = result.decode
    console.print(
        f"prefill {a:.1f} + {b:.3f} n + {c:.2e} n^2 ms; decode {d0:.2f} + {d1:.4f} m ms/token; "
        f"{result.slots} sequence(s) at once\nwritten {path}",
        highlight=False,
    )


def _write_record(path: Path, data: dict[str, Any] | None) -> None:
    """``data`` as JSON at ``path``; ``None``: check that it can be written (before minutes
    of requests), leaving nothing.

    Raises:
        PlanInputError: the file cannot be written (the reason named).
    """
    import json

    from modelgrid.planner import PlanInputError

    existed = path.exists()
    try:
        if path.is_dir():
            raise IsADirectoryError(21, "is a directory")
        with path.open("a" if data is None else "w", encoding="utf-8") as fh:
            if data is not None:
                fh.write(json.dumps(data) + "\n")
        if data is None and not existed:
            path.unlink()
    except OSError as exc:
        raise PlanInputError(f"--record {path}: {exc.strerror or exc}", param="--record") from None


def _profile_of(model: str, profile_path: Path | None) -> tuple[Path, Any]:
    """The profile ``plan calibrate`` and ``plan recalibrate`` start from, and its path:
    ``--profile``, else the data dir's for ``--model`` (what ``plan profile`` wrote).

    Raises:
        PlanInputError: ``--model`` empty; no profile there (``plan profile`` named where
            the model is packaged, ``--profile`` where it is not: ``plan profile`` measures
            packaged models only); the file not a profile of ``model`` (the message starts
            with the option that chose the file).
    """
    from modelgrid.engines.catalog import CATALOG
    from modelgrid.planner import PlanInputError
    from modelgrid.planner import profile as profiles

    if not model.strip():
        raise PlanInputError(f"--model: give the served model's id, got {model!r}", param="--model")
    if profile_path is not None:
        path, where, label = profile_path, "--profile", "--profile"
    else:
        path = profiles.default_path(settings().data_dir, model)
        where, label = "--model", f"--model {model}"
    if profile_path is None and not path.exists():
        hint = (
            f"run `modelgrid plan profile --model {model}` first"
            if model in CATALOG
            else "not a packaged chat model (`modelgrid models`), which `modelgrid plan "
            "profile` measures: give --profile PATH"
        )
        raise PlanInputError(
            f"--model {model}: no engine profile at {path}: {hint}", param="--model"
        )
    try:
        return path, profiles.load_for(model, path, where=where)
    except PlanInputError as exc:  # name the option that chose the file
        if exc.message.startswith(where):
            raise
        raise PlanInputError(f"{label}: {exc.message}", param=where) from None


@app.command(
    "calibrate",
    short_help="Measure the serving path's overhead and spreads and the host slowdown through "
    "the running gateway; write them into the profile.",
)
def calibrate_cmd(
    key: str = typer.Option(..., "--key", help="An API key the gateway accepts for the model."),
    url: str = typer.Option(
        None,
        "--url",
        help="The gateway's API root, http://HOST:PORT/v1 (default: this machine's at the "
        "settings' server port, 8000 unless configured; give it where `serve --port` chose "
        "another).",
    ),
    model: str = typer.Option("qwen2.5-coder-0.5b-instruct", "--model", help="Served model."),
    profile_path: Path = typer.Option(
        None, "--profile", help="The profile to calibrate (default: the data dir's)."
    ),
    out: Path = typer.Option(
        None, "--out", help="Where to write it (default: in place; folders created)."
    ),
    requests: int = typer.Option(10, "--requests", min=1, help="Idle requests, one at a time."),
    replicas_per_host: int = typer.Option(
        1, "--replicas-per-host", min=1, help="Replicas of the model sharing one machine."
    ),
    rounds: int = typer.Option(
        10,  # a 3-4 % slowdown within a ±5 % wander needs ~10 to show (validation run 16)
        "--rounds",
        min=1,
        help="Rounds of k requests sent at once to k replicas, for each k from 2 to "
        "--replicas-per-host (the host slowdown); at least 5 where it is above 1.",
    ),
    prompt_words: int = typer.Option(40, "--prompt-words", min=1, help="Words per message."),
    max_tokens: int = typer.Option(16, "--max-tokens", min=2, help="Tokens per request."),
    seed: int = typer.Option(0, "--seed", help="The messages' words."),
    spacing_s: float = typer.Option(
        0.0,
        "--spacing-s",
        min=0.0,
        help="Idle seconds before each request or round: spreads the calibration over time "
        "(e.g. 30 requests 5 s apart on a shared machine).",
    ),
    record: Path = typer.Option(
        None, "--record", help="Also write every request's timings to this JSON file."
    ),
) -> None:
    """Measure, through the running gateway, what the simulator needs beyond the engine
    profile: the serving path's overhead and spreads, and how much slower replicas serve
    while several share one machine (host slowdown); write them into the profile."""
    import asyncio
    import datetime
    import math

    import numpy as np

    from modelgrid.planner import PlanInputError, calibration
    from modelgrid.planner import profile as profiles
    from modelgrid.planner.probe import ChatProbe

    if not math.isfinite(spacing_s) or spacing_s > MAX_SPACING_S:
        raise _fail(f"--spacing-s: at most {MAX_SPACING_S:g} seconds, got {spacing_s:g}")
    s = settings()
    host = "127.0.0.1" if s.server.host in ("0.0.0.0", "::", "") else s.server.host
    base = f"http://{host}:{s.server.port}/v1" if url is None else url.strip()
    if not base.lower().startswith(("http://", "https://")):
        raise _fail(f"--url: expected the gateway's API root, http://HOST:PORT/v1, got {url!r}")

    async def go() -> Any:
        async with ChatProbe(base, key, model, max_tokens=max_tokens) as probe:
            return await calibration.measure(
                probe, requests=requests, replicas_per_host=replicas_per_host, rounds=rounds,
                prompt_words=prompt_words, seed=seed, spacing_s=spacing_s,
            )  # fmt: skip

    try:
        if replicas_per_host > 1 and rounds < calibration.MIN_SLOWDOWN_ROUNDS:
            raise PlanInputError(
                f"--rounds: {rounds} rounds at once cannot show a host slowdown; at least "
                f"{calibration.MIN_SLOWDOWN_ROUNDS} (a signed-rank test at "
                f"{calibration.SLOWDOWN_ALPHA}) with --replicas-per-host > 1",
                param="--rounds",
            )
        path, base_profile = _profile_of(model, profile_path)
        target = out or path
        profiles.check_writable(target)
        if record is not None:
            _write_record(record, None)
        run = asyncio.run(go())
        now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        result = calibration.apply(base_profile, run, calibrated_at=now)
        profiles.save(result, target)
        if record is not None:
            _write_record(record, run.to_json())
    except PlanInputError as exc:
        raise _fail(exc.message) from None
    pf, df = result.prefill_spread, result.decode_spread
    console.print(
        f"{len(run.idle)} idle requests through {base}: serving-path overhead "
        f"{result.overhead_ms:.1f} ms; prefill spread {pf[0]:.3f}..{pf[-1]:.3f}, decode spread "
        + (f"{df[0]:.3f}..{df[-1]:.3f}" if df else "none"),
        highlight=False,
    )
    speed, queued = calibration.prefill_speed(base_profile, run.crowded, result.host_slowdown)
    residual = profiles.path_residual_ms(
        base_profile, [r.observed() for r in run.idle], prefill_speed=speed or 1.0
    )
    if residual < 0:
        console.print(
            f"the idle requests' first tokens came {-residual:.1f} ms (median) sooner than "
            "the engine's prefill alone at the queued speed: overhead taken as 0; if this is "
            "large, measure the profile again (`modelgrid plan profile`)",
            highlight=False,
        )
    console.print(
        f"{queued} request{'' if queued == 1 else 's'} queued behind another: the engine's "
        "prefill at "
        + (f"{speed:.3f} x the profile's" if speed is not None else "the profile's (none queued)"),
        highlight=False,
    )
    for k, rnds in sorted(run.together.items()):
        ratios = calibration.slowdown_ratios(result, run, k)
        below = result.host_slowdown[k - 2]
        slower = sum(r > below for r in ratios)
        p_value = calibration.slowdown_p(ratios, below)
        crowded = len(ratios) - len(rnds)
        console.print(
            f"{k} at once on {k} replicas ({len(rnds)} of {run.tried[k]} rounds"
            + (f" and the first {k} of {crowded} queued rounds" if crowded else "")
            + f"; {slower} slower than with {k - 1} busy, median "
            f"{float(np.median(ratios)):.3f}, p = {p_value:.3f}): host slowdown "
            f"{result.host_slowdown[k - 1]:.3f}",
            highlight=False,
        )
    console.print(f"written {target}", highlight=False)


def _when(text: str, option: str) -> Any:
    """``text`` as an aware UTC datetime (no offset: UTC), at least an hour before the
    largest one Python holds (the ledger is read an hour past ``--until``)."""
    import datetime

    try:  # RFC 3339 5.6: "T" and "Z" may be lowercase
        at = datetime.datetime.fromisoformat(text.upper())
    except ValueError:
        raise _fail(
            f"{option}: expected an ISO 8601 time (2026-12-07T10:00:00Z), got {text!r}"
        ) from None
    latest = datetime.datetime.max.replace(tzinfo=datetime.UTC) - datetime.timedelta(hours=1)
    try:
        at = at.replace(tzinfo=datetime.UTC) if at.tzinfo is None else at.astimezone(datetime.UTC)
    except OverflowError:  # beyond the range in UTC
        if at.year == datetime.MINYEAR:
            raise _fail(f"{option}: {text!r} is before 0001-01-01T00:00:00Z") from None
        at = latest
    if at >= latest:  # so far in the future that it cannot be read past
        now = datetime.datetime.now(datetime.UTC)
        raise _fail(f"{option}: {text!r} is after now ({_stamp(now)})")
    return at


def _print_wander_and_sharing(done: Recalibrated, calibrated: tuple[float, ...]) -> None:
    """``plan recalibrate``'s lines on how far the speed moved within the window (its
    5-minute slices) and on the machine's sharing where the ledger re-read it."""
    from modelgrid.planner.recalibration import MIN_SLICE_REQUESTS, SLICE_S

    if len(done.slices) >= 2:
        ranges = []
        for phase, values in (("prefill", [x.prefill for x in done.slices]),
                              ("decode", [x.decode for x in done.slices])):  # fmt: skip
            read = [v for v in values if v is not None]
            if read:
                ranges.append(f"{phase} {min(read):.3f}-{max(read):.3f}")
        console.print(
            f"by {SLICE_S / 60:.0f}-minute slice ({len(done.slices)} of {MIN_SLICE_REQUESTS} "
            f"requests or more): {', '.join(ranges)} x the profile's fitted times (above 1: "
            "slower); a plan at one speed holds while the speed does: where targets must "
            "hold, plan at the largest",
            highlight=False,
        )
    shared = done.contention
    if any(shared.read):
        cells = ", ".join(
            f"{k + 1} busy {x:.3f} ({'read' if read else 'kept'}, {eq:.0f} request-equivalents)"
            for k, (x, read, eq) in enumerate(
                zip(shared.slowdown, shared.read, shared.at_busy, strict=True)
            )
            if k
        )
        console.print(
            "host slowdown re-read from the ledger (calibrated "
            f"{', '.join(f'{x:.3f}' for x in calibrated[1:])}): {cells}",
            highlight=False,
        )


def _print_path(done: Recalibrated, calibrated_ms: float) -> None:
    """``plan recalibrate``'s line on the serving path's overhead: re-read or kept."""
    from modelgrid.planner.recalibration import MIN_WAITED

    path = done.path
    if path is None or done.profile.slots != 1:
        return  # a batching engine's queue says nothing of the path (path_overhead)
    if path.residual_ms is not None:
        floored = (
            f"; the idle requests' first tokens came {-path.residual_ms:.1f} ms sooner than "
            "the queued requests' prefill speed gives: no path left, 0"
            if path.residual_ms < 0
            else ""
        )
        console.print(
            f"serving-path overhead re-read: {done.profile.overhead_ms:.1f} ms, calibrated "
            f"{calibrated_ms:.1f}, from {path.waited} requests that waited behind another on "
            f"their replica (their prefill apart from the path){floored}",
            highlight=False,
        )
    else:
        console.print(
            f"serving-path overhead kept as calibrated ({calibrated_ms:.1f} ms): "
            f"{path.waited} requests waited behind another, {MIN_WAITED} are needed to re-read it",
            highlight=False,
        )


def _stamp(at: datetime.datetime) -> str:
    """A time for a message: seconds, milliseconds where it has a fraction (``now`` has)."""
    return at.isoformat(timespec="milliseconds" if at.microsecond else "seconds")


@app.command(
    "recalibrate",
    short_help="Re-read a calibrated profile's speed and spreads from the fleet's own traffic "
    "in the usage ledger (--since to --until).",
)
def recalibrate_cmd(
    since: str = typer.Option(
        ...,
        "--since",
        help="Requests that arrived from (ISO 8601; a date alone: midnight; no offset: UTC).",
    ),
    until: str = typer.Option(
        None, "--until", help="Requests that arrived before (ISO 8601; default: now)."
    ),
    model: str = typer.Option("qwen2.5-coder-0.5b-instruct", "--model", help="Served model."),
    region: str = typer.Option(None, "--region", help="Only this region's requests."),
    profile_path: Path = typer.Option(
        None, "--profile", help="The calibrated profile (default: the data dir's)."
    ),
    out: Path = typer.Option(
        None, "--out", help="Where to write it (default: in place; folders created)."
    ),
    topology: Path = typer.Option(
        None,
        "--topology",
        help="Topology file: which replicas share a machine (default: the gateway's).",
    ),
) -> None:
    """Re-read a calibrated profile's prefill and decode speed and spreads from the fleet's
    own traffic in the usage ledger (no idle fleet, no probe requests): the engine's speed
    as it served the requests that arrived from --since to --until."""
    import datetime

    from modelgrid.cli.common import read_run
    from modelgrid.planner import PlanInputError
    from modelgrid.planner import profile as profiles
    from modelgrid.planner.calibration import spreads_read
    from modelgrid.planner.recalibration import recalibrate
    from modelgrid.tenancy.timings import read_served

    start = _when(since, "--since")
    now = datetime.datetime.now(datetime.UTC)
    end = _when(until, "--until") if until is not None else now
    if end > now:
        raise _fail(f"--until: {_stamp(end)} is after now ({_stamp(now)})")
    if end <= start:
        if until is None:
            raise _fail(f"--since: {_stamp(start)} is not before now ({_stamp(end)})")
        raise _fail(f"--until: {_stamp(end)} is not after --since {_stamp(start)}")
    try:
        fleet = _topology(topology)
        if region is not None and fleet.region(region) is None:
            raise PlanInputError(
                f"--region: {region!r} is not a region of the topology "
                f"({', '.join(r.id for r in fleet.regions)})",
                param="--region",
            )
        path, base = _profile_of(model, profile_path)
        if not base.calibrated_at:
            raise PlanInputError(
                f"--profile: {path} is not calibrated: run `modelgrid plan calibrate` first "
                "(the speed is read net of its overhead and host slowdown)",
                param="--profile",
            )
        target = out or path
        profiles.check_writable(target)
        served = read_run(lambda sessions: read_served(sessions, model, start, end, region=region))
        window = f"from {_stamp(start)} to {_stamp(end)}" + (
            f" in region {region!r}" if region is not None else ""
        )
        done = recalibrate(base, served, fleet, window=window)
        interval = (
            f"{start.isoformat(timespec='milliseconds')}/{end.isoformat(timespec='milliseconds')}"
        )
        result = done.profile.model_copy(update={"recalibrated_on": interval})
        profiles.save(result, target)
    except PlanInputError as exc:
        raise _fail(exc.message) from None
    speed = done.speed
    console.print(
        f"{len(served)} requests of {model} in the ledger {window}: prefill "
        f"{speed.prefill:.3f} x the profile's fit ({speed.prefill_requests} that found their replica "
        "idle), decode "
        f"{speed.decode:.3f} x ({speed.decode_requests} requests); "
        f"{spreads_read(speed.prefill_requests, speed.decode_requests)} (each a time over the "
        "fit: above 1 is slower)",
        highlight=False,
    )
    calibrated = base.as_calibrated()
    _print_wander_and_sharing(done, calibrated.host_slowdown)
    _print_path(done, calibrated.overhead_ms)
    console.print(f"written {target}", highlight=False)


__all__ = ["app"]
