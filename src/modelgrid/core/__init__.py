"""Leaf layer: the error tree, inference types and identifiers (stdlib + pydantic only)."""
