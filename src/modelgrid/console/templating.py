"""Jinja2 templates of the console (``console/templates``, autoescaped) and ``render``, which
every page uses: the layout's nav, the CSRF token and the static files' URLs come with it.

A request made by htmx (``HX-Request: true``) that names a ``partial`` gets that template
alone (a table row, a result panel); any other request gets the whole page, so every form
also works without JavaScript.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse

from modelgrid.console.access import Viewer
from modelgrid.console.nav import nav_for

PAGE_HEADERS = {
    "Cache-Control": "no-store",  # a page may hold a new key's secret
    "X-Frame-Options": "DENY",  # no framing (clickjacking); CSP's frame-ancestors for new browsers
    "Content-Security-Policy": "frame-ancestors 'none'",
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
}
"""Headers of every console page."""

HTMX_FILE = "htmx-2.0.11.min.js"
"""htmx 2.0.11 (BSD Zero Clause), from the npm registry's ``htmx.org`` package, served from
the package: no CDN."""


@cache
def environment() -> jinja2.Environment:
    """The templates' environment (built once per process, on first use)."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("modelgrid.console", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["micros"] = _micros
    env.filters["limit"] = _limit
    env.filters["budget"] = _budget
    env.filters["names"] = _names
    return env


@cache
def asset_version(name: str) -> str:
    """The first 10 hex digits of a static file's SHA-256: its URL's ``?v=``, so it can be
    cached for a year and still change with the package."""
    data = resources.files("modelgrid.console").joinpath("static", name).read_bytes()
    return hashlib.sha256(data).hexdigest()[:10]


def base_path(request: Request) -> str:
    """Where the console is mounted (``/console``, under any root path)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(
    request: Request,
    template: str,
    viewer: Viewer | None,
    *,
    page: str = "",
    title: str = "",
    status: int = 200,
    partial: str | None = None,
    headers: dict[str, str] | None = None,
    **context: Any,
) -> HTMLResponse:
    """Render ``template`` (or ``partial`` for an htmx request) as an HTML response.

    Args:
        request: The request (its mount point and htmx header).
        template: The page's template (extends ``base.html``).
        viewer: Who is signed in (``None``: nobody; the nav is left out).
        page: The nav entry to mark current.
        title: The page title.
        status: The HTTP status.
        partial: The template an htmx request gets instead of the page.
        headers: Extra response headers.
        context: The template's variables.
    """
    is_htmx = request.headers.get("hx-request") == "true"
    name = partial if partial is not None and is_htmx else template
    base = base_path(request)
    values = {
        "base": base,
        "viewer": viewer,
        "nav": nav_for(viewer) if viewer is not None else [],
        "page": page,
        "title": title,
        "csrf_token": viewer.csrf_token if viewer is not None else "",
        "css_url": f"{base}/static/console.css?v={asset_version('console.css')}",
        "htmx_url": f"{base}/static/{HTMX_FILE}",
        **context,
    }
    html = environment().get_template(name).render(values)
    response = HTMLResponse(html, status_code=status, headers=headers)
    response.headers.update(PAGE_HEADERS)
    return response


def _when(value: datetime | None) -> str:
    return "—" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


def _micros(value: int | None, currency: str = "") -> str:
    """Integer micro-units as a decimal amount (exact, no float): 1_500_000 → ``1.500000``."""
    if value is None:
        return "—"
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 1_000_000)
    text = f"{sign}{whole:,}.{frac:06d}"
    return f"{text} {currency}".strip()


def _limit(value: int | None) -> str:
    return "unlimited" if value is None else f"{value:,}"


def _budget(value: int | None, currency: str = "") -> str:
    """A monthly budget in micro-units: ``unlimited`` when unset, as the other limits."""
    return "unlimited" if value is None else _micros(value, currency)


def _names(values: list[str] | None) -> str:
    return "all" if values is None else (", ".join(values) or "none")


__all__ = ["HTMX_FILE", "PAGE_HEADERS", "asset_version", "base_path", "environment", "render"]
