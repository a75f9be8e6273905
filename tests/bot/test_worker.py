"""The inbox worker with real databases: retries, dead letters, isolation between deliveries."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.metrics import Metrics
from bot.worker import InboxWorker, backoff
from storage import db, inbox, outbox
from storage.models import InboxItem, InboxStatus, OutboxEffect, utcnow


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self):
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


async def _store(sessions, *deliveries: tuple[str, str]) -> None:
    async with sessions.begin() as session:
        for delivery_id, body in deliveries:
            await inbox.record_delivery(
                session,
                source="github",
                delivery_id=delivery_id,
                event="push",
                action=None,
                body=body,
            )


async def _rows(sessions) -> dict[str, InboxItem]:
    async with sessions() as session:
        items = (await session.execute(sa.select(InboxItem))).scalars().all()
    return {item.delivery_id: item for item in items}


async def _side_effects(sessions) -> set[str]:
    async with sessions() as session:
        effects = (await session.execute(sa.select(OutboxEffect))).scalars().all()
    return {effect.idempotency_key for effect in effects}


async def nothing_to_write(session) -> None:
    """A handler's writes when it handled a delivery without changing state."""


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [2, 4, 8, 16]
    assert backoff(30).total_seconds() == 600


async def test_a_failing_handler_is_retried_then_dead_lettered_others_unaffected(
    engine: AsyncEngine,
) -> None:
    sessions = db.session_factory(engine)
    await _store(sessions, ("good-1", '{"n": 1}'), ("bad", '{"n": 2}'), ("good-2", '{"n": 3}'))
    calls: list[str] = []

    async def handle(item, payload):
        calls.append(item.delivery_id)

        async def apply(session):
            # What the handler writes must roll back with its failure.
            await outbox.enqueue(
                session, kind="slack.post", payload={}, idempotency_key=item.delivery_id
            )
            if item.delivery_id == "bad":
                raise RuntimeError("downstream exploded")

        return apply

    clock, metrics = Clock(), Metrics()
    worker = InboxWorker(
        sessions=sessions,
        handle=handle,
        metrics=metrics,
        max_attempts=3,
        clock=clock,
        retry_delay=lambda attempt: timedelta(seconds=10 * attempt),
    )
    assert await worker.run_once() == 3
    rows = await _rows(sessions)
    assert rows["good-1"].status == rows["good-2"].status == InboxStatus.DONE
    assert (rows["bad"].status, rows["bad"].attempts) == (InboxStatus.PENDING, 1)
    assert rows["bad"].lease_owner is None
    assert await worker.run_once() == 0, "not due before its backoff"

    clock.advance(10)
    assert await worker.run_once() == 1
    clock.advance(20)
    assert await worker.run_once() == 1
    clock.advance(3600)
    assert await worker.run_once() == 0, "dead letters are not retried"

    rows = await _rows(sessions)
    assert (rows["bad"].status, rows["bad"].attempts) == (InboxStatus.DEAD, 3)
    assert rows["bad"].last_error == "RuntimeError: downstream exploded"
    assert calls.count("bad") == 3 and calls.count("good-1") == 1
    assert await _side_effects(sessions) == {"good-1", "good-2"}
    assert metrics.inbox_failures.labels("push")._value.get() == 3
    assert metrics.dead_letters.labels("inbox")._value.get() == 1


async def test_an_invalid_payload_is_dead_lettered_at_once(
    engine: AsyncEngine, app_private_key_pem: str
) -> None:
    from bot.github.context import Context
    from bot.github.events import GitHubEvents
    from integrations.github_app import GitHubApp

    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        await inbox.record_delivery(
            session,
            source="github",
            delivery_id="broken",
            event="installation",
            action="created",
            body='{"action": "created", "installation": {"id": "not-a-number"}}',
        )
    # The installation handler never calls GitHub: the App's address is never used.
    github = GitHubApp(app_id=1, private_key=app_private_key_pem, base_url="http://127.0.0.1:9")
    worker = InboxWorker(sessions=sessions, handle=GitHubEvents(Context(github)), max_attempts=5)
    assert await worker.run_once() == 1
    row = (await _rows(sessions))["broken"]
    assert (row.status, row.attempts) == (InboxStatus.DEAD, 1)
    assert (row.last_error or "").startswith("MalformedDelivery: 1 validation error")


async def test_wake_makes_the_running_worker_look_at_once(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    handled = asyncio.Event()

    async def handle(item, payload):
        handled.set()
        return nothing_to_write

    worker = InboxWorker(sessions=sessions, handle=handle, poll_seconds=3600)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.05)
    await _store(sessions, ("d", "{}"))
    worker.wake()
    await asyncio.wait_for(handled.wait(), timeout=5)
    worker.stop()
    await asyncio.wait_for(task, timeout=5)


