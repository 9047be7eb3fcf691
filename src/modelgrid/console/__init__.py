"""The web console, served by the gateway at ``/console`` (``docs/console.md``).

Server-rendered HTML (Jinja2) with htmx partial updates, over the control plane (changes)
and the read models (``tenancy``); it adds no business logic of its own. Sign-in is by API
key (``console.access``: operators, workspace members, key holders), sessions live in the
database (``console.sessions``), every POST carries a CSRF token (``console.security``).
Pages: one module each under ``console/pages``, listed once in ``console.nav.PAGES``.
"""

from __future__ import annotations

from modelgrid.console.site import create_console

__all__ = ["create_console"]
