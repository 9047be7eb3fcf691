"""Serving: turns core requests into engine calls with admission and metering (no web framework)."""
