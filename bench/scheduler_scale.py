"""Scheduler scale (issue #7 item 3): what one tick costs the deploybot process with N
rollouts verifying, measured against smaller baselines seeded and ticked in the same run, and
the process's memory over a soak of real ticks.

    .venv/bin/python bench/scheduler_scale.py                     # 100, 1,000, 10,000; 600 s soak
    .venv/bin/python bench/scheduler_scale.py --quick             # a short smoke run
    .venv/bin/python bench/scheduler_scale.py --database-url postgresql://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/scheduler_scale.py --profile tick.txt  # pyinstrument of one more tick

For each size N a fresh database is migrated (Alembic, as `deploybot serve` does) and seeded
with N rollouts in `verifying`, all due: N/2 repositories, each with its own pipeline file and a
release verifying in `stage` and one in `production`, every rollout with its own health URL
(`http://127.0.0.1:PORT/h/{i}`) and an earlier success in its environment. A health server
runs in another process, pinned to the second core; this process (the scheduler) is pinned to
the first, on the event loop `deploybot serve` runs (uvloop when installed).

Per size it runs one cold tick (a new Scheduler: nothing cached yet) and `--ticks` warm ones,
making every rollout due again between them, and reports for the tick: the CPU time of this
process (`time.process_time`, every thread: the aiosqlite worker counts, the health server
and PostgreSQL do not), the SQL statements sent (SQLAlchemy `before_cursor_execute`; an
executemany counts once, and is also counted apart), and the wall time. Then the ratios that
matter: statements(N) / statements(smallest) should be 1.00 (no N+1), and CPU per rollout
should not grow with N. With the largest size it then ticks every `--tick-seconds` on the
real clock for `--soak-seconds` (the soak in the pipeline file is a day, so nothing
finishes) and reports the resident set size at the start and end. Last, it measures the
same GETs without the scheduler (`HealthProbe.check_http` alone, and aiohttp alone), so the
report can split the tick into the HTTP client, the probe around it and the rest.

Numbers from a busy machine are rough: run it with nothing else on the two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import logging
import multiprocessing
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yarl
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import app_private_key
from bot.app import settle_garbage_collection
from bot.logs import configure_logging
from bot.pipeline.config import parse_pipeline
from bot.scheduler import Scheduler, _each
from integrations.github_app import GitHubApp
from integrations.health import HealthProbe
from storage import db
from storage.models import Release as ReleaseRow
from storage.models import Rollout as RolloutRow

SCHEDULER_CORE, HEALTH_CORE = 0, 1
INTERVAL = timedelta(seconds=30)  # the contract's default health `interval`
LEASE = timedelta(seconds=60)  # DEPLOYBOT_LEASE_SECONDS' default


# --- the health server (another process) -------------------------------------------------


_OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
_MISSING = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"


def _health_server(ready: Any, hits: Any) -> None:
    """Answer `GET /h/{i}` with 200 (keep-alive), anything else with 404; count requests."""
    _pin(HEALTH_CORE)

    class Health(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buffer = b""

        def data_received(self, data: bytes) -> None:
            self.buffer += data
            while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
                head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
                hits.value += 1
                self.transport.write(_OK if head.startswith(b"GET /h/") else _MISSING)

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(
            Health, "127.0.0.1", 0, backlog=4096
        )
        ready.send(server.sockets[0].getsockname()[1])
        await server.serve_forever()

    _run(serve())


@contextmanager
def health_server() -> Iterator[tuple[int, Callable[[], int]]]:
    """A health server process: its port and a function reading how many requests it had."""
    context = multiprocessing.get_context("spawn")
    hits = context.RawValue("q", 0)
    ours, theirs = context.Pipe()
    process = context.Process(target=_health_server, args=(theirs, hits), daemon=True)
    process.start()
    try:
        if not ours.poll(30):
            raise RuntimeError("the health server did not start")
        yield ours.recv(), lambda: int(hits.value)
    finally:
        process.terminate()
        process.join(5)


# --- databases ---------------------------------------------------------------------------


@contextmanager
def fresh_database(base_url: str | None, workdir: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file, or a database of our own on the PostgreSQL
    server of `base_url` (dropped afterwards; nothing else there is touched)."""
    if base_url is None or make_url(base_url).get_backend_name() == "sqlite":
        yield f"sqlite:///{workdir / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        return
    name = f"deploybot_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(base_url, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base_url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def _admin(url: str, statement: str) -> None:
    engine = db.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as connection:
            await connection.execute(sa.text(statement))
    finally:
        await engine.dispose()


