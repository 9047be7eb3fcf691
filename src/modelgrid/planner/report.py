"""The plan as a table, a report (HTML with PNG plots: utilisation, TTFT distribution per
region, cost) and the topology file the gateway reads (``routing.topology.save``).

Plots need matplotlib (the ``plan`` extra: ``pip install 'modelgrid[plan]'``); without it the
report is written without them and says so.
"""

from __future__ import annotations

import base64
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelgrid.planner.result import Plan
from modelgrid.planner.sim import quantile
from modelgrid.routing.topology import save


@dataclass(frozen=True, slots=True)
class Row:
    """One (model, region) of the plan. Times in ms; utilisation 0-1 (busiest design hour);
    cost in micro-units per hour."""

    model: str
    region: str
    replicas: int
    estimate: int
    lower: int
    utilisation: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    cost_micros_per_hour: int


def rows(plan: Plan) -> list[Row]:
    out = []
    for model, mp in plan.models.items():
        for region, n in sorted(mp.replicas.items()):
            utils, ttft = [], []
            for res in mp.sims.values():
                u = [v for rid, v in res.utilisation().items() if res.replicas[rid][1] == region]
                if u:
                    utils.append(float(np.mean(u)))
                ttft += [s.ttft_ms for s in res.served if s.region == region]
            out.append(
                Row(
                    model,
                    region,
                    n,
                    mp.screened.get(region, 0),
                    mp.lower.get(region, 0),
                    max(utils, default=float("nan")),
                    quantile(ttft, 0.5),
                    quantile(ttft, plan.scenario.options.quantile),
                    plan.scenario.cost(region) * n,
                )
            )
    return out


