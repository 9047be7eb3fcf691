"""``modelgrid plan``: the example files through the CLI, the usage ledger as demand, and bad
input as one named line with exit status 2 (no traceback)."""

from __future__ import annotations

import html
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from modelgrid.cli import app
from modelgrid.planner import profile as profiles
from modelgrid.planner import report
from modelgrid.routing import topology as topo
from tests.databases import insert_usage, migrated_sqlite, usage_row, with_sessions

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "planner"
SMALL, BIG = "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"
EXAMPLE = ("--forecast", str(EXAMPLES / "demand.toml"), "--config", str(EXAMPLES / "plan.toml"),
           "--topology", str(EXAMPLES / "topology.toml"))  # fmt: skip


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """Settings in ``tmp_path``, with made-up profiles of both models where ``plan`` looks."""
    for model, scale in ((SMALL, 1.0), (BIG, 2.5)):
        p = profiles.synthetic(model, prefill_base_ms=20 * scale, prefill_per_token_ms=0.8 * scale,
                               decode_ms=25 * scale)  # fmt: skip
        profiles.save(p, profiles.default_path(tmp_path, model))
    return {
        "MODELGRID_DATA_DIR": str(tmp_path),
        "MODELGRID_DATABASE__URL": migrated_sqlite(tmp_path / "mg.db"),
        "COLUMNS": "200",
    }


def invoke(env: dict[str, str], *args: str) -> tuple[int, str]:
    done = CliRunner().invoke(app, ["plan", *args], env=env)
    if done.exception is not None and not isinstance(done.exception, SystemExit):
        raise done.exception
    assert "Traceback" not in done.output
    return done.exit_code, done.output


def _no_constant(name: str) -> None:
    raise AssertionError(f"plan.json holds {name}, which JSON does not have")