def pipeline_text(port: int, repo: int) -> str:
    """A repository's pipeline file: its own health URL in each environment, checked every
    30 s (the default), with a soak of a day so that nothing finishes during the bench."""
    health = "interval: 30s, soak: 24h, failures: 3"
    return f"""
slack:
  channel: C0BENCH
environments:
  - name: stage
    health: {{url: "http://127.0.0.1:{port}/h/{2 * repo}", {health}}}
  - name: production
    approvals: 1
    health: {{url: "http://127.0.0.1:{port}/h/{2 * repo + 1}", {health}}}
"""


def _sha(*parts: object) -> str:
    return hashlib.sha1(":".join(map(str, parts)).encode()).hexdigest()  # noqa: S324


async def seed(engine: AsyncEngine, *, rollouts: int, port: int, now: datetime) -> None:
    """Migrate, then insert `rollouts` due verifying rollouts (ids 1..N), each with an
    earlier success of another commit in its environment (ids N+1..2N)."""
    await db.migrate(engine)
    parse_pipeline(pipeline_text(port, 0))  # a broken file would make every probe a no-op
    earlier = now - timedelta(days=1)
    releases, verifying, succeeded = [], [], []
    for i in range(rollouts):
        repo, environment = i // 2, ("stage", "production")[i % 2]
        repository = f"bench/service-{repo}"
        sha, old_sha = _sha(repo, i, "head"), _sha(repo, i, "old")
        releases.append(
            {
                "id": i + 1,
                "repository": repository,
                "pr_number": i % 2 + 1,
                "commit_sha": sha,
                "pr_state": "open",
                "pr_url": f"https://github.com/{repository}/pull/{i % 2 + 1}",
                "title": f"Change {i}",
                "author": "alice",
                "head_ref": f"feature-{i}",
                "pipeline": pipeline_text(port, repo),
                "thread_channel": "C0BENCH",
                "thread_ts": f"1700000000.{i:06d}",
                "created_at": earlier,
                "updated_at": earlier,
            }
        )
        common = {
            "release_id": i + 1,
            "repository": repository,
            "environment": environment,
            "kind": "deploy",
            "requested_by_github": "alice",
            "requested_via": "github",
            "failure_streak": 0,
            "forced": False,
            "wait_checks": False,
            "version": 1,
            "created_at": earlier,
            "updated_at": earlier,
        }
        verifying.append(
            {
                **common,
                "id": i + 1,
                "commit_sha": sha,
                "status": "verifying",
                "github_deployment_id": i + 1,
                "next_check_at": now - timedelta(seconds=1),
            }
        )
        succeeded.append(
            {
                **common,
                "id": rollouts + i + 1,
                "commit_sha": old_sha,
                "status": "success",
                "github_deployment_id": rollouts + i + 1,
            }
        )
    async with engine.begin() as connection:
        await connection.execute(sa.insert(ReleaseRow.__table__), releases)  # type: ignore[attr-defined]
        await connection.execute(sa.insert(RolloutRow.__table__), succeeded + verifying)  # type: ignore[attr-defined]
        if connection.dialect.name == "postgresql":
            for table in ("release", "rollout"):
                await connection.execute(
                    sa.text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    async with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            await connection.execute(sa.text("ANALYZE"))


async def make_all_due(engine: AsyncEngine, now: datetime) -> None:
    async with engine.begin() as connection:
        await connection.execute(
            sa.update(RolloutRow.__table__)  # type: ignore[arg-type]
            .where(RolloutRow.__table__.c.status == "verifying")  # type: ignore[attr-defined]
            .values(next_check_at=now - timedelta(seconds=1))
        )


async def check_probed(engine: AsyncEngine, *, started: datetime, expected: int) -> str | None:
    """What is wrong after a tick, if anything: every verifying rollout must be due again one
    interval later, healthy since the tick, and hold no lease."""
    table: Any = RolloutRow.__table__
    async with engine.connect() as connection:
        row = (
            await connection.execute(
                sa.select(
                    sa.func.count(),
                    sa.func.count().filter(table.c.next_check_at >= started + INTERVAL),
                    sa.func.count().filter(table.c.healthy_since.is_not(None)),
                    sa.func.count().filter(table.c.lease_owner.is_not(None)),
                ).where(table.c.status == "verifying")
            )
        ).one()
    total, rescheduled, healthy, leased = row
    if (total, rescheduled, healthy, leased) != (expected, expected, expected, 0):
        return (
            f"verifying {total}/{expected}, rescheduled {rescheduled}, healthy {healthy}, "
            f"still leased {leased}"
        )
    return None


# --- measuring ----------------------------------------------------------------------------


class Collections:
    """CPU time this process spends in the garbage collector (`gc.callbacks`)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._began = 0.0
        gc.callbacks.append(self._seen)

    def _seen(self, phase: str, _info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.process_time()
        else:
            self.seconds += time.process_time() - self._began


class Statements:
    """Counts the SQL statements an engine sends while `counting`."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.counting = False
        self.total = 0
        self.executemany = 0
        sa.event.listen(engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, *args: Any) -> None:
        if self.counting:
            self.total += 1
            self.executemany += bool(args[-1])

    @contextmanager
    def count(self) -> Iterator[None]:
        self.total = self.executemany = 0
        self.counting = True
        try:
            yield
        finally:
            self.counting = False


@dataclass
class Tick:
    probed: int
    cpu: float
    gc: float
    wall: float
    statements: int
    executemany: int
    hits: int


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Bench:
    def __init__(self, args: argparse.Namespace, port: int, hits: Callable[[], int]) -> None:
        self.args = args
        self.port = port
        self.hits = hits
        self.key = app_private_key()
        self.collections = Collections()
        # Nothing is asked of GitHub while every probe is healthy; port 9 would refuse.
        self.github = GitHubApp(app_id=1, private_key=self.key, base_url="http://127.0.0.1:9")

    def scheduler(self, engine: AsyncEngine, probe: HealthProbe, batch: int) -> Scheduler:
        return Scheduler(
            sessions=db.session_factory(engine),
            probe=probe,
            github=self.github,
            owner=f"bench-{os.getpid()}",
            tick_seconds=self.args.tick_seconds,
            lease=LEASE,
            batch=batch,
            **({"concurrency": self.args.concurrency} if self.args.concurrency else {}),
        )

    async def tick(self, scheduler: Scheduler, statements: Statements) -> Tick:
        hits = self.hits()
        gc.collect()  # what the setting-up left over is not this tick's to collect
        collected = self.collections.seconds
        with statements.count():
            cpu, wall = time.process_time(), time.perf_counter()
            probed = await scheduler.tick()
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return Tick(
            probed,
            cpu,
            self.collections.seconds - collected,
            wall,
            statements.total,
            statements.executemany,
            self.hits() - hits,
        )

    async def size(self, url: str, rollouts: int, *, last: bool) -> dict[str, Any]:
        engine = db.create_engine(url)
        statements = Statements(engine)
        probe = HealthProbe()
        try:
            await seed(engine, rollouts=rollouts, port=self.port, now=datetime.now(UTC))
            scheduler = self.scheduler(engine, probe, batch=max(self.args.sizes))
            # As `deploybot serve` does once started.
            gc.collect()
            settle_garbage_collection()
            ticks, problems = [], []
            for _ in range(1 + self.args.ticks):
                started = datetime.now(UTC)
                await make_all_due(engine, started)
                ticks.append(await self.tick(scheduler, statements))
                problem = await check_probed(engine, started=started, expected=rollouts)
                if problem:
                    problems.append(problem)
            result = {
                "rollouts": rollouts,
                "cold": ticks[0],
                "warm": ticks[1:],
                "problems": problems,
            }
            if last and self.args.profile:
                await make_all_due(engine, datetime.now(UTC))
                await self.profile(scheduler)
            if last and self.args.soak_seconds > 0:
                result["soak"] = await self.soak(scheduler)
            if last:  # after the soak, whose memory it would otherwise add to
                result["network"] = await self.network(scheduler, probe, rollouts)
            return result
        finally:
            gc.unfreeze()
            await probe.aclose()
            await engine.dispose()

    async def network(
        self, scheduler: Scheduler, probe: HealthProbe, rollouts: int
    ) -> dict[str, float]:
        """What the tick's GETs cost with nothing of the scheduler around them, in CPU, best
        of three each: `probes`, `HealthProbe.check_http` of every rollout's URL on the
        tick's own probe; `client`, a plain aiohttp GET of each on that probe's own session,
        what the HTTP client costs before anything of ours. Both run as a tick runs them
        (the scheduler's `_each`, its concurrency's worth of workers). Either raises on a
        failed GET."""
        urls = [f"http://127.0.0.1:{self.port}/h/{i}" for i in range(rollouts)]
        parsed = [yarl.URL(url) for url in urls]  # the probe caches its parsed URLs too
        session = probe._http()  # the probe's session: its settings, pool and limit

        async def get(url: yarl.URL) -> None:
            async with session.get(url, allow_redirects=False) as response:
                if response.status != 200:
                    raise RuntimeError(f"GET {url}: {response.status}")

        async def check(url: str) -> None:
            result = await probe.check_http(url)
            if not result.healthy:
                raise RuntimeError(result.detail)

        async def cpu(work: Callable[[Any], Any], items: list[Any]) -> float:
            best = float("inf")
            for _ in range(3):
                gc.collect()
                began = time.process_time()
                await _each(items, scheduler.concurrency, work)
                best = min(best, time.process_time() - began)
            return best

        return {"probes": await cpu(check, urls), "client": await cpu(get, parsed)}

    async def profile(self, scheduler: Scheduler) -> None:
        """One more tick under pyinstrument (its own overhead makes it slower)."""
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="enabled")
        profiler.start()
        await scheduler.tick()
        profiler.stop()
        text = profiler.output_text(unicode=True, color=False, show_all=False)
        await asyncio.to_thread(Path(self.args.profile).write_text, text)
        print(f"pyinstrument profile of one tick written to {self.args.profile}")

    async def soak(self, scheduler: Scheduler) -> dict[str, Any]:
        """Tick every `tick_seconds` on the real clock: every rollout is due each 30 s."""
        gc.collect()
        start_rss = _rss_mib()
        samples, by_minute, cpu = [start_rss], [start_rss], time.process_time()
        hits = self.hits()
        began = time.monotonic()
        deadline = began + self.args.soak_seconds
        ticks = probed = 0
        while time.monotonic() < deadline:
            tick_began = time.monotonic()
            probed += await scheduler.tick()
            ticks += 1
            samples.append(_rss_mib())
            if time.monotonic() - began >= 60 * len(by_minute):
                by_minute.append(samples[-1])
            await asyncio.sleep(max(0.0, self.args.tick_seconds - (time.monotonic() - tick_began)))
        return {
            "seconds": self.args.soak_seconds,
            "ticks": ticks,
            "probed": probed,
            "hits": self.hits() - hits,
            "cpu": time.process_time() - cpu,
            "rss_start": start_rss,
            "rss_end": _rss_mib(),
            "rss_max": max(samples),
            "rss_by_minute": by_minute,
        }


