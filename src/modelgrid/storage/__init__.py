"""Persistence: SQLAlchemy 2 models, async sessions, repositories and Alembic migrations."""
