"""Tenancy: API keys and principals, admission, metering (framework-free)."""
