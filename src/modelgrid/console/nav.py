"""THE list of console pages: the nav is built from it and ``console.site`` mounts each
page's router from it. Adding a page is one module under ``console/pages/`` (a ``router``,
its routes under the page's path), one template, and one line here.

A page whose ``module`` is ``None`` is not built yet: its nav link answers 404 for now.
"""

from __future__ import annotations

from dataclasses import dataclass

from modelgrid.console.access import EVERYONE, MEMBERS, Access, Viewer


@dataclass(frozen=True, slots=True)
class Page:
    """One console page.

    Attributes:
        slug: Its id (the nav marks the current one; templates pass it to ``render``).
        label: The nav's text.
        path: Its URL under the console (``/keys``).
        access: Who sees it in the nav (each route still checks its own rules).
        module: The module holding its ``router`` (``None``: not built yet).
    """

    slug: str
    label: str
    path: str
    access: frozenset[Access]
    module: str | None = None


PAGES: tuple[Page, ...] = (
    Page("overview", "Overview", "/overview", EVERYONE, "modelgrid.console.pages.overview"),
    Page("usage", "Usage", "/usage", EVERYONE, "modelgrid.console.pages.usage"),
    Page("keys", "Keys", "/keys", EVERYONE, "modelgrid.console.pages.keys"),
    Page("workspaces", "Workspaces", "/workspaces", MEMBERS, "modelgrid.console.pages.workspaces"),
    Page("prices", "Prices", "/prices", EVERYONE, "modelgrid.console.pages.prices"),
    Page("regions", "Regions", "/regions", MEMBERS, "modelgrid.console.pages.regions"),
    Page("requests", "Request log", "/requests", EVERYONE, "modelgrid.console.pages.requests"),
    Page("playground", "Playground", "/playground", EVERYONE, "modelgrid.console.pages.playground"),
    Page("audit", "Audit log", "/audit", MEMBERS, "modelgrid.console.pages.audit"),
    Page("batches", "Batches", "/batches", EVERYONE, "modelgrid.console.pages.batches"),
    Page(
        "knowledge", "Knowledge bases", "/knowledge", EVERYONE, "modelgrid.console.pages.knowledge"
    ),
)
"""In nav order."""

SESSION_MODULE = "modelgrid.console.pages.session"
"""Sign-in, sign-out and the console's root (not in the nav)."""


@dataclass(frozen=True, slots=True)
class NavItem:
    slug: str
    label: str
    path: str


def nav_for(viewer: Viewer) -> list[NavItem]:
    """The nav entries ``viewer`` sees, in order."""
    return [NavItem(p.slug, p.label, p.path) for p in PAGES if viewer.access in p.access]


HOME = "overview"
"""The page a signed-in viewer lands on (every access may open it)."""


def home_path(viewer: Viewer) -> str:
    """Where a signed-in viewer lands: ``HOME`` if they may see it, else the first built
    page they may see."""
    for p in sorted(PAGES, key=lambda p: p.slug != HOME):
        if p.module is not None and viewer.access in p.access:
            return p.path
    return "/keys"


__all__ = ["PAGES", "SESSION_MODULE", "NavItem", "Page", "home_path", "nav_for"]