def summary(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-able data (``plan.json``)."""
    s = plan.scenario
    return {
        "currency": s.currency,
        "cost_micros_per_hour": plan.cost_micros_per_hour(),
        "replicas": plan.replicas(),
        "slo": s.slo.model_dump(),
        "met": plan.met(),
        "rows": [_row(r) for r in rows(plan)],
        "flows": [
            {"model": m, "workspace": ws, "origin": origin, "region": region}
            for m, mp in plan.models.items()
            for (ws, origin), region in sorted(mp.flows.items())
        ],
        "unserved": [
            {"model": c.model, "workspace": c.workspace, "origin": c.origin, "peak_rps": c.peak}
            for c in plan.unserved()
        ],
        "checks": [_row(c) for mp in plan.models.values() for c in mp.checks],
    }


def _row(obj: Any) -> dict[str, Any]:
    """``obj``'s fields; a figure not simulated (``nan``, ``--no-verify``) is ``null``, as
    JSON has no NaN."""
    values = {name: getattr(obj, name) for name in obj.__slots__}
    return {k: None if isinstance(v, float) and v != v else v for k, v in values.items()}


def _plots(plan: Plan, out: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = rows(plan)
    labels = [f"{r.region}\n{r.model}" for r in table]
    paths = {}
    fig, ax = plt.subplots(figsize=(max(6, len(table) * 0.9), 4))
    ax.bar(labels, [r.utilisation for r in table], color="#4c72b0")
    ax.axhline(plan.scenario.options.max_utilisation, color="grey", linestyle=":")
    ax.set_ylabel("utilisation (busiest design hour)")
    ax.set_ylim(0, 1)
    ax.set_title("Replica utilisation by region and model")
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    paths["utilisation"] = out / "utilisation.png"
    fig.savefig(paths["utilisation"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model, mp in plan.models.items():
        regions = sorted(mp.replicas)
        for region in regions:
            ttft = np.sort(
                [s.ttft_ms for r in mp.sims.values() for s in r.served if s.region == region]
            )
            if ttft.size:
                ax.plot(ttft, np.arange(1, ttft.size + 1) / ttft.size, label=f"{region} ({model})")
    ax.axvline(plan.scenario.slo.ttft_p95_ms, color="red", linestyle="--", label="TTFT target")
    ax.axhline(plan.scenario.options.quantile, color="grey", linestyle=":")
    ax.set_xlabel("time to first token (ms), simulated")
    ax.set_ylabel("share of requests")
    ax.set_title("TTFT distribution per serving region")
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    paths["ttft"] = out / "ttft.png"
    fig.savefig(paths["ttft"], dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(max(6, len(table) * 0.9), 4))
    ax.bar(labels, [r.cost_micros_per_hour / 1e6 for r in table], color="#55a868")
    ax.set_ylabel(f"{plan.scenario.currency} per hour")
    ax.set_title(f"Cost: {plan.cost_micros_per_hour() / 1e6:.2f} {plan.scenario.currency}/hour")
    ax.tick_params(axis="x", labelsize=7)
    fig.tight_layout()
    paths["cost"] = out / "cost.png"
    fig.savefig(paths["cost"], dpi=110)
    plt.close(fig)
    return paths


def _html(plan: Plan, images: dict[str, Path], note: str) -> str:
    s = plan.scenario
    head = (
        "<tr><th>model</th><th>region</th><th>replicas</th><th>screen estimate</th>"
        "<th>lower bound</th><th>utilisation</th><th>TTFT p50 ms</th><th>TTFT p95 ms</th>"
        f"<th>{html.escape(s.currency)}/hour</th></tr>"
    )
    body = "".join(
        f"<tr><td>{html.escape(r.model)}</td><td>{html.escape(r.region)}</td>"
        f"<td>{r.replicas}</td><td>{r.estimate}</td><td>{r.lower}</td>"
        f"<td>{r.utilisation:.2f}</td><td>{r.ttft_p50_ms:.0f}</td><td>{r.ttft_p95_ms:.0f}</td>"
        f"<td>{r.cost_micros_per_hour / 1e6:.2f}</td></tr>"
        for r in rows(plan)
    )
    checks = "".join(
        f"<tr><td>{html.escape(c.model)}</td><td>{html.escape(c.workspace)}</td>"
        f"<td>{html.escape(c.origin)}</td><td>{c.hour:02d}:00</td><td>{c.requests}</td>"
        f"<td>{c.ttft_p50_ms:.0f}</td><td>{c.ttft_p95_ms:.0f}</td><td>{c.tpot_p95_ms:.1f}</td>"
        f"<td>{'yes' if c.met else '<b>NO</b>'}</td></tr>"
        for mp in plan.models.values()
        for c in mp.checks
    )
    unserved = "".join(
        f"<li>{html.escape(c.model)} from {html.escape(c.origin)} "
        f"(workspace {html.escape(c.workspace)}, peak {c.peak:.3g} rps)</li>"
        for c in plan.unserved()
    )
    imgs = "".join(
        f'<h2>{html.escape(name)}</h2><img src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode()}" alt="{html.escape(name)}">'
        for name, path in images.items()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>modelgrid plan</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>modelgrid plan</h1>
<p>{plan.replicas()} replica{"" if plan.replicas() == 1 else "s"}, {plan.cost_micros_per_hour() / 1e6:.2f} {html.escape(s.currency)}
per hour. Targets: TTFT p{round(s.options.quantile * 100)} &le; {s.slo.ttft_p95_ms:g} ms, time per
output token p{round(s.options.quantile * 100)} &le; {s.slo.tpot_p95_ms:g} ms;
{"met by every simulated class" if plan.met() else "<b>NOT met by every class</b>"}.</p>
<table>{head}{body}</table>
{"<h2>Unserved (residency allows no region)</h2><ul>" + unserved + "</ul>" if unserved else ""}
<h2>Simulated classes at the design hours</h2>
<table><tr><th>model</th><th>workspace</th><th>origin</th><th>hour (UTC)</th><th>requests</th>
<th>TTFT p50 ms</th><th>TTFT p95 ms</th><th>TPOT p95 ms</th><th>met</th></tr>{checks}</table>
{imgs}<p>{html.escape(note)}</p></body></html>
"""


NO_PLOTS = "Plots need matplotlib: pip install 'modelgrid[plan]'."
"""The report's note, and the CLI's, where matplotlib is missing (written without plots)."""


def write(plan: Plan, out: Path) -> dict[str, Path]:
    """Write ``topology.toml`` (the fleet, ready for ``MODELGRID_TOPOLOGY_FILE``),
    ``plan.json``, the PNG plots and ``report.html`` into ``out``.

    Returns:
        The written files by name.
    """
    out.mkdir(parents=True, exist_ok=True)
    files = {"topology": out / "topology.toml", "json": out / "plan.json"}
    save(plan.topology(), files["topology"])
    files["json"].write_text(
        json.dumps(summary(plan), indent=2, default=float, allow_nan=False) + "\n"
    )
    note = ""
    try:
        images = _plots(plan, out)
    except ImportError:
        images = {}
        note = NO_PLOTS
    files.update(images)
    files["html"] = out / "report.html"
    files["html"].write_text(_html(plan, images, note), encoding="utf-8")
    return files


__all__ = ["NO_PLOTS", "Row", "rows", "summary", "write"]
