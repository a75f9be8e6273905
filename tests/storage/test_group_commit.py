"""Group commit of webhook deliveries, on SQLite and PostgreSQL: requests that arrive
together share a transaction, each learns whether its delivery was new, and a failed
transaction fails every request it held and stores none of them."""

import asyncio
import contextlib
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import db, inbox
from storage.models import InboxItem


def _delivery(delivery_id: str, body: str = "{}") -> inbox.Delivery:
    return inbox.Delivery("github", delivery_id, "issue_comment", "created", body)


async def _ids(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(InboxItem.delivery_id))
        return sorted(rows.scalars())


def _count_commits(engine: AsyncEngine) -> list[int]:
    commits: list[int] = []
    event.listen(engine.sync_engine, "commit", lambda _connection: commits.append(1))
    return commits


async def test_concurrent_deliveries_share_transactions(engine: AsyncEngine) -> None:
    writer = inbox.GroupCommit(db.session_factory(engine))
    commits = _count_commits(engine)
    results = await asyncio.gather(*(writer.store(_delivery(f"d{n}")) for n in range(50)))
    assert results == [True] * 50
    assert await _ids(engine) == sorted(f"d{n}" for n in range(50))
    # All 50 were waiting before the writer's first turn: one transaction for them all.
    assert len(commits) == 1


async def test_a_lone_delivery_is_written_at_once(engine: AsyncEngine) -> None:
    writer = inbox.GroupCommit(db.session_factory(engine))
    assert await asyncio.wait_for(writer.store(_delivery("alone")), timeout=5) is True
    assert await _ids(engine) == ["alone"]


async def test_duplicates_in_one_batch_and_across_batches(engine: AsyncEngine) -> None:
    writer = inbox.GroupCommit(db.session_factory(engine))
    assert await writer.store(_delivery("old")) is True
    results = await asyncio.gather(
        *(writer.store(_delivery(name)) for name in ["new", "old", "new", "other", "new"])
    )
    assert results == [True, False, False, True, False]
    assert await _ids(engine) == ["new", "old", "other"]


async def test_batches_are_capped(engine: AsyncEngine) -> None:
    writer = inbox.GroupCommit(db.session_factory(engine), limit=7)
    commits = _count_commits(engine)
    results = await asyncio.gather(*(writer.store(_delivery(f"d{n}")) for n in range(30)))
    assert all(results)
    assert len(commits) == 5  # 7 + 7 + 7 + 7 + 2
    assert len(await _ids(engine)) == 30


async def test_a_failed_transaction_fails_each_of_its_requests(engine: AsyncEngine) -> None:
    writer = inbox.GroupCommit(db.session_factory(engine))
    assert await writer.store(_delivery("before")) is True
    bad = _delivery("bad")
    if engine.dialect.name == "postgresql":
        bad = _delivery("bad", body="\x00")  # PostgreSQL text cannot hold NUL
    else:
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                "CREATE TRIGGER refuse BEFORE INSERT ON inbox WHEN NEW.delivery_id = 'bad' "
                "BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
    outcomes = await asyncio.gather(
        *(writer.store(d) for d in [_delivery("a"), bad, _delivery("b")]),
        return_exceptions=True,
    )
    # The three shared the transaction that failed: none is stored, each request knows.
    assert all(isinstance(outcome, sa.exc.DBAPIError) for outcome in outcomes)
    assert await _ids(engine) == ["before"]
    assert await writer.store(_delivery("after")) is True


async def test_a_cancelled_request_leaves_the_rest_answered(engine: AsyncEngine) -> None:
    writer = inbox.GroupCommit(db.session_factory(engine))
    first = asyncio.ensure_future(writer.store(_delivery("first")))
    waiting = [asyncio.ensure_future(writer.store(_delivery(f"w{n}"))) for n in range(5)]
    await asyncio.sleep(0)
    waiting[2].cancel()
    assert await first is True
    answered = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(answered[2], asyncio.CancelledError)
    assert [answered[n] for n in (0, 1, 3, 4)] == [True] * 4
    # Its delivery is stored all the same: GitHub's retry of it will find it.
    assert "w2" in await _ids(engine)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sqlite_checkpoints_copy_the_log_into_the_database(
    engine: AsyncEngine, database_url: str
) -> None:
    path = db.async_url(database_url).database
    assert path is not None
    writer = inbox.GroupCommit(db.session_factory(engine))
    await asyncio.gather(*(writer.store(_delivery(f"d{n}", "x" * 20_000)) for n in range(100)))
    before = Path(path).stat().st_size  # noqa: ASYNC240  (a test's one stat)
    task = asyncio.create_task(db.checkpoints(engine, every=0.01))
    await asyncio.sleep(0.5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # 2 MB of deliveries were only in the log; the database file now holds them.
    assert Path(path).stat().st_size > before + 1_500_000  # noqa: ASYNC240
