"""Alembic head is exactly the models: nothing to autogenerate after upgrading from empty."""

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
