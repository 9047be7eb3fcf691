"""Helpers shared by the subcommands: settings, async runners, the audit actor, output."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from modelgrid.config import Settings

T = TypeVar("T")
# soft_wrap: a line is written whole and the terminal wraps it, so output sent to a file or
# a log collector (no terminal: Rich would assume 80 columns) keeps one message a line;
# tables still fit the width
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)


def settings() -> Settings:
    """The effective settings; an invalid one ends the command with one line per problem,
    naming its environment variable (status 2), never a traceback."""
    from pydantic import ValidationError

    try:
        return Settings()
    except ValidationError as exc:
        for e in exc.errors():
            name = "MODELGRID_" + "__".join(str(part) for part in e["loc"]).upper()
            err_console.print(
                f"[red]invalid setting {name}: {escape(e['msg'])}[/]",
                highlight=False,
            )
        raise typer.Exit(2) from None


def sealer_or_exit(s: Settings) -> Any:
    """``storage.sealing.sealer_for(s)``; a bad ``MODELGRID_SECRET_KEY`` or key file ends the
    command with one line naming it (status 2)."""
    from modelgrid.storage.sealing import sealer_for

    try:
        return sealer_for(s)
    except (ValueError, OSError) as exc:
        err_console.print(f"[red]secret key: {escape(str(exc))}[/]", highlight=False)
        raise typer.Exit(2) from None


def run(fn: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """Migrate the configured database, then run ``fn(settings)`` with an event loop."""
    from modelgrid.storage import migrate

    s = settings()
    migrate.upgrade(s.database_url)
    return asyncio.run(fn(s))


def actor() -> str:
    """The audit actor of a change made from this CLI: ``cli:<os user>``."""
    import getpass

    from modelgrid.tenancy.audit import cli_actor

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (e.g. a bare container)
        user = "unknown"
    return cli_actor(user)


def run_or_exit(fn: Callable[[Settings], Coroutine[Any, Any, T]]) -> T:
    """``run(fn)``; a ``ModelgridError`` (or an unreadable file: ``OSError``) is printed in
    red, in one line, and exits with status 1 — never a traceback."""
    from modelgrid.core.errors import ModelgridError

    try:
        return run(fn)
    except ModelgridError as exc:
        err_console.print(f"[red]{escape(exc.message)}[/]", highlight=False)
    except OSError as exc:
        err_console.print(f"[red]{escape(str(exc))}[/]", highlight=False)
    raise typer.Exit(1)


def read_run(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Migrate, run ``fn(sessions)`` (a read: usage, invoices, the audit log) on the
    configured database, dispose of the engine (errors: ``run_or_exit``)."""
    from modelgrid.storage import db

    async def go(s: Settings) -> T:
        engine = db.create_engine(s.database_url)
        try:
            return await fn(db.sessionmaker(engine))
        finally:
            await engine.dispose()

    return run_or_exit(go)


def served_models(s: Settings) -> list[str]:
    """The models a gateway with these settings runs itself or reaches through
    ``settings.upstreams``, in order."""
    return list(
        dict.fromkeys(
            [*s.engine.models, *s.engine.embedding_models, *(u.model for u in s.all_upstreams())]
        )
    )


