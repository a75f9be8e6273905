"""The reconciler of missed deliveries against the GitHub emulator over HTTP, on both
databases: what it asks GitHub to redeliver, what it leaves alone, and what it does when
GitHub refuses. Also `deploybot reconcile [--dry-run]` as a real process."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.metrics import Metrics
from bot.reconciler import BACKOFF, Reconciler
from integrations.emulators.github import GitHubEmulator
from integrations.github_app import GitHubApp
from storage import db, inbox
from tests.conftest import WEBHOOK_SECRET
from tests.helpers import compact, github_headers

LIST = "apps/list-webhook-deliveries"
REDELIVER = "apps/redeliver-webhook-delivery"
Sessions = async_sessionmaker[AsyncSession]


def ago(**delta: float) -> datetime:
    return datetime.now(UTC) - timedelta(**delta)


@pytest.fixture
def sessions(engine: AsyncEngine) -> Sessions:
    return db.session_factory(engine)


@pytest.fixture
def metrics() -> Metrics:
    return Metrics()


@pytest.fixture
def make_reconciler(
    sessions: Sessions, github: GitHubEmulator, app_private_key_pem: str, metrics: Metrics
) -> Iterator[Callable[..., Reconciler]]:
    """Reconcilers of the emulator's App, sharing one database; each is its own replica."""

    def build(owner: str = "replica-1", **options: Any) -> Reconciler:
        client = GitHubApp(
            app_id=4242,
            private_key=app_private_key_pem,
            base_url=github.url,
            retry_scale=0.001,
            max_retry_wait=1.0,
        )
        return Reconciler(sessions=sessions, github=client, owner=owner, metrics=metrics, **options)

    yield build
    assert github.invalid_requests == []


async def store(sessions: Sessions, guid: str) -> None:
    """What the webhook route does with a verified delivery."""
    async with sessions.begin() as session:
        await inbox.record_delivery(
            session,
            source="github",
            delivery_id=guid,
            event="issue_comment",
            action="created",
            body="{}",
        )


def counted(metrics: Metrics, result: str) -> float:
    return metrics.reconciler.labels(result)._value.get()


def asked_for(github: GitHubEmulator) -> list[int]:
    return [int(call.path.split("/")[-2]) for call in github.calls_to(REDELIVER)]


async def test_failed_deliveries_across_pages_are_redelivered_once(
    github: GitHubEmulator, make_reconciler, metrics: Metrics
) -> None:
    newest_failure = github.add_hook_delivery(status_code=502, delivered_at=ago(seconds=10))
    for n in range(200):
        github.add_hook_delivery(delivered_at=ago(minutes=1, seconds=n))
    oldest_failure = github.add_hook_delivery(status_code=0, delivered_at=ago(hours=70))

    report = await make_reconciler().run_once()

    assert [call.query.get("cursor") is None for call in github.calls_to(LIST)] == [
        True,
        False,
        False,
    ]
    assert asked_for(github) == [oldest_failure["id"], newest_failure["id"]]  # oldest first
    assert [d.guid for d in report.redelivered] == [oldest_failure["guid"], newest_failure["guid"]]
    assert (report.listed, report.failed, report.errors) == (202, 2, [])
    assert counted(metrics, "redelivered") == 2
    # GitHub's new attempts succeeded: nothing is left to ask for.
    again = await make_reconciler().run_once()
    assert (again.failed, again.redelivered) == (0, [])
    assert len(asked_for(github)) == 2


async def test_only_deliveries_that_were_missed_are_asked_for(
    github: GitHubEmulator, make_reconciler, sessions: Sessions, metrics: Metrics
) -> None:
    missed = github.add_hook_delivery(status_code=503, delivered_at=ago(minutes=30))
    stored = github.add_hook_delivery(status_code=0, delivered_at=ago(minutes=20))
    await store(sessions, stored["guid"])  # GitHub timed out, but deploybot had stored it
    github.add_hook_delivery(status_code=502, delivered_at=ago(days=3, hours=1))  # too old
    recovered = github.add_hook_delivery(status_code=500, delivered_at=ago(hours=5))
    github.add_hook_delivery(
        guid=recovered["guid"], redelivery=True, delivered_at=ago(hours=4)
    )  # someone redelivered it by hand, and it went through
    relapsed = github.add_hook_delivery(delivered_at=ago(hours=3))  # the newest attempt failed
    again = github.add_hook_delivery(
        guid=relapsed["guid"], redelivery=True, status_code=504, delivered_at=ago(hours=2)
    )
    github.add_hook_delivery(delivered_at=ago(minutes=1))

    report = await make_reconciler().run_once()

    assert asked_for(github) == [again["id"], missed["id"]]
    assert (report.listed, report.failed, report.stored, report.asked_before) == (7, 3, 1, 0)
    assert counted(metrics, "stored") == 1 and counted(metrics, "redelivered") == 2