# --- report -------------------------------------------------------------------------------


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> bool:
    """Print every tick, then the ratios against the baselines; True if the targets hold."""
    print()
    print(f"database: {args.database_kind}; loop: {args.loop}; warm ticks per size: {args.ticks}")
    print(
        f"{'rollouts':>9} {'tick':>5} {'probed':>7} {'hits':>7} {'CPU s':>7} {'GC s':>6}"
        f" {'µs/rollout':>10} {'wall s':>7} {'statements':>10} {'executemany':>11}"
    )
    ok = True
    for result in results:
        n = result["rollouts"]
        for name, tick in [("cold", result["cold"])] + [("warm", t) for t in result["warm"]]:
            print(
                f"{n:>9} {name:>5} {tick.probed:>7} {tick.hits:>7} {tick.cpu:>7.3f}"
                f" {tick.gc:>6.3f} {tick.cpu / n * 1e6:>10.1f} {tick.wall:>7.2f}"
                f" {tick.statements:>10} {tick.executemany:>11}"
            )
            if tick.probed != n or tick.hits != n:
                ok = False
                print(f"    PROBLEM: probed {tick.probed}, the health server saw {tick.hits}")
        for problem in result["problems"]:
            ok = False
            print(f"    PROBLEM: {problem}")

    def best(result: dict[str, Any]) -> Tick:
        # The warm tick least disturbed by anything else on the machine.
        return min(result["warm"] or [result["cold"]], key=lambda t: t.cpu)

    top = results[-1]
    n, tick = top["rollouts"], best(top)
    print()
    print(f"ratios of the best warm tick at {n} rollouts to the same at each baseline:")
    for base in results[:-1]:
        b, other = base["rollouts"], best(base)
        statements = tick.statements / other.statements
        per_rollout = (tick.cpu / n) / (other.cpu / b)
        print(
            f"  vs {b:>6}: statements {tick.statements}/{other.statements} = {statements:.2f}"
            f" (target 1.00, no N+1); CPU {tick.cpu:.3f}/{other.cpu:.3f} s = "
            f"{tick.cpu / other.cpu:.1f}x for {n / b:.0f}x the rollouts, per rollout"
            f" {per_rollout:.2f}x"
        )
        ok &= statements == 1.0
    print(
        f"  CPU of one tick at {n} rollouts / the 1 s target = {tick.cpu:.2f}"
        f" (of which garbage collection {tick.gc / tick.cpu:.0%});"
        f" the cold first tick (parsing every pipeline file) = {top['cold'].cpu:.2f}"
    )
    ok &= tick.cpu < 1.0
    network = top.get("network")
    if network:
        probes, client = network["probes"], network["client"]
        print(
            f"  the same {n} GETs without the scheduler: HealthProbe.check_http {probes:.2f} s;"
            f" aiohttp alone {client:.2f} s ({client / n * 1e6:.0f} µs a GET), which is"
            f" {client:.0%} of the 1 s target and {client / tick.cpu:.0%} of the tick"
        )
        print(
            f"  the tick besides aiohttp's GETs: {(tick.cpu - client) / n * 1e6:.0f} µs a"
            f" rollout (the probe around the GET {(probes - client) / n * 1e6:.0f} µs, the"
            f" rest of the tick {(tick.cpu - probes) / n * 1e6:.0f} µs); the target leaves"
            f" {max(0.0, 1.0 - client) / n * 1e6:.0f} µs a rollout for all of it"
        )
    soak = top.get("soak")
    if soak:
        minutes = " ".join(f"{rss:.0f}" for rss in soak["rss_by_minute"])
        print(
            f"soak at {n} rollouts: {soak['seconds']:.0f} s, {soak['ticks']} ticks every"
            f" {args.tick_seconds:g} s, {soak['probed']} probes ({soak['hits']} seen by the"
            f" health server), CPU {soak['cpu']:.1f} s"
            f" = {soak['cpu'] / max(soak['probed'], 1) * 1e6:.0f} µs a probe with the idle ticks"
            f" (probes share the pool's connections, all to one host here; aiohttp keeps an"
            f" idle one 15 s, so each 30 s round opens them again)"
        )
        print(
            f"  RSS start {soak['rss_start']:.1f} MiB, end {soak['rss_end']:.1f} MiB:"
            f" end/start = {soak['rss_end'] / soak['rss_start']:.3f};"
            f" highest {soak['rss_max']:.1f} MiB; each minute (MiB): {minutes}"
        )
    print("RESULT:", "targets met" if ok else "targets NOT met")
    return ok