def control_run(fn: Callable[[Any], Awaitable[T]]) -> T:
    """Migrate, run ``fn(control_plane)`` over the configured database and topology file,
    dispose of the engine (errors, an unreadable topology file included: ``run_or_exit``).
    Servers on this machine drop cached keys at once (the epoch file) and load a changed
    topology file within a second; every gateway sharing the database follows its change
    counters (``control.sync``). With ``control.topology_store = "database"`` topology changes
    go to the database (``control.topology_db.StoredTopology``, seeded from the file)."""
    from modelgrid.control import ControlPlane, FileTopology, Hooks
    from modelgrid.control.redis_feed import RedisAnnouncer
    from modelgrid.control.sync import redis_wakeup_url
    from modelgrid.control.topology import TopologyStore
    from modelgrid.control.topology_db import StoredTopology
    from modelgrid.routing import topology as topo
    from modelgrid.storage import db
    from modelgrid.storage.filestore import FileStore
    from modelgrid.tenancy.authcache import bump_epoch

    async def go(s: Settings) -> T:
        engine = db.create_engine(s.database_url)
        wake_url = redis_wakeup_url(s)  # the gateways' Redis wake-ups (``control.redis_feed``)
        announcer = RedisAnnouncer(wake_url, in_thread=False) if wake_url else None
        sessions = db.sessionmaker(engine, announce=announcer)
        models = served_models(s)
        store: TopologyStore = FileTopology(
            s.topology_path, topo.default_topology(models), s.engine.models
        )
        if s.control.topology_store == "database":
            store = await StoredTopology.open(sessions, store.current(), s.engine.models)
        plane = ControlPlane(
            sessions,
            store,
            served_models=lambda: models,
            hooks=Hooks(principals_changed=lambda: bump_epoch(s.auth_epoch_path)),
            files=FileStore(s.files_dir),
            batch=s.batch,
            plugin_allowed_networks=s.apps.plugin_allowed_networks,
            sealer=sealer_or_exit(s),
        )
        try:
            return await fn(plane)
        finally:
            await engine.dispose()
            if announcer is not None:
                announcer.close()

    return run_or_exit(go)


def print_json(obj: Any) -> None:
    """Pydantic models (or lists of them) as indented JSON on stdout."""
    from pydantic import BaseModel

    def plain(o: Any) -> Any:
        if isinstance(o, BaseModel):
            return o.model_dump(mode="json")
        if isinstance(o, list):
            return [plain(x) for x in o]
        return o

    print(json.dumps(plain(obj), indent=2))


def non_empty_list(value: str | None) -> str | None:
    """Option callback: a comma-separated list must name something (an empty scope would
    allow nothing, silently); clearing a scope is ``--unset``."""
    if value is not None and not split_list(value):
        raise typer.BadParameter(
            "give at least one value, comma-separated (an empty list would allow nothing)"
        )
    return value


def split_list(value: str | None) -> list[str] | None:
    """``"a,b"`` → ``["a", "b"]``; None stays None."""
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


LIMIT_NAMES = ("rpm", "tpm", "concurrency", "monthly_budget_micros", "monthly_token_budget")


def limits_from(
    values: dict[str, int | None], unset: list[str] | None = None, others: tuple[str, ...] = ()
) -> Any:
    """A ``protocol.admin.Limits`` setting the given values and clearing the ``unset`` names
    (fields in neither stay unset, so a PATCH leaves them alone).

    Raises:
        typer.BadParameter: a name in ``unset`` that is neither a limit nor in ``others``.
    """
    from modelgrid.protocol.admin import Limits

    fields: dict[str, int | None] = {k: v for k, v in values.items() if v is not None}
    for name in unset or ():
        if name in LIMIT_NAMES:
            fields[name] = None
        elif name not in others:
            choices = ", ".join((*others, *LIMIT_NAMES))
            raise typer.BadParameter(
                f"cannot unset {name!r}; one of: {choices}", param_hint="--unset"
            )
    return build(Limits, **fields)


def build(cls: Any, **fields: Any) -> Any:
    """``cls(**fields)`` for a pydantic model; invalid values exit with status 2 and the
    validation messages (no traceback), each naming its field as the API does
    (``tools[0].url``, ``protocol.openai.errors.loc_param``)."""
    from pydantic import ValidationError

    from modelgrid.protocol.openai.errors import loc_param

    try:
        return cls(**fields)
    except ValidationError as exc:
        for e in exc.errors():
            where = loc_param(tuple(e["loc"])) or cls.__name__
            msg = str(e["msg"]).removeprefix("Value error, ")
            err_console.print(f"[red]invalid {escape(where)}: {escape(msg)}[/]")
        raise typer.Exit(2) from None


def fmt_limits(limits: Any) -> str:
    return ", ".join(f"{k}={v}" for k, v in limits.model_dump().items() if v is not None) or "-"


def fmt_time(dt: Any) -> str:
    return f"{dt:%Y-%m-%d %H:%M}" if dt else ""
