"""The scheduler's tick at scale (issue #7 item 3), on both databases against a real health
endpoint over HTTP: the statements one tick sends do not grow with the rollouts it probes
(no N+1), every rollout is probed and its outcome saved, the probes that decide something
are still saved and audited one by one, and a rollout that changed under the tick (another
replica took it over, or someone paused it) is not overwritten.

`bench/scheduler_scale.py` measures the same tick's CPU time at thousands of rollouts.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from bot.scheduler import Scheduler
from integrations.emulators.github import GitHubEmulator
from integrations.emulators.loopback import LoopbackServer
from integrations.github_app import GitHubApp
from integrations.health import HealthProbe
from storage import db
from storage.models import AuditEvent, OutboxEffect, utcnow
from storage.models import Release as ReleaseRow
from storage.models import Rollout as RolloutRow

OWNER = "scheduler-under-test"


class Health(LoopbackServer):
    """`GET /h/{i}`: 200, or 503 for the rollouts in `failing`; counts the probes of each.
    A rollout in `held` is answered only once `release` is set (the test acts meanwhile)."""

    def __init__(self) -> None:
        self.hits: dict[int, int] = {}
        self.failing: set[int] = set()
        self.held: set[int] = set()
        self.all_held = threading.Event()  # every rollout in `held` is waiting
        self.release = threading.Event()
        super().__init__(Starlette(routes=[Route("/h/{i:int}", self._health)]), thread_name="h")

    async def _health(self, request: Request) -> PlainTextResponse:
        i = request.path_params["i"]
        self.hits[i] = self.hits.get(i, 0) + 1
        if i in self.held:
            if all(self.hits.get(held) for held in self.held):
                self.all_held.set()
            await asyncio.to_thread(self.release.wait, 10)
        if i in self.failing:
            return PlainTextResponse("down", status_code=503)
        return PlainTextResponse("ok")


@pytest.fixture(scope="module")
def health() -> Iterator[Health]:
    with Health() as server:
        yield server


@pytest.fixture
def endpoint(health: Health) -> Health:
    health.hits.clear()
    health.failing.clear()
    health.held.clear()
    health.all_held.clear()
    health.release.clear()
    return health


def pipeline(health: Health, i: int, *, failures: int = 3) -> str:
    return f"""
slack:
  channel: C0SCALE
environments:
  - name: production
    health: {{url: "{health.base_url}/h/{i}", interval: 30s, soak: 1h, failures: {failures}}}
"""


async def seed(
    engine: AsyncEngine,
    health: Health,
    ids: range,
    *,
    now: datetime,
    healthy_since: datetime | None = None,
    failures: int = 3,
) -> None:
    """One repository per rollout id: a release verifying in production, due now, after an
    earlier success there (what a rollback goes back to)."""
    releases, rollouts = [], []
    for i in ids:
        repository = f"acme/service-{i}"
        common = {
            "release_id": i,
            "repository": repository,
            "environment": "production",
            "kind": "deploy",
            "requested_by_github": "alice",
            "created_at": now - timedelta(days=1),
            "updated_at": now - timedelta(days=1),
        }
        releases.append(
            {
                "id": i,
                "repository": repository,
                "pr_number": 1,
                "commit_sha": _sha(i, "head"),
                "pipeline": pipeline(health, i, failures=failures),
                "thread_channel": "C0SCALE",
                "thread_ts": f"1700000000.{i:06d}",
                "created_at": now - timedelta(days=1),
                "updated_at": now - timedelta(days=1),
            }
        )
        rollouts.append({**common, "id": 10_000 + i, "commit_sha": _sha(i, "old")} | _done())
        rollouts.append(
            {
                **common,
                "id": i,
                "commit_sha": _sha(i, "head"),
                "status": "verifying",
                "github_deployment_id": i,
                "healthy_since": healthy_since,
                "next_check_at": now - timedelta(seconds=1),
            }
        )
    async with engine.begin() as connection:
        await connection.execute(sa.insert(ReleaseRow.__table__), releases)
        await connection.execute(sa.insert(RolloutRow.__table__), rollouts)
        if connection.dialect.name == "postgresql":
            for table in ("release", "rollout"):
                await connection.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )


def _done() -> dict[str, Any]:
    return {"status": "success", "github_deployment_id": None, "next_check_at": None}


def _sha(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()


@pytest.fixture
async def scheduler(
    engine: AsyncEngine, github: GitHubEmulator, app_private_key_pem: str
) -> AsyncIterator[Scheduler]:
    async with HealthProbe(timeout=5) as probe:
        yield Scheduler(
            sessions=db.session_factory(engine),
            probe=probe,
            github=GitHubApp(app_id=4242, private_key=app_private_key_pem, base_url=github.url),
            owner=OWNER,
            tick_seconds=5,
        )


class Statements:
    """The SQL statements an engine sends while `during` runs (an executemany is one)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.sent: list[str] | None = None
        sa.event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if self.sent is not None:
            self.sent.append(statement)

    async def during(self, tick: Any) -> tuple[Any, list[str]]:
        self.sent = sent = []
        try:
            return await tick(), sent
        finally:
            self.sent = None