# --- running ------------------------------------------------------------------------------


def _pin(core: int) -> None:
    cores = os.sched_getaffinity(0)
    if len(cores) >= 2 and core in cores:
        os.sched_setaffinity(0, {core})


def _run(main: Any) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="postgresql://... (default: SQLite files)")
    parser.add_argument("--sizes", default="100,1000,10000", help="rollout counts, smallest first")
    parser.add_argument("--ticks", type=int, default=3, help="warm ticks measured per size")
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument("--tick-seconds", type=float, default=5, help="DEPLOYBOT_TICK_SECONDS")
    parser.add_argument("--profile", help="write a pyinstrument profile of one tick here")
    parser.add_argument("--concurrency", type=int, help="probes in flight (Scheduler default)")
    parser.add_argument(
        "--quick", action="store_true", help="sizes 100,1000; 1 warm tick; a 40 s soak"
    )
    args = parser.parse_args(argv)
    if args.quick:
        # 40 s: at least one round of probes (every rollout is due each 30 s).
        args.sizes, args.ticks, args.soak_seconds = "100,1000", 1, min(args.soak_seconds, 40)
    args.sizes = sorted(int(n) for n in args.sizes.split(","))
    kind = make_url(args.database_url).get_backend_name() if args.database_url else "sqlite"
    args.database_kind = kind
    try:
        import uvloop  # noqa: F401

        args.loop = "uvloop"
    except ImportError:
        args.loop = "asyncio"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # As `deploybot serve` logs (JSON, INFO), to nowhere: the logging's CPU is counted.
    configure_logging(secrets=[], fmt="json")
    logging.getLogger().handlers[0].setStream(open(os.devnull, "w"))
    results = []
    with health_server() as (port, hits), tempfile.TemporaryDirectory() as workdir:
        _pin(SCHEDULER_CORE)
        print(
            f"scheduler on core {sorted(os.sched_getaffinity(0))}, health server on core "
            f"{HEALTH_CORE}, port {port}; sizes {args.sizes}"
        )
        bench = Bench(args, port, hits)
        for n in args.sizes:
            with fresh_database(args.database_url, Path(workdir)) as url:
                print(f"{n} rollouts: seeding and ticking ...", flush=True)
                results.append(_run(bench.size(url, n, last=n == args.sizes[-1])))
    return 0 if report(results, args) else 1


if __name__ == "__main__":
    sys.exit(main())
