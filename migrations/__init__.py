"""Alembic migrations for the service database (applied by the service at start and by `reid db upgrade`)."""
