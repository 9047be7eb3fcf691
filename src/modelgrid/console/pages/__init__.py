"""The console's pages, one module each (a ``router`` made by ``console.deps.page_router``),
listed in ``console.nav.PAGES``."""