def test_the_example_plans_and_writes_a_topology_the_gateway_reads(
    env: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "plan"
    code, output = invoke(env, *EXAMPLE, "--out", str(out), "--no-verify")
    assert code == 0, output
    assert "Plan:" in output and "replicas" in output
    fleet = topo.load(out / "topology.toml")
    summary = json.loads((out / "plan.json").read_text(), parse_constant=_no_constant)
    # not simulated (--no-verify): null in the JSON, "-" in the table
    assert {(r["utilisation"], r["ttft_p50_ms"], r["ttft_p95_ms"]) for r in summary["rows"]} == {
        (None, None, None)
    }
    assert sum(len(d.replicas) for d in fleet.deployments) == summary["replicas"] > 0
    eu = {f["region"] for f in summary["flows"] if f["workspace"] == "bank-eu"}
    assert eu and eu <= {"eu-west-1", "eu-central-1"}
    kr = {f["region"] for f in summary["flows"] if f["workspace"] == "health-kr"}
    assert kr == {"ap-northeast-2"}
    assert (out / "report.html").read_text().startswith("<!doctype html>")
    assert (out / "utilisation.png").read_bytes()[:4] == b"\x89PNG"


def test_without_matplotlib_the_plan_says_it_wrote_no_plots(
    env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the ``plan`` extra is missing, the topology, JSON and HTML are written and the
    CLI says why there is no PNG (it listed the files and said nothing of plots)."""

    def no_matplotlib(*_: object) -> dict[str, Path]:
        raise ImportError("No module named 'matplotlib'")

    monkeypatch.setattr(report, "_plots", no_matplotlib)
    out = tmp_path / "plan"
    code, output = invoke(env, *EXAMPLE, "--out", str(out), "--no-verify")
    assert code == 0, output
    assert "no plots: Plots need matplotlib: pip install 'modelgrid[plan]'." in output.splitlines()
    assert sorted(p.name for p in out.iterdir()) == ["plan.json", "report.html", "topology.toml"]
    assert f"<p>{html.escape(report.NO_PLOTS)}</p>" in (out / "report.html").read_text()


def test_what_ifs_through_the_cli(env: dict[str, str], tmp_path: Path) -> None:
    base = [*EXAMPLE, "--no-verify"]
    # no COLUMNS: as with output sent to a file, where Rich assumes 80 columns; a message
    # still comes whole on one line (soft wrap), for logs and grep
    narrow = {k: v for k, v in env.items() if k != "COLUMNS"}
    code, output = invoke(
        narrow, *base, "--out", str(tmp_path / "a"), "--without", "ap-northeast-2"
    )
    assert code == 0, output
    assert (
        "unserved: qwen2.5-coder-0.5b-instruct from ap-northeast-2 (workspace health-kr): "
        "residency allows no region that can hold it"
    ) in output.splitlines()
    # one table a model, its title the model's id and each region whole, at 80 columns
    lines = [line.split() for line in output.splitlines()]
    assert ["qwen2.5-coder-1.5b-instruct"] in lines and ["qwen2.5-coder-0.5b-instruct"] in lines
    assert any(cells[:2] == ["│", "eu-west-1"] and cells[5] == "-" for cells in lines if cells)
    code, output = invoke(env, *base, "--out", str(tmp_path / "b"), "--add-region", "mx-central-1",
                          "--scale-demand", "us-east-1=2")  # fmt: skip
    assert code == 0, output
    code, output = invoke(env, *base, "--add-region", "af-south-1")
    assert code == 2 and "--add-region: 'af-south-1' is not among the plan file's" in output


def test_from_usage_reads_the_ledger(env: dict[str, str], tmp_path: Path) -> None:
    start = datetime(2026, 11, 3, 14, 0, tzinfo=UTC)
    rows = [
        usage_row(f"r{i}", start + timedelta(seconds=2 * i), model=SMALL, region="local",
                  prompt_tokens=100 + i % 50, completion_tokens=30)
        for i in range(600)
    ]  # fmt: skip
    url = env["MODELGRID_DATABASE__URL"]
    with_sessions(url, lambda sessions: insert_usage(sessions, rows))
    out = tmp_path / "plan"
    code, output = invoke(
        env, "--from-usage", "2026-11", "--out", str(out), "--ttft-p95-ms", "3000"
    )
    assert code == 0, output
    summary = json.loads((out / "plan.json").read_text())
    assert summary["met"] and summary["rows"][0]["region"] == "local"
    assert {c["hour"] for c in summary["checks"]} == {14}


@pytest.mark.parametrize(
    ("forecast", "extra", "message"),
    [
        ('region = "mars-1"\nmodel = "qwen2.5-coder-0.5b-instruct"\nrps = 1', (), "demand[0].region: unknown region 'mars-1'"),
        ('region = "us-east-1"\nmodel = "gpt-9"\nrps = 1', (), "demand[0].model: no engine profile for model 'gpt-9'"),
        ('region = "us-east-1"\nmodel = "qwen2.5-coder-0.5b-instruct"\nrps = -2', (), "demand[0].rps: a rate must be a finite number >= 0"),
        ('region = "us-east-1"\nmodel = "qwen2.5-coder-0.5b-instruct"\nrps = 1', ("--ttft-p95-ms", "5"), "slo.ttft_p95_ms: unreachable for qwen2.5-coder-0.5b-instruct"),
        ('region = "us-east-1"\nmodel = "qwen2.5-coder-0.5b-instruct"\nrps = 1', ("--scale-demand", "us-east-1"), "--scale-demand: expected NAME=VALUE"),
    ],
)  # fmt: skip
def test_bad_input_is_named_with_status_2(
    env: dict[str, str], tmp_path: Path, forecast: str, extra: tuple[str, ...], message: str
) -> None:
    path = tmp_path / "demand.toml"
    path.write_text(f"[[demand]]\n{forecast}\n[shapes.{SMALL!r}]\n"
                    'prompt = { kind = "fixed", mean = 100 }\noutput = { kind = "fixed", mean = 20 }\n'
                    .replace("'", '"'))  # fmt: skip
    code, output = invoke(env, "--forecast", str(path), "--topology",
                          str(EXAMPLES / "topology.toml"), "--out", str(tmp_path / "o"), *extra)  # fmt: skip
    assert code == 2, output
    assert message in " ".join(output.split())


def test_one_demand_source_and_a_real_month(env: dict[str, str]) -> None:
    code, output = invoke(env)
    assert code == 2 and "give exactly one of --from-usage" in output
    code, output = invoke(env, "--from-usage", "2026-13")
    assert code == 2 and "--from-usage: month must be YYYY-MM" in output


def test_a_profile_that_cannot_drive_the_plan_is_named(env: dict[str, str], tmp_path: Path) -> None:
    """A profile without its fits, one of another model, a model no demand names, and a
    topology that is not UTF-8: one line naming the file or option, status 2."""
    base = ["--forecast", str(EXAMPLES / "demand.toml"), "--config", str(EXAMPLES / "plan.toml"),
            "--topology", str(EXAMPLES / "topology.toml"), "--no-verify",
            "--out", str(tmp_path / "o")]  # fmt: skip
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"model": SMALL}))
    code, output = invoke(env, *base, "--profile", f"{SMALL}={partial}")
    assert code == 2 and f"--profile: {partial} has no prefill or decode fit" in output
    big = profiles.default_path(tmp_path, BIG)
    code, output = invoke(env, *base, "--profile", f"{SMALL}={big}")
    assert code == 2 and f"--profile: {big} is a profile of '{BIG}', not '{SMALL}'" in output
    code, output = invoke(env, *base, "--profile", f"nope={big}")
    assert code == 2 and f"--profile nope={big}: no demand for the model 'nope'" in output
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"a\xff\xfe = 1\n")
    code, output = invoke(env, *base[:4], "--topology", str(binary), "--out", str(tmp_path / "o"))
    assert code == 2 and f"--topology: {binary}: not UTF-8 text (byte 1)" in " ".join(
        output.split()
    )


def test_a_workspace_rule_of_the_config_file_is_named_with_the_file(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Residency rules come from the API keys in the database or from ``--config`` (which
    overrides them): an unknown region in one is named with the file it is in."""
    config = tmp_path / "plan.toml"
    config.write_text('[[workspaces]]\nname = "acme"\nallowed_regions = ["mars-1"]\n')
    demand = tmp_path / "demand.toml"
    demand.write_text(
        '[[demand]]\nworkspace = "acme"\nregion = "us-east-1"\n'
        f'model = "{SMALL}"\nrps = 1\n[shapes."{SMALL}"]\n'
        'prompt = { kind = "fixed", mean = 100 }\noutput = { kind = "fixed", mean = 20 }\n'
    )
    code, output = invoke(env, "--forecast", str(demand), "--config", str(config), "--topology",
                          str(EXAMPLES / "topology.toml"), "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2, output
    assert f"{config}: workspace acme: allowed_regions names unknown region 'mars-1'" in " ".join(
        output.split()
    ), output


def test_out_that_cannot_be_a_folder_is_named_before_planning(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A file as ``--out``, or a path below one: one line, status 2, and no plan computed
    first (they were tracebacks from the report's ``mkdir``, after the whole plan)."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, message in ((afile, f"--out {afile}: not a directory"),
                         (afile / "sub", f"--out {afile / 'sub'}: {afile} is not a directory")):  # fmt: skip
        code, output = invoke(env, *EXAMPLE, "--out", str(out))
        assert code == 2 and message in output.splitlines(), output
        assert "Plan:" not in output
    assert afile.read_text() == "x"


def test_an_unknown_model_of_the_demand_is_named_before_an_unused_profile(
    env: dict[str, str], tmp_path: Path
) -> None:
    """The demand names a model with no profile and ``--profile`` gives one for another:
    the demand's model is the fault (the message blamed the ``--profile``); a rate that is
    no rate is named with its file."""
    shapes = ('[shapes."gpt-9"]\nprompt = { kind = "fixed", mean = 100 }\n'
              'output = { kind = "fixed", mean = 20 }\n')  # fmt: skip
    demand = tmp_path / "demand.toml"
    demand.write_text(f'[[demand]]\nregion = "us-east-1"\nmodel = "gpt-9"\nrps = 1\n{shapes}')
    profile = profiles.default_path(Path(env["MODELGRID_DATA_DIR"]), SMALL)
    code, output = invoke(env, "--forecast", str(demand), "--topology",
                          str(EXAMPLES / "topology.toml"), "--profile", f"{SMALL}={profile}",
                          "--out", str(tmp_path / "o"))  # fmt: skip
    assert code == 2, output
    assert (
        f"demand[0].model: no engine profile for model 'gpt-9' (profiles: {SMALL}; run "
        "`modelgrid plan profile --model gpt-9` for a packaged model, or give --profile "
        "gpt-9=PATH)"
    ) in " ".join(output.split()), output
    demand.write_text(f'[[demand]]\nregion = "us-east-1"\nmodel = "gpt-9"\nrps = nan\n{shapes}')
    code, output = invoke(env, "--forecast", str(demand), "--out", str(tmp_path / "o"))
    assert code == 2 and (
        f"{demand}: demand[0].rps: a rate must be a finite number >= 0 (got nan)"
        in " ".join(output.split())
    ), output


CALIBRATED_AT = "2026-12-07T09:00:00+00:00"


def calibrated(data_dir: Path) -> Path:
    """SMALL's made-up profile, marked calibrated (``plan recalibrate`` needs one)."""
    path = profiles.default_path(data_dir, SMALL)
    profiles.save(profiles.load(path).model_copy(update={"calibrated_at": CALIBRATED_AT}), path)
    return path


def served(
    rid: str,
    arrived: datetime,
    ttft_ms: int,
    last_ms: int,
    *,
    replica: str = "local-0",
    end_ms: int = 30,
) -> dict[str, Any]:
    """A ledger row of SMALL served by ``replica`` (100 uncached prompt tokens, 16 out) that
    arrived at ``arrived``: first and last token ``ttft_ms`` / ``last_ms`` after, the
    request's end ``end_ms`` after its last token (llama-cpp-python ends a step later)."""
    total = last_ms + end_ms
    return usage_row(rid, arrived + timedelta(milliseconds=total), model=SMALL, region="local",
                     replica=replica, ttft_ms=ttft_ms, last_token_ms=last_ms, total_ms=total,
                     prompt_tokens=100, completion_tokens=16)  # fmt: skip


def recalibrated_from(env: dict[str, str], rows: list[dict[str, Any]], *args: str) -> str:
    """``rows`` written to the ledger, then ``plan recalibrate --model SMALL *args``: its
    output, whitespace collapsed (it must succeed)."""
    with_sessions(env["MODELGRID_DATABASE__URL"], lambda sessions: insert_usage(sessions, rows))
    code, output = invoke(env, "recalibrate", "--model", SMALL, *args)
    assert code == 0, output
    return " ".join(output.split())


def test_recalibrate_reads_the_engine_speed_from_the_ledger(
    env: dict[str, str], tmp_path: Path
) -> None:
    calibrated(tmp_path)
    t0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    rows = []
    for i in range(30):  # SMALL's fit: prefill 20 + 0.8 n ms, decode 25 ms a token
        ttft, total = round((20 + 0.8 * 100) * 1.2), round((20 + 0.8 * 100) * 1.2 + 15 * 25 * 0.92)
        rows.append(served(f"r{i}", t0 + timedelta(seconds=5 * i), ttft, total))
    rows[-1] = served("r29", t0 + timedelta(seconds=145), 130, 130 + 345)  # 1.3, 0.92
    out = tmp_path / "recentred.json"
    output = recalibrated_from(env, rows, "--since", "2026-12-07T11:00:00+01:00",
                               "--until", "2026-12-07T10:05:00", "--out", str(out))  # fmt: skip
    assert (
        "30 requests of qwen2.5-coder-0.5b-instruct in the ledger from 2026-12-07T10:00:00+00:00 "
        "to 2026-12-07T10:05:00+00:00: prefill 1.200 x the profile's fit (30 that found their "
        "replica idle), decode 0.920 x (30 requests); spreads read from the requests"
    ) in output
    assert (
        "serving-path overhead kept as calibrated (0.0 ms): 0 requests waited behind another, "
        "10 are needed to re-read it"
    ) in output
    p = profiles.load(out)
    assert p.prefill_spread == (1.2,) * 29 + (1.3,) and p.decode_spread == (0.92,) * 30
    assert p.recalibrated_on == "2026-12-07T10:00:00.000+00:00/2026-12-07T10:05:00.000+00:00"
    assert p.calibrated_at == CALIBRATED_AT


def test_recalibrate_rereads_the_serving_paths_overhead(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = calibrated(tmp_path)
    profiles.save(profiles.load(path).model_copy(update={"overhead_ms": 150.0}), path)
    t0 = datetime(2026, 12, 7, 10, 0, tzinfo=UTC)
    prefill, decode = round((20 + 0.8 * 100) * 1.1), 15 * 25  # SMALL's fits, prefill 1.1 x
    rows = []
    for i in range(12):  # pairs: the first idle (40 ms of path), the second behind it
        at = t0 + timedelta(seconds=10 * i)
        rows.append(served(f"a{i}", at, 40 + prefill, 40 + prefill + decode))
        first = 40 + prefill + decode - 10 + prefill  # from its arrival, 10 ms after the first
        rows.append(served(f"b{i}", at + timedelta(milliseconds=10), first, first + decode))
    output = recalibrated_from(env, rows, "--since", "2026-12-07T10:00:00Z", "--until",
                               "2026-12-07T10:05:00Z")  # fmt: skip
    assert (
        "serving-path overhead re-read: 40.0 ms, calibrated 150.0, from 12 requests that "
        "waited behind another on their replica (their prefill apart from the path)"
    ) in output, output
    assert "prefill 1.100 x the profile's fit (12 that found their replica idle)" in output
    assert profiles.load(path).overhead_ms == 40.0


def test_recalibrate_rereads_how_replicas_sharing_a_machine_slow_each_other(
    env: dict[str, str], tmp_path: Path
) -> None:
    path = calibrated(tmp_path)
    shared = profiles.load(path).model_copy(update={"replicas_per_host": 2, "host_slowdown": (1.0, 1.05)})  # fmt: skip
    profiles.save(shared, path)
    fleet = tmp_path / "fleet.toml"
    topo.save(
        topo.Topology(
            (topo.Region("local"),),
            (topo.Deployment(SMALL, "local", (topo.Replica("a", "upstream", "http://h/a/v1"),
                                              topo.Replica("b", "upstream", "http://h/b/v1"))),),
            gateway_region="local",
        ),
        fleet,
    )  # fmt: skip
    # SMALL's fit at 100 prompt tokens and 16 output: prefill 100 ms, decode 15 x 25 ms; the
    # engine at 1.1 (prefill) and 0.96 (decode) of it, and 1.2x slower with both replicas busy
    t0, rows = datetime(2026, 12, 7, 10, 0, tzinfo=UTC), []
    shapes = [(5.0 * i, r, 110, 110 + 360) for i, r in zip(range(15), "ab" * 8, strict=False)]
    shapes += [(100.0 + 5 * i, r, 132, 132 + 432) for i in range(10) for r in "ab"]
    for j, (at_s, replica, ttft, last) in enumerate(shapes):
        rows.append(served(f"r{j}", t0 + timedelta(seconds=at_s), ttft, last, replica=replica))
    text = recalibrated_from(env, rows, "--since", "2026-12-07T10:00:00Z", "--until",
                             "2026-12-07T10:05:00Z", "--topology", str(fleet))  # fmt: skip
    assert "prefill 1.100 x the profile's fit (35 that found their replica idle), decode 0.960 x (35 requests)" in text, text  # fmt: skip
    assert "host slowdown re-read from the ledger (calibrated 1.050): 2 busy 1.200 (read, 20 request-equivalents)" in text, text  # fmt: skip
    assert profiles.load(path).host_slowdown == (1.0, 1.2)


def test_recalibrate_says_how_far_the_speed_moved_within_the_window(
    env: dict[str, str], tmp_path: Path
) -> None:
    calibrated(tmp_path)
    t0, rows = datetime(2026, 12, 7, 10, 0, tzinfo=UTC), []
    for i in range(40):  # decode at 0.92 of the fit for 5 minutes, then 1.08; prefill 1.0
        last = 100 + round(15 * 25 * (0.92 if i < 20 else 1.08))
        rows.append(served(f"r{i}", t0 + timedelta(seconds=15 * i), 100, last, end_ms=0))
    output = recalibrated_from(env, rows, "--since", "2026-12-07T10:00:00Z", "--until",
                               "2026-12-07T10:10:00Z")  # fmt: skip
    assert (
        "by 5-minute slice (2 of 10 requests or more): prefill 1.000-1.000, decode 0.920-1.080 "
        "x the profile's fitted times (above 1: slower)"
    ) in output, output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--since", "yesterday"), "--since: expected an ISO 8601 time (2026-12-07T10:00:00Z), got 'yesterday'"),
        (("--since", "2026-12-07T10:00:00Z", "--until", "2026-12-07T09:00:00Z"), "--until: 2026-12-07T09:00:00+00:00 is not after --since"),
        (("--since", "2999-01-01T00:00:00Z",), "--since: 2999-01-01T00:00:00+00:00 is not before now"),
        (("--since", "2026-12-07t10:00:00z", "--until", "2026-12-07t09:00:00.250z"), "--until: 2026-12-07T09:00:00.250+00:00 is not after --since 2026-12-07T10:00:00+00:00"),
        (("--since", "2026-12-07T10:00:00Z", "--until", "9999-12-31T23:59:59Z"), "--until: '9999-12-31T23:59:59Z' is after now"),
        (("--since", "0001-01-01T00:00:00+01:00"), "--since: '0001-01-01T00:00:00+01:00' is before 0001-01-01T00:00:00Z"),
        (("--since", "2026-12-07T10:00:00Z", "--until", "2026-12-07T11:00:00Z", "--region", "local"), "the ledger holds 0 served requests of qwen2.5-coder-0.5b-instruct from 2026-12-07T10:00:00+00:00 to 2026-12-07T11:00:00+00:00 in region 'local', 0 of two tokens"),
        (("--since", "2026-12-07T10:00:00Z", "--until", "2999-01-01"), "--until: 2999-01-01T00:00:00+00:00 is after now"),
        (("--since", "2026-12-07T10:00:00Z", "--until", ""), "--until: expected an ISO 8601 time"),
        (("--since", "2026-12-07T10:00:00Z", "--out", "/dev/null"), "cannot write the profile to /dev/null: not a regular file"),
        (("--since", "2026-12-07T10:00:00Z", "--out", ""), "cannot write the profile to .: not a file name"),
        (("--since", "2026-12-07T10:00:00Z", "--region", "mars-1"), "--region: 'mars-1' is not a region of the topology (local)"),
        (("--since", "2026-12-07T10:00:00Z", "--model", "nope"), "--model nope: no engine profile at "),
        (("--since", "2026-12-07T10:00:00Z", "--model", "nope"), "nope.json: not a packaged chat model (`modelgrid models`), which `modelgrid plan profile` measures: give --profile PATH"),
        (("--since", "2026-12-07T10:00:00Z", "--model", " "), "--model: give the served model's id, got ' '"),
        (("--since", "2026-12-07T10:00:00Z", "--profile", ""), "--profile: engine profile .: a directory, not a profile file"),
        (("--since", "2026-12-07T10:00:00Z", "--profile", "/nonexistent.json"), "--profile: no engine profile at /nonexistent.json"),
        (("--since", "2026-12-07T10:00:00Z", "--topology", "/nonexistent.toml"), "--topology: no such file /nonexistent.toml"),
    ],
)  # fmt: skip
def test_recalibrate_bad_input_is_named(
    env: dict[str, str], tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    calibrated(tmp_path)
    code, output = invoke(env, "recalibrate", "--model", SMALL, *args)
    assert code == 2 and message in " ".join(output.split()), output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--model", "nope"), "--model nope: no engine profile at "),
        (("--model", "nope"), "not a packaged chat model (`modelgrid models`)"),
        (("--spacing-s", "inf"), "--spacing-s: at most 3600 seconds, got inf"),
        (("--spacing-s", "3601"), "--spacing-s: at most 3600 seconds, got 3601"),
        (("--url", ""), "--url: expected the gateway's API root, http://HOST:PORT/v1, got ''"),
        (("--url", "127.0.0.1:8000/v1"), "--url: expected the gateway's API root, http://HOST:PORT/v1, got '127.0.0.1:8000/v1'"),
        (("--model", ""), "--model: give the served model's id, got ''"),
        (("--profile", ""), "--profile: engine profile .: a directory, not a profile file"),
        (("--profile", "/nonexistent.json"), "--profile: no engine profile at /nonexistent.json"),
    ],
)  # fmt: skip
def test_calibrate_names_the_profile_it_cannot_start_from(
    env: dict[str, str], args: tuple[str, ...], message: str
) -> None:
    # refused before any request: nothing listens at the URL
    code, output = invoke(env, "calibrate", "--key", "sk-x", "--url", "http://127.0.0.1:9/v1",
                          *args)  # fmt: skip
    assert code == 2 and message in " ".join(output.split()), output


def test_calibrate_names_a_gateway_that_does_not_answer(env: dict[str, str]) -> None:
    code, output = invoke(env, "calibrate", "--key", "sk-x", "--url", "http://127.0.0.1:9/v1",
                          "--model", SMALL, "--requests", "1")  # fmt: skip
    assert code == 2 and (
        "calibration: no answer from http://127.0.0.1:9/v1: All connection attempts failed"
    ) in " ".join(output.split()), output


def test_calibrate_without_a_profile_says_how_to_measure_one(
    env: dict[str, str], tmp_path: Path
) -> None:
    profiles.default_path(tmp_path, SMALL).unlink()
    code, output = invoke(env, "calibrate", "--key", "sk-x", "--model", SMALL)
    assert code == 2 and (
        f"--model {SMALL}: no engine profile at {profiles.default_path(tmp_path, SMALL)}: run "
        f"`modelgrid plan profile --model {SMALL}` first"
    ) in " ".join(output.split()), output


def test_recalibrate_refuses_a_profile_never_calibrated(
    env: dict[str, str], tmp_path: Path
) -> None:
    code, output = invoke(env, "recalibrate", "--model", SMALL, "--since", "2026-12-07T10:00:00Z")
    path = profiles.default_path(tmp_path, SMALL)
    assert code == 2 and (
        f"--profile: {path} is not calibrated: run `modelgrid plan calibrate` first"
    ) in " ".join(output.split()), output


def test_a_profile_is_not_written_below_a_file(env: dict[str, str], tmp_path: Path) -> None:
    calibrated(tmp_path)
    (tmp_path / "regular").write_text("x")
    out = tmp_path / "regular" / "p.json"
    code, output = invoke(env, "recalibrate", "--model", SMALL, "--since", "2026-12-07T10:00:00Z",
                          "--out", str(out))  # fmt: skip
    assert code == 2 and f"cannot write the profile to {out}: {tmp_path / 'regular'} is a file, not a folder" in " ".join(output.split()), output  # fmt: skip


def test_recalibrate_names_which_spreads_it_read_from_the_requests() -> None:
    from modelgrid.planner.calibration import spreads_read as _spreads

    assert _spreads(10, 10) == "spreads read from the requests"
    assert _spreads(9, 30) == (
        "prefill spread re-centred (fewer than 10 requests), decode spread read from the requests"
    )
    assert _spreads(9, 9) == "spreads re-centred (fewer than 10 requests to read them from)"
