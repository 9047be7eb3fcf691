"""modelgrid: a self-hostable, multi-region AI model cloud."""

__version__ = "0.1.0"
__all__ = ["__version__"]