async def rollouts(engine: AsyncEngine) -> dict[int, Any]:
    async with engine.connect() as connection:
        rows = await connection.execute(sa.select(RolloutRow.__table__).order_by("id"))
        return {row.id: row for row in rows}


async def make_due(engine: AsyncEngine, now: datetime) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            sa.update(RolloutRow.__table__)
            .where(RolloutRow.__table__.c.status == "verifying")
            .values(next_check_at=now - timedelta(seconds=1))
        )


async def test_a_tick_sends_as_many_statements_for_50_rollouts_as_for_5(
    engine: AsyncEngine, scheduler: Scheduler, endpoint: Health
) -> None:
    statements = Statements(engine)
    now = utcnow()
    await seed(engine, endpoint, range(1, 6), now=now)
    started = utcnow()
    probed, few = await statements.during(scheduler.tick)
    assert probed == 5
    assert endpoint.hits == {i: 1 for i in range(1, 6)}

    await seed(engine, endpoint, range(6, 51), now=now)
    await make_due(engine, utcnow())
    again = utcnow()
    probed, many = await statements.during(scheduler.tick)
    assert probed == 50
    assert endpoint.hits == {i: 1 if i > 5 else 2 for i in range(1, 51)}
    assert len(many) == len(few), "\n".join(few) + "\n-----\n" + "\n".join(many)

    found = await rollouts(engine)
    for i in range(1, 51):
        row = found[i]
        assert row.status == "verifying"
        assert row.lease_owner is None and row.lease_until is None
        assert row.failure_streak == 0
        # Healthy since its first probe, due again one interval after the tick began.
        first = started if i <= 5 else again
        assert first - timedelta(seconds=1) <= row.healthy_since <= first + timedelta(seconds=5)
        assert again + timedelta(seconds=29) <= row.next_check_at <= again + timedelta(seconds=35)
        assert row.version == (2 if i <= 5 else 1)
    async with engine.connect() as connection:
        assert (await connection.execute(sa.select(sa.func.count(AuditEvent.id)))).scalar() == 0
        assert (await connection.execute(sa.select(sa.func.count(OutboxEffect.id)))).scalar() == 0


async def test_probes_that_decide_are_saved_and_audited_one_by_one(
    engine: AsyncEngine, scheduler: Scheduler, endpoint: Health
) -> None:
    now = utcnow()
    await seed(engine, endpoint, range(1, 11), now=now, failures=1)
    # 1-3 have been healthy for longer than the soak: this probe makes them succeed. 4 and 5
    # fail a check, which fails them (`failures: 1`) and rolls them back. 6-10 stay verifying.
    async with engine.begin() as connection:
        await connection.execute(
            sa.update(RolloutRow.__table__)
            .where(RolloutRow.__table__.c.id.in_([1, 2, 3]))
            .values(healthy_since=now - timedelta(hours=2))
        )
    endpoint.failing = {4, 5}

    assert await scheduler.tick() == 10

    found = await rollouts(engine)
    assert [found[i].status for i in range(1, 11)] == ["success"] * 3 + ["failure"] * 2 + [
        "verifying"
    ] * 5
    assert all(found[i].lease_owner is None for i in range(1, 11))
    rollbacks = {row.replaces: row for row in found.values() if row.kind == "rollback"}
    assert set(rollbacks) == {4, 5}
    assert rollbacks[4].commit_sha == _sha(4, "old")
    async with engine.connect() as connection:
        audited = (
            await connection.execute(
                sa.select(AuditEvent.action, AuditEvent.repository).order_by(AuditEvent.repository)
            )
        ).all()
        effects = (await connection.execute(sa.select(OutboxEffect.kind))).scalars().all()
    assert audited == [("health verdict", f"acme/service-{i}") for i in (1, 2, 3, 4, 5)]
    assert effects.count("CreateDeployment") == 2  # the two rollbacks
    assert "ThreadReply" in effects


async def test_a_rollout_taken_over_or_changed_during_its_probe_is_not_overwritten(
    engine: AsyncEngine, scheduler: Scheduler, endpoint: Health
) -> None:
    now = utcnow()
    await seed(engine, endpoint, range(1, 6), now=now)
    endpoint.held = {2, 3}
    tick = asyncio.create_task(scheduler.tick())
    assert await asyncio.to_thread(endpoint.all_held.wait, 10)
    taken_until = utcnow() + timedelta(minutes=1)
    async with engine.begin() as connection:
        table = RolloutRow.__table__
        # Another replica took 2 over (our lease ran out); someone paused 3.
        await connection.execute(
            sa.update(table)
            .where(table.c.id == 2)
            .values(lease_owner="another-replica", lease_until=taken_until)
        )
        await connection.execute(
            sa.update(table)
            .where(table.c.id == 3)
            .values(paused_at=utcnow(), next_check_at=None, version=table.c.version + 1)
        )
    endpoint.release.set()
    assert await tick == 5

    found = await rollouts(engine)
    assert found[2].lease_owner == "another-replica"
    assert found[2].healthy_since is None and found[2].version == 0
    assert found[3].paused_at is not None and found[3].next_check_at is None
    assert found[3].healthy_since is None and found[3].lease_owner is None
    for i in (1, 4, 5):
        assert found[i].healthy_since is not None and found[i].lease_owner is None
