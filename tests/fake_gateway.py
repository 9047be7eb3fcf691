"""``python -m tests.fake_gateway [--token-delay-s S] --port P``: a gateway process over the
scripted ``FakeEngine``, for tests (and benchmarks) that need a real server process.

``modelgrid serve`` serves the packaged models only: the scripted engine is no production
setting, so this launcher injects it through ``create_app(settings, engine_factory=...)``.
Settings come from the environment as for ``modelgrid serve``; each model of
``MODELGRID_ENGINE__MODELS`` is a ``FakeEngine`` — in its own supervised ``modelgrid engine``
process (``MODELGRID_ENGINE__ISOLATION=process``, the default: what process-supervision tests
need) or inside the gateway — served beside the settings' upstreams. Run it from the
repository root: ``ProcessServer(env, command=fake_gateway.command(0.3))`` does.
"""

from __future__ import annotations

import argparse
import functools

import uvicorn

from modelgrid.api.logs import log_config
from modelgrid.app import create_app
from modelgrid.config import Settings
from modelgrid.engines.base import Engine
from modelgrid.engines.fake import FakeEngine
from modelgrid.engines.registry import build_process_engine, build_upstream_engine


def fake_engines(settings: Settings, *, token_delay_s: float = 0.0) -> list[Engine]:
    """An engine factory for ``create_app``: a scripted replica of each model of
    ``settings.engine.models`` (``token_delay_s`` a token), then the upstreams."""
    e = settings.engine
    fakes: list[Engine]
    if e.isolation == "process":
        fakes = [
            build_process_engine(
                m,
                "fake",
                settings.models_dir,
                data_dir=settings.data_dir,
                engine=e,
                fake_token_delay_s=token_delay_s,
            )
            for m in e.models
        ]
    else:
        fakes = [FakeEngine(m, token_delay_s=token_delay_s) for m in e.models]
    return [*fakes, *(build_upstream_engine(u) for u in settings.all_upstreams())]


def command(token_delay_s: float = 0.0) -> tuple[str, ...]:
    """The arguments after the interpreter that start this launcher (``--port`` to follow)."""
    return ("-m", "tests.fake_gateway", "--token-delay-s", str(token_delay_s))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m tests.fake_gateway", description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token-delay-s", type=float, default=0.0, help="per token, seconds")
    args = ap.parse_args(argv)
    settings = Settings()
    settings.server.port = args.port
    factory = functools.partial(fake_engines, token_delay_s=args.token_delay_s)
    uvicorn.run(
        create_app(settings, factory),
        host=settings.server.host,
        port=args.port,
        log_level=settings.server.log_level,
        log_config=log_config(),
        timeout_graceful_shutdown=10,
    )


if __name__ == "__main__":
    main()