async def test_paging_stops_at_deliveries_older_than_three_days(
    github: GitHubEmulator, make_reconciler
) -> None:
    for n in range(120):
        github.add_hook_delivery(delivered_at=ago(hours=1, seconds=n))
    for n in range(150):
        github.add_hook_delivery(status_code=502, delivered_at=ago(days=3, minutes=5 + n))

    report = await make_reconciler().run_once()

    assert len(github.calls_to(LIST)) == 2  # the second page reached past the window
    assert (report.listed, report.failed, report.redelivered) == (120, 0, [])
    assert github.calls_to(REDELIVER) == []


async def test_two_runs_do_not_ask_twice_for_one_attempt(
    github: GitHubEmulator, make_reconciler, metrics: Metrics
) -> None:
    github.redelivery_status_code = None  # GitHub has not made the new attempt yet
    failed = github.add_hook_delivery(status_code=502)
    reconciler = make_reconciler()

    first = await reconciler.run_once()
    second = await reconciler.run_once()
    third = await make_reconciler("replica-2").run_once()
    later = make_reconciler("replica-3", clock=lambda: datetime.now(UTC) + timedelta(hours=2))
    fourth = await later.run_once()  # past any backoff: still the same attempt

    assert asked_for(github) == [failed["id"]]
    assert [len(r.redelivered) for r in (first, second, third, fourth)] == [1, 0, 0, 0]
    assert (second.asked_before, third.asked_before, fourth.asked_before) == (1, 1, 1)
    assert counted(metrics, "asked_before") == 3


async def test_a_redelivery_that_fails_again_is_asked_for_again_later_and_later(
    github: GitHubEmulator, make_reconciler
) -> None:
    github.redelivery_status_code = 502  # deploybot's endpoint is still failing
    github.add_hook_delivery(status_code=502)
    reconciler = make_reconciler()
    start = datetime.now(UTC)

    async def run_at(later: timedelta) -> int:
        reconciler.clock = lambda: start + later
        return len((await reconciler.run_once()).redelivered)

    assert await run_at(timedelta(0)) == 1
    assert await run_at(BACKOFF - timedelta(minutes=1)) == 0
    assert await run_at(BACKOFF + timedelta(minutes=1)) == 1
    assert await run_at(BACKOFF * 2) == 0  # now it waits twice as long
    assert await run_at(BACKOFF * 3 + timedelta(minutes=2)) == 1
    assert len({d["guid"] for d in github.hook_deliveries()}) == 1
    assert len(github.hook_deliveries()) == 4 and len(asked_for(github)) == 3


async def test_replicas_running_at_once_ask_once_per_attempt(
    github: GitHubEmulator, make_reconciler
) -> None:
    github.redelivery_status_code = None
    failed = [
        github.add_hook_delivery(status_code=502, delivered_at=ago(minutes=n)) for n in range(6)
    ]
    replicas = [make_reconciler(f"replica-{n}") for n in range(3)]

    reports = await asyncio.gather(*(replica.run_once() for replica in replicas))

    assert sorted(asked_for(github)) == sorted(d["id"] for d in failed)
    assert sum(len(r.redelivered) for r in reports) == 6


async def test_a_dry_run_asks_nothing_and_remembers_nothing(
    github: GitHubEmulator, make_reconciler, metrics: Metrics
) -> None:
    failed = github.add_hook_delivery(status_code=502)
    reconciler = make_reconciler()

    dry = await reconciler.run_once(dry_run=True)
    assert [d.id for d in dry.redelivered] == [failed["id"]] and dry.dry_run
    assert github.calls_to(REDELIVER) == [] and counted(metrics, "redelivered") == 0

    real = await reconciler.run_once()
    assert [d.id for d in real.redelivered] == [failed["id"]]
    assert asked_for(github) == [failed["id"]]


async def test_a_listing_github_refuses_is_reported_and_counted(
    github: GitHubEmulator, make_reconciler, metrics: Metrics
) -> None:
    github.add_hook_delivery(status_code=502)
    github.fail(LIST, status=502, times=4)  # the first try and githubkit's three retries

    report = await make_reconciler().run_once()

    assert report.redelivered == [] and len(report.errors) == 1
    assert "listing deliveries" in report.errors[0] and "502" in report.errors[0]
    assert counted(metrics, "error") == 1
    github.fail(LIST, status=403)
    assert "403" in (await make_reconciler().run_once()).errors[0]
    assert len((await make_reconciler().run_once()).redelivered) == 1  # GitHub is back


