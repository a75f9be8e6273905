"""Alembic head is exactly the models: nothing to autogenerate after upgrading from empty."""

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

import storage.models  # noqa: F401
from storage import db

HEAD = ScriptDirectory.from_config(db.alembic_config()).get_current_head()


async def test_upgrade_from_empty_matches_models(engine: AsyncEngine) -> None:
    def diff(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, SQLModel.metadata)

    async with engine.connect() as connection:
        assert await connection.run_sync(diff) == []


async def test_migrate_is_idempotent(engine: AsyncEngine) -> None:
    await db.migrate(engine)
    await db.migrate(engine)
    async with engine.connect() as connection:
        version = await connection.exec_driver_sql("SELECT version_num FROM alembic_version")
        assert version.scalar_one() == HEAD


def test_urls_choose_async_drivers() -> None:
    assert db.async_url("sqlite:///./x.db").drivername == "sqlite+aiosqlite"
    assert db.async_url("postgresql://u:p@h:5432/d").drivername == "postgresql+asyncpg"
    assert db.async_url("postgres://u@h/d").drivername == "postgresql+asyncpg"


async def test_bodies_stored_before_0010_move_to_their_own_table_and_back(tmp_path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        await db.migrate(engine, "0009")
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                "INSERT INTO inbox (id, source, delivery_id, event, body, status, attempts,"
                " received_at, next_attempt_at) VALUES (7, 'github', 'd-7', 'ping', '{\"zen\": 1}',"
                " 'done', 1, '2026-11-01 00:00:00', '2026-11-01 00:00:00')"
            )
        await db.migrate(engine)
        async with engine.connect() as connection:
            moved = await connection.exec_driver_sql("SELECT id, body FROM inbox_body")
            assert moved.all() == [(7, '{"zen": 1}')]
            columns = await connection.exec_driver_sql(
                "SELECT name FROM pragma_table_info('inbox')"
            )
            assert "body" not in columns.scalars().all()
        async with engine.begin() as connection:
            await connection.run_sync(_downgrade, "0009")
        async with engine.connect() as connection:
            back = await connection.exec_driver_sql("SELECT id, body FROM inbox")
            assert back.all() == [(7, '{"zen": 1}')]
    finally:
        await engine.dispose()


def _downgrade(connection, revision: str) -> None:  # type: ignore[no-untyped-def]
    config = db.alembic_config()
    config.attributes["connection"] = connection
    command.downgrade(config, revision)