@pytest.mark.parametrize("replicas", [2])
async def test_two_workers_on_two_engines_handle_each_delivery_once(
    database_url: str, replicas: int
) -> None:
    engines = [db.create_engine(database_url) for _ in range(replicas)]
    try:
        sessions = db.session_factory(engines[0])
        await _store(sessions, *((f"d{n}", "{}") for n in range(60)))
        seen: list[str] = []

        async def handle(item, payload):
            seen.append(item.delivery_id)
            await asyncio.sleep(0)
            return nothing_to_write

        workers = [
            InboxWorker(sessions=db.session_factory(e), handle=handle, batch=5, poll_seconds=0.01)
            for e in engines
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        for _ in range(500):
            async with sessions() as session:
                if await inbox.depth(session) == 0:
                    break
            await asyncio.sleep(0.01)
        for w in workers:
            w.stop()
        await asyncio.gather(*tasks)
        assert sorted(seen) == sorted(f"d{n}" for n in range(60))
    finally:
        for e in engines:
            await e.dispose()


async def test_stopping_hands_back_claims_it_has_not_started(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    await _store(sessions, *((f"d{n}", "{}") for n in range(5)))
    handled: list[str] = []

    async def handle(item, payload):
        handled.append(item.delivery_id)
        worker.stop()  # the process is told to stop while handling its first delivery
        return nothing_to_write

    worker = InboxWorker(sessions=sessions, handle=handle, batch=5)
    assert await worker.run_once() == 5
    rows = await _rows(sessions)
    assert len(handled) == 1 and rows[handled[0]].status == InboxStatus.DONE
    waiting = [row for key, row in rows.items() if key not in handled]
    assert all(r.status == InboxStatus.PENDING and r.lease_owner is None for r in waiting)
    async with sessions.begin() as session:
        reclaimed = await inbox.claim_due(
            session, owner="next-process", now=utcnow(), lease=timedelta(seconds=60), limit=10
        )
    assert len(reclaimed) == 4


async def test_a_failure_after_the_lease_was_lost_is_not_counted(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    await _store(sessions, ("slow", "{}"))
    clock, metrics = Clock(), Metrics()

    async def handle(item, payload):
        # Meanwhile our lease ran out and another replica took the delivery.
        async with sessions.begin() as other:
            await inbox.claim_due(
                other,
                owner="other",
                now=clock.now + timedelta(minutes=5),
                lease=timedelta(seconds=60),
                limit=1,
            )
        raise RuntimeError("too late anyway")

    worker = InboxWorker(sessions=sessions, handle=handle, metrics=metrics, clock=clock)
    await worker.run_once()
    row = (await _rows(sessions))["slow"]
    assert (row.lease_owner, row.attempts, row.status) == ("other", 0, InboxStatus.PENDING)
    assert metrics.inbox_failures.labels("push")._value.get() == 0


async def test_ignored_deliveries_of_a_batch_are_marked_in_one_transaction(
    engine: AsyncEngine,
) -> None:
    sessions = db.session_factory(engine)
    await _store(sessions, *((f"d{n}", "{}") for n in range(10)), ("handled", "{}"))
    commits: list[int] = []
    sa.event.listen(engine.sync_engine, "commit", lambda _connection: commits.append(1))

    async def handle(item, payload):
        return nothing_to_write if item.delivery_id == "handled" else None

    worker = InboxWorker(sessions=sessions, handle=handle, batch=20)
    assert await worker.run_once() == 11
    rows = await _rows(sessions)
    assert {rows[f"d{n}"].status for n in range(10)} == {InboxStatus.IGNORED.value}
    assert all(rows[f"d{n}"].lease_owner is None for n in range(10))
    assert rows["handled"].status == InboxStatus.DONE.value
    # The claim, the handled delivery's own transaction, and one for the ten ignored.
    assert len(commits) == 3


async def test_ignored_deliveries_whose_lease_was_lost_are_left_to_their_new_owner(
    engine: AsyncEngine,
) -> None:
    sessions = db.session_factory(engine)
    await _store(sessions, ("mine", "{}"), ("taken", "{}"))

    async def handle(item, payload):
        if item.delivery_id == "taken":  # another replica took it over meanwhile
            async with sessions.begin() as session:
                await session.execute(
                    sa.update(InboxItem)
                    .where(InboxItem.delivery_id == "taken")
                    .values(lease_owner="other")
                )
        return None

    worker = InboxWorker(sessions=sessions, handle=handle, batch=20)
    await worker.run_once()
    rows = await _rows(sessions)
    assert rows["mine"].status == InboxStatus.IGNORED.value
    assert rows["taken"].status == InboxStatus.PENDING.value
    assert rows["taken"].lease_owner == "other"


async def test_a_slow_delivery_keeps_the_rest_of_its_batch_leased(engine: AsyncEngine) -> None:
    """While one delivery takes longer than the lease, the others claimed with it stay
    leased, those waiting their turn and those ignored before it (marked at the batch's
    end): no other replica takes them over meanwhile."""
    sessions = db.session_factory(engine)
    await _store(sessions, ("early", "{}"), ("slow", "{}"), ("last", "{}"))
    lease = timedelta(seconds=0.6)
    taken_by_others: list[str] = []

    async def handle(item, payload):
        if item.delivery_id == "slow":
            for _ in range(6):  # three leases long, looking for a takeover as another replica
                await asyncio.sleep(0.3)
                async with sessions.begin() as session:
                    others = await inbox.claim_due(
                        session, owner="other", now=utcnow(), lease=lease, limit=10
                    )
                taken_by_others.extend(item.delivery_id for item in others)
        return None

    worker = InboxWorker(sessions=sessions, handle=handle, lease=lease, batch=3)
    assert await worker.run_once() == 3
    assert taken_by_others == []
    rows = await _rows(sessions)
    assert {row.status for row in rows.values()} == {InboxStatus.IGNORED.value}