async def test_a_refused_redelivery_is_counted_and_asked_for_again_next_run(
    github: GitHubEmulator, make_reconciler, metrics: Metrics
) -> None:
    first = github.add_hook_delivery(status_code=502, delivered_at=ago(minutes=3))
    second = github.add_hook_delivery(status_code=502, delivered_at=ago(minutes=2))
    third = github.add_hook_delivery(status_code=502, delivered_at=ago(minutes=1))
    reconciler = make_reconciler()

    github.fail(REDELIVER, status=500)  # a 5xx: the others are still asked for
    report = await reconciler.run_once()
    assert [d.id for d in report.redelivered] == [second["id"], third["id"]]
    assert "500" in report.errors[0] and str(first["id"]) in report.errors[0]

    assert [d.id for d in (await reconciler.run_once()).redelivered] == [first["id"]]

    fourth = github.add_hook_delivery(status_code=502)
    fifth = github.add_hook_delivery(status_code=502)
    github.fail(REDELIVER, status=403)  # the App may not: the rest would be refused too
    report = await reconciler.run_once()
    assert report.redelivered == [] and "403" in report.errors[0]
    assert asked_for(github)[-1] == fourth["id"]

    assert [d.id for d in (await reconciler.run_once()).redelivered] == [fourth["id"], fifth["id"]]
    assert counted(metrics, "error") == 2


async def test_the_scheduled_run_comes_after_start_and_survives_github(
    github: GitHubEmulator, make_reconciler
) -> None:
    github.fail(LIST, status=403, times=100)
    reconciler = make_reconciler(first_run_after=timedelta(0), interval=timedelta(hours=1))
    reconciler.start()
    try:
        for _ in range(500):
            if github.calls_to(LIST):
                break
            await asyncio.sleep(0.01)
    finally:
        await reconciler.stop()
    assert len(github.calls_to(LIST)) == 1
    assert (await reconciler.run_once()).listed == 0  # stopped: no more runs
    assert len(github.calls_to(LIST)) == 1


async def test_the_app_runs_it_and_a_delivery_it_stored_is_never_asked_for(
    app: FastAPI, client: httpx.AsyncClient, github: GitHubEmulator
) -> None:
    reconciler = app.state.services.reconciler
    body = compact({"zen": "Keep it logically awesome."})
    headers = github_headers(body, secret=WEBHOOK_SECRET, event="ping")
    assert (await client.post("/github/webhook", content=body, headers=headers)).status_code == 202
    # GitHub gave up waiting for the answer, after deploybot had stored the delivery.
    github.add_hook_delivery(guid=headers["X-GitHub-Delivery"], event="ping", status_code=0)
    missed = github.add_hook_delivery(event="pull_request", action="opened", status_code=503)

    report = await reconciler.run_once()

    assert (report.failed, report.stored) == (2, 1)
    assert asked_for(github) == [missed["id"]]
    github.fail(LIST, status=403)
    assert len((await reconciler.run_once()).errors) == 1
    metrics = (await client.get("/metrics")).text
    assert 'deploybot_reconciler_results_total{result="redelivered"} 1.0' in metrics
    assert 'deploybot_reconciler_results_total{result="stored"} 1.0' in metrics
    assert 'deploybot_reconciler_results_total{result="error"} 1.0' in metrics
    assert (await client.get("/healthz")).status_code == 200


# --- deploybot reconcile, a real process ------------------------------------------------


def deploybot(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SLACK_", "GITHUB_", "DEPLOYBOT_", "DATABASE_URL"))
    }
    return subprocess.run(
        [sys.executable, "-m", "bot", "reconcile", *args],
        cwd=tmp_path,  # no .env there
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_deploybot_reconcile_says_what_it_would_do_then_does_it(
    github: GitHubEmulator,
    database_url: str,
    settings_env: dict[str, str],
    tmp_path: Path,
) -> None:
    env = {**settings_env, "DATABASE_URL": database_url, "GITHUB_API_URL": github.url}
    missed = github.add_hook_delivery(event="pull_request", action="closed", status_code=502)
    github.add_hook_delivery()

    dry = deploybot(tmp_path, env, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    line, summary = dry.stdout.splitlines()
    assert line.split("\t")[:5] == [
        "would redeliver",
        str(missed["id"]),
        missed["guid"],
        "pull_request.closed",
        "Invalid HTTP Response: 502",
    ]
    assert summary.endswith(
        "1 deliveries failed: 0 stored anyway, 0 asked for before, 1 would redeliver"
    )
    assert github.calls_to(REDELIVER) == []

    real = deploybot(tmp_path, env)
    assert real.returncode == 0, real.stderr
    assert real.stdout.startswith(f"redelivered\t{missed['id']}\t")
    assert asked_for(github) == [missed["id"]]

    github.add_hook_delivery(status_code=502)
    github.fail(REDELIVER, status=403)
    refused = deploybot(tmp_path, env)
    assert refused.returncode == 1
    assert "deploybot reconcile: redelivering" in refused.stderr and "403" in refused.stderr
    assert "BEGIN" not in refused.stderr + refused.stdout  # no key, nor any JWT
    assert "eyJ" not in refused.stderr + refused.stdout
