"""Alembic environment: runs on the connection the service hands over (config.attributes["connection"]),
or on the URL in sqlalchemy.url / REID_DATABASE_URL when run by the alembic command."""

from __future__ import annotations

from alembic import context

from service.tables import Base

target_metadata = Base.metadata
config = context.config


def _run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from service.db import make_engine

    url = config.get_main_option("sqlalchemy.url")
    if not url:
        from service.settings import Settings

        url = Settings().resolved_database_url
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
