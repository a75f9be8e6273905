"""`UTCDateTime`: aware UTC in, aware UTC out, on SQLite and PostgreSQL; its one-call
processors store and read exactly what SQLAlchemy's own DateTime processing would."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.types import TypeDecorator

from storage.models import UTCDateTime

SQLITE = sqlite.dialect()
ASYNCPG = asyncpg.dialect()
zones = st.integers(min_value=-23 * 60, max_value=23 * 60).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
aware = st.datetimes(
    min_value=datetime(1901, 1, 2), max_value=datetime(9998, 12, 30), timezones=zones
)


def _generic(dialect: sa.Dialect, kind: str) -> object:
    """The processor TypeDecorator itself builds from process_bind_param/result_value."""
    typ = UTCDateTime().dialect_impl(dialect)
    if kind == "bind":
        return TypeDecorator.bind_processor(typ, dialect)
    return TypeDecorator.result_processor(typ, dialect, None)


@given(aware)
def test_sqlite_stores_the_text_sqlalchemy_would(value: datetime) -> None:
    ours = UTCDateTime().dialect_impl(SQLITE).bind_processor(SQLITE)
    theirs = _generic(SQLITE, "bind")
    assert ours is not None and ours(value) == theirs(value)  # type: ignore[operator]
    assert ours(value.replace(microsecond=0)) == theirs(value.replace(microsecond=0))  # type: ignore[operator]


@given(aware)
def test_sqlite_reads_back_what_sqlalchemy_would(value: datetime) -> None:
    stored = _generic(SQLITE, "bind")(value)  # type: ignore[operator]
    ours = UTCDateTime().dialect_impl(SQLITE).result_processor(SQLITE, None)
    theirs = _generic(SQLITE, "result")
    read = ours(stored)
    assert read == theirs(stored) == value  # type: ignore[operator]
    assert read is not None and read.tzinfo is UTC


@given(aware)
def test_postgresql_binds_and_reads_aware_utc(value: datetime) -> None:
    bind = UTCDateTime().dialect_impl(ASYNCPG).bind_processor(ASYNCPG)
    result = UTCDateTime().dialect_impl(ASYNCPG).result_processor(ASYNCPG, None)
    assert bind is not None
    bound = bind(value)
    assert bound == _generic(ASYNCPG, "bind")(value) == value  # type: ignore[operator]
    assert bound.tzinfo is UTC
    assert result(bound) == value and result(bound).tzinfo is UTC
    assert result(value.astimezone(UTC).replace(tzinfo=None)) == value


@pytest.mark.parametrize("dialect", [SQLITE, ASYNCPG], ids=["sqlite", "asyncpg"])
def test_none_passes_and_naive_values_are_refused(dialect: sa.Dialect) -> None:
    bind = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    result = UTCDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert bind is not None and bind(None) is None and result(None) is None
    with pytest.raises(ValueError, match="naive"):
        bind(datetime(2026, 1, 1))


async def test_values_round_trip_and_compare_in_the_database(engine: AsyncEngine) -> None:
    table = sa.Table(
        "utc_datetime_probe",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", UTCDateTime()),
    )
    values = [
        datetime(2026, 11, 22, 17, 0, 0, tzinfo=UTC),
        datetime(2026, 11, 22, 18, 30, 0, 250_000, tzinfo=timezone(timedelta(hours=1))),
        datetime(2026, 11, 22, 17, 45, 0, 1, tzinfo=UTC),
        None,
    ]
    async with engine.begin() as connection:
        await connection.run_sync(table.create)
        try:
            await connection.execute(
                table.insert(), [{"id": i, "at": value} for i, value in enumerate(values)]
            )
            rows = (await connection.execute(sa.select(table.c.at).order_by(table.c.id))).all()
            assert [at for (at,) in rows] == values
            assert all(at.tzinfo is UTC for (at,) in rows if at is not None)
            # Compared as stored (on SQLite as text): the order must be the times' order.
            later = await connection.execute(
                sa.select(table.c.id).where(table.c.at > values[1]).order_by(table.c.id)
            )
            assert later.scalars().all() == [2]  # 17:30 UTC < 17:45 UTC
        finally:
            await connection.run_sync(table.drop)
