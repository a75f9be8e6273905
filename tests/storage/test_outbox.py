"""The outbox's lines on SQLite and PostgreSQL: effects of one thread are claimed one at a
time in the order written; other lines and unordered effects are not held back."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import db, outbox
from storage.models import OutboxStatus, utcnow
from tests.dispatching import effect_row

LEASE = timedelta(seconds=60)


async def _enqueue(sessions, kind: str, key: str, **payload) -> None:
    async with sessions.begin() as session:
        assert await outbox.enqueue(session, kind=kind, payload=payload, idempotency_key=key)


async def _claim(sessions, *, owner: str = "w", now=None, limit: int = 20) -> list[str]:
    async with sessions.begin() as session:
        rows = await outbox.QUEUE.claim_due(
            session, owner=owner, now=now or utcnow(), lease=LEASE, limit=limit
        )
    return [row.idempotency_key for row in rows]


async def _finish(sessions, key: str, owner: str = "w") -> None:
    row = await effect_row(sessions, key)
    async with sessions.begin() as session:
        assert await outbox.QUEUE.finish(
            session, item_id=row.id, owner=owner, status=OutboxStatus.SENT.value, now=utcnow()
        )


def test_each_effect_waits_in_the_line_of_its_thread_or_board() -> None:
    assert outbox.ordering_key("ThreadReply", {"release_id": 7}) == "thread:7"
    assert outbox.ordering_key("ApprovalRequest", {"release_id": 7}) == "thread:7"
    assert outbox.ordering_key("ApprovalDecided", {"release_id": 7}) == "thread:7"
    assert outbox.ordering_key("RefreshBoard", {"release_id": 7}) == "board:7"
    assert outbox.ordering_key("PullRequestComment", {"repository": "a/b"}) is None
    assert outbox.ordering_key("CreateDeployment", {"rollout_id": 1}) is None


async def test_a_line_is_claimed_one_effect_at_a_time_in_order(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    for n in range(3):
        await _enqueue(sessions, "ThreadReply", f"a{n}", release_id=1, event=f"a{n}", text="")
    await _enqueue(sessions, "ThreadReply", "b0", release_id=2, event="b0", text="")
    await _enqueue(sessions, "RefreshBoard", "board-a", release_id=1, cause="x")
    for n in range(2):
        await _enqueue(sessions, "Reaction", f"r{n}", repository="a/b", comment_id=n)

    assert await _claim(sessions) == ["a0", "b0", "board-a", "r0", "r1"]
    assert await _claim(sessions, owner="other") == [], "a1 waits while a0 is in hand"
    await _finish(sessions, "a0")
    assert await _claim(sessions, owner="other") == ["a1"]


async def test_a_retry_holds_its_line_back_and_a_dead_letter_does_not(
    engine: AsyncEngine,
) -> None:
    sessions = db.session_factory(engine)
    for n in range(2):
        await _enqueue(sessions, "ThreadReply", f"a{n}", release_id=1, event=f"a{n}", text="")
    now = utcnow()
    assert await _claim(sessions, now=now) == ["a0"]
    first = await effect_row(sessions, "a0")
    async with sessions.begin() as session:
        await outbox.QUEUE.fail(
            session,
            item=first,
            owner="w",
            error="500",
            now=now,
            retry_at=now + timedelta(seconds=10),
        )
    assert await _claim(sessions, now=now) == [], "a1 waits for a0's retry"
    assert await _claim(sessions, now=now + timedelta(seconds=11)) == ["a0"]
    first = await effect_row(sessions, "a0")
    async with sessions.begin() as session:
        await outbox.QUEUE.fail(session, item=first, owner="w", error="500", now=now, retry_at=None)
    assert (await effect_row(sessions, "a0")).status == "dead"
    assert await _claim(sessions, now=now) == ["a1"]


async def test_a_rate_limited_attempt_is_not_counted(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    await _enqueue(sessions, "ThreadReply", "a0", release_id=1, event="a0", text="")
    now = utcnow()
    await _claim(sessions, now=now)
    row = await effect_row(sessions, "a0")
    async with sessions.begin() as session:
        await outbox.QUEUE.fail(
            session,
            item=row,
            owner="w",
            error="429",
            now=now,
            retry_at=now + timedelta(seconds=30),
            counts=False,
        )
    row = await effect_row(sessions, "a0")
    assert (row.status, row.attempts, row.lease_owner) == ("pending", 0, None)
    assert row.next_attempt_at == now + timedelta(seconds=30)


async def test_coalesced_effects_are_sent_unless_someone_holds_them(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    for n in range(3):
        await _enqueue(sessions, "RefreshBoard", f"board{n}", release_id=1, cause=str(n))
    async with sessions() as session:
        waiting = await outbox.pending_ids(session, ordering_key="board:1")
    assert len(waiting) == 3
    async with sessions.begin() as session:
        served = await outbox.coalesce(
            session, item_ids=waiting[1:], result={"coalesced_into": waiting[0]}, now=utcnow()
        )
    assert served == 2
    async with sessions() as session:
        assert await outbox.pending_ids(session, ordering_key="board:1") == waiting[:1]
        assert await outbox.last_sent_result(session, ordering_key="board:1") == {
            "coalesced_into": waiting[0]
        }


async def test_upgrading_keeps_waiting_effects_in_their_lines(tmp_path: Path) -> None:
    engine = db.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    try:
        await db.migrate(engine, "0002")
        async with engine.begin() as connection:
            for key, kind, payload, status in [
                ("r1", "ThreadReply", '{"release_id": 4, "event": "e", "text": "t"}', "pending"),
                ("b1", "RefreshBoard", '{"release_id": 4, "cause": "c"}', "pending"),
                ("r0", "ThreadReply", '{"release_id": 4, "event": "d", "text": "t"}', "sent"),
                ("x1", "Reaction", '{"repository": "a/b", "comment_id": 1}', "pending"),
            ]:
                await connection.execute(
                    sa.text(
                        "INSERT INTO outbox (kind, payload, idempotency_key, status, attempts,"
                        " created_at, next_attempt_at) VALUES (:kind, :payload, :key, :status,"
                        " 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00')"
                    ),
                    {"kind": kind, "payload": payload, "key": key, "status": status},
                )
        await db.migrate(engine)
        async with engine.connect() as connection:
            keys = dict(
                (
                    await connection.execute(
                        sa.text("SELECT idempotency_key, ordering_key FROM outbox")
                    )
                ).all()
            )
        assert keys == {"r1": "thread:4", "b1": "board:4", "r0": None, "x1": None}
    finally:
        await engine.dispose()


async def test_once_a_try_may_have_been_sent_every_later_claim_says_so(
    engine: AsyncEngine,
) -> None:
    sessions = db.session_factory(engine)
    await _enqueue(sessions, "PullRequestComment", "c0", repository="a/b", pr_number=1)
    now = utcnow()
    assert await _claim(sessions, owner="died", now=now) == ["c0"]
    assert not (await effect_row(sessions, "c0")).interrupted
    later = now + LEASE + timedelta(seconds=1)
    assert await _claim(sessions, now=later) == ["c0"]  # the dead owner's lease ran out
    assert (await effect_row(sessions, "c0")).interrupted
    # Waiting out a rate limit hands it back unclaimed; the doubt stays.
    c0 = await effect_row(sessions, "c0")
    async with sessions.begin() as session:
        await outbox.QUEUE.fail(
            session,
            item=c0,
            owner="w",
            error="429",
            now=later,
            retry_at=later,
            counts=False,
        )
    assert await _claim(sessions, now=later) == ["c0"]
    assert (await effect_row(sessions, "c0")).interrupted

    # A dead letter put back in line may have been sent by any of its tries.
    await _enqueue(sessions, "PullRequestComment", "c1", repository="a/b", pr_number=2)
    now = utcnow()
    assert await _claim(sessions, now=now) == ["c1"]
    c1 = await effect_row(sessions, "c1")
    async with sessions.begin() as session:
        await outbox.QUEUE.fail(session, item=c1, owner="w", error="502", now=now, retry_at=None)
    async with sessions.begin() as session:
        assert await outbox.retry_dead(session, item_id=c1.id, now=now)
    assert (await effect_row(sessions, "c1")).attempts == 0
    assert await _claim(sessions, now=now) == ["c1"]
    assert (await effect_row(sessions, "c1")).interrupted
