"""Crash recovery (issue #6, item 2): a real `deploybot serve` is killed with SIGKILL at a
chosen point of the release story (while it handles a delivery, while GitHub or Slack holds
one of its calls, while it probes a rollout's health, between canary steps), a new one is
started on the same database, emulators and port, and the story goes on where it was, every
effect sent once. On SQLite and PostgreSQL.

The GitHub emulator, the health endpoint and a wire in front of the Slack emulator hold a
call open so the kill lands inside it. The inbox, outbox and scheduler leases are 60 s,
defaults in `bot/worker.py` and `bot/scheduler.py` that no setting changes; waiting one out
per kill would take a minute each, so after a kill `run_out_leases` ends the dead process's
leases now, as if that minute had passed with nothing running.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from integrations.emulators.github import GitHubEmulator
from integrations.emulators.loopback import LoopbackServer
from integrations.emulators.slack import SlackEmulator
from storage import db
from storage.models import InboxItem, OutboxEffect, utcnow
from storage.models import Rollout as RolloutRow
from tests.conftest import BOT_TOKEN, WEBHOOK_SECRET
from tests.e2e.server import ServeProcess
from tests.helpers import compact, github_headers
from tests.story import (
    CHANNEL,
    NAME,
    OWNER,
    HealthEndpoint,
    Story,
    comment,
    deployment_status,
    installation_created,
    pull_request,
)

pytestmark = pytest.mark.e2e

# How long a held call stays open: the kill comes within milliseconds of the hold.
HOLD = 3.0
SHAS = {1: "1" * 40, 2: "2" * 40}


class SlackWire(LoopbackServer):
    """The Slack Web API as deploybot reaches it: each call handed to the emulator, except
    that `hold(method)` keeps the next call of `method` open after Slack took it (posted the
    message) and before its answer goes back, so the sender can die not knowing."""

    def __init__(self, slack: SlackEmulator) -> None:
        self.slack = slack
        self.holding = threading.Event()
        self.taken: dict[str, Any] | None = None  # the held call's answer, as Slack gave it
        self._held: set[str] = set()
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/api/{method:str}", self._call, methods=["GET", "POST"])])
        super().__init__(app, thread_name="slack-wire")

    @property
    def url(self) -> str:
        return f"{self.base_url}/api/"

    def hold(self, method: str) -> None:
        with self._lock:
            self._held.add(method)
        self.taken = None
        self.holding.clear()

    async def _call(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        status, body, headers = self.slack.handle(
            method,
            http_method=request.method,
            headers=dict(request.headers),
            query=str(request.url.query),
            body=await request.body(),
        )
        with self._lock:
            held = method in self._held
            self._held.discard(method)
        if held:
            self.taken = body
            self.holding.set()
            await self.wait_for_stop(HOLD)
        return JSONResponse(body, status_code=status, headers=headers)


class HeldHealth(HealthEndpoint):
    """The health endpoint, which can keep the next probe waiting for its answer."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self._hold = False
        super().__init__()

    def hold_next(self) -> None:
        self.holding.clear()
        self._hold = True

    async def _health(self, request: Request) -> PlainTextResponse:
        if self._hold:
            self._hold = False
            self.holding.set()
            await self.wait_for_stop(HOLD)
        return await super()._health(request)


@dataclass
class Crashes:
    """One deploybot serve that the test kills and starts again, on the same database."""

    server: ServeProcess
    story: Story
    github: GitHubEmulator
    slack: SlackEmulator
    wire: SlackWire
    health: HeldHealth
    engine: AsyncEngine

    def kill(self) -> None:
        self.server.kill()

    async def restart(self) -> None:
        await run_out_leases(self.engine)
        await asyncio.to_thread(self.server.restart)


async def run_out_leases(engine: AsyncEngine) -> None:
    """End every lease now, keeping its owner (so a new claim knows it took the row from
    someone who never finished it): what a lease's length of waiting would do."""
    past = utcnow() - timedelta(seconds=1)
    async with engine.begin() as connection:
        for table in (InboxItem, OutboxEffect, RolloutRow):
            column: Any = table.lease_owner  # type: ignore[attr-defined]
            await connection.execute(
                sa.update(table).where(column.is_not(None)).values(lease_until=past)
            )


@pytest.fixture
def emulators(
    app_private_key: rsa.RSAPrivateKey,
) -> Iterator[tuple[GitHubEmulator, SlackEmulator, SlackWire, HeldHealth]]:
    public = app_private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with (
        GitHubEmulator(app_id=4242, app_public_key=public) as github,
        SlackEmulator(bot_token=BOT_TOKEN) as slack,
        SlackWire(slack) as wire,
        HeldHealth() as health,
    ):
        yield github, slack, wire, health


@pytest.fixture
async def crashes(
    emulators, settings_env: dict[str, str], database_url: str, tmp_path: Path
) -> AsyncIterator[Crashes]:
    github, slack, wire, health = emulators
    for login in ("alice", "bob"):
        github.set_permission(OWNER, NAME, login, "write")
    env = {
        **settings_env,
        "DATABASE_URL": database_url,
        "GITHUB_API_URL": github.url,
        "SLACK_API_URL": wire.url,
        "DEPLOYBOT_TICK_SECONDS": "0.3",
    }
    server = ServeProcess(env, tmp_path / "serve.log").start()
    engine = db.create_engine(database_url)

    async def wait_for_the_scheduler() -> None:
        await asyncio.sleep(0.3)

    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            story = Story(
                client,
                github,
                slack,
                sessions=db.read_sessions(engine),
                tick=wait_for_the_scheduler,
            )
            yield Crashes(server, story, github, slack, wire, health, engine)
    finally:
        await engine.dispose()
        server.stop()
    output = server.output()
    assert "Traceback" not in output, output[-3000:]
    assert github.invalid_requests == [] and slack.invalid_calls == []


def pipeline(health_url: str | None = None, *, canary: bool = False) -> str:
    """`stage` then `qa`; with `health_url`, stage is verified (and, `canary`, in steps)."""
    stage = "  - name: stage\n"
    if health_url:
        stage += f'    health: {{url: "{health_url}", interval: 500ms, soak: 1s, failures: 2}}\n'
    if canary:
        stage += "    canary: {steps: [10, 50, 100], pause: 1s}\n"
    return f"""
slack:
  channel: {CHANNEL}
users:
  alice: U0ALICE
  bob: U0BOB
environments:
{stage}  - name: qa
"""


# --- what GitHub sends ------------------------------------------------------------------


async def send(story: Story, event: str, payload: dict, delivery: str) -> httpx.Response:
    """One delivery as GitHub sends it (and sends it again, with the same id, when it got
    no 2xx or someone presses Redeliver); not waiting for the app to handle it."""
    body = compact(payload)
    headers = github_headers(body, secret=WEBHOOK_SECRET, event=event, delivery=delivery)
    return await story.client.post("/github/webhook", content=body, headers=headers)


@contextlib.asynccontextmanager
async def half_sent(port: int, event: str, payload: dict, delivery: str) -> AsyncIterator[None]:
    """GitHub in the middle of sending a delivery: headers and half the body written."""
    body = compact(payload)
    headers = github_headers(body, secret=WEBHOOK_SECRET, event=event, delivery=delivery)
    head = "".join(
        [
            "POST /github/webhook HTTP/1.1\r\n",
            f"Host: 127.0.0.1:{port}\r\n",
            f"Content-Length: {len(body)}\r\n",
            *(f"{name}: {value}\r\n" for name, value in headers.items()),
            "\r\n",
        ]
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + body[: len(body) // 2])
    await writer.drain()
    await asyncio.sleep(0.2)  # the server has read what there is and waits for the rest
    try:
        yield
        try:
            answer = await reader.read()
        except ConnectionResetError:
            answer = b""
        assert answer == b"", "the server answered a half-sent delivery"
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def open_pr(story: Story, number: int) -> dict:
    """PR `number` (head `SHAS[number]`), which GitHub now answers for."""
    pr = pull_request(
        "opened", number=number, sha=SHAS[number], title=f"Change {number}", author="alice"
    )
    story.github.respond("pulls/get", body=pr["pull_request"])
    return pr


def deploy_comment(environment: str, *, number: int, comment_id: int) -> dict:
    return comment(f"/deploy {environment}", number=number, login="alice", comment_id=comment_id)


# --- waiting and reading -----------------------------------------------------------------


async def until(predicate: Callable[[], bool], what: str, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen in time"
        await asyncio.sleep(0.01)


def held(github: GitHubEmulator, operation_id: str, count: int = 1) -> bool:
    """GitHub has the `count`th call of `operation_id` and has not answered it yet."""
    calls = github.calls_to(operation_id)
    return len(calls) >= count and calls[count - 1].status is None


def answered(github: GitHubEmulator, operation_id: str) -> bool:
    return all(call.status is not None for call in github.calls_to(operation_id))


async def inbox_status(story: Story, delivery: str) -> str | None:
    """Where the inbox has the delivery (None: it was never stored)."""
    async with story.sessions() as session:
        return await session.scalar(
            sa.select(InboxItem.status).where(InboxItem.delivery_id == delivery)
        )


async def leased_rollouts(story: Story) -> int:
    """Rollouts a scheduler holds now (to probe them)."""
    async with story.sessions() as session:
        count = await session.scalar(
            sa.select(sa.func.count())
            .select_from(RolloutRow)
            .where(RolloutRow.lease_owner.is_not(None))  # type: ignore[union-attr]
        )
    return int(count or 0)


def deployments(story: Story, environment: str, number: int) -> list[dict]:
    return [d for d in story.deployments(environment) if d["sha"] == SHAS[number]]


def threads(slack: SlackEmulator) -> list[dict]:
    """The channel's top-level messages: one status board per pull request."""
    return [
        m
        for m in slack.messages
        if m["channel"] == CHANNEL and m.get("thread_ts") in (None, m["ts"])
    ]


def assert_each_reply_once(slack: SlackEmulator) -> None:
    replies = Counter(
        (m["thread_ts"], m.get("text", ""))
        for m in slack.messages
        if m.get("thread_ts") not in (None, m["ts"])
    )
    assert replies, "the threads have replies"
    twice = [text for (_, text), count in replies.items() if count > 1]
    assert twice == [], f"posted more than once: {twice}"


def thread_text(story: Story) -> str:
    return html.unescape(story.thread())


# --- the crash points --------------------------------------------------------------------


async def test_a_delivery_in_flight_or_stored_when_killed_is_handled_once(
    crashes: Crashes,
) -> None:
    story, github = crashes.story, crashes.github
    github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline())
    await story.deliver("installation", installation_created())

    # In flight: killed while GitHub is still sending the body. No 2xx, nothing stored;
    # GitHub sends it again to the new process, which handles it once.
    open_pr(story, 1)
    first = deploy_comment("stage", number=1, comment_id=11)
    async with half_sent(crashes.server.port, "issue_comment", first, "crash-1"):
        crashes.kill()
    await crashes.restart()
    assert await inbox_status(story, "crash-1") is None
    assert (await send(story, "issue_comment", first, "crash-1")).status_code == 202
    await story.settle()
    (stage,) = deployments(story, "stage", 1)
    assert len(threads(crashes.slack)) == 1
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))
    await story.eventually(lambda: "`stage` is running 1111111" in story.thread())

    # Stored and answered 202, killed while its handler reads from GitHub: the new process
    # handles it, and GitHub's redelivery of it changes nothing.
    open_pr(story, 2)
    github.delay("repos/get-collaborator-permission-level", HOLD)
    second = deploy_comment("stage", number=2, comment_id=21)
    calls = len(github.calls_to("repos/get-collaborator-permission-level"))
    assert (await send(story, "issue_comment", second, "crash-2")).status_code == 202
    await until(
        lambda: held(github, "repos/get-collaborator-permission-level", calls + 1),
        "the handler reading the permission",
    )
    crashes.kill()
    assert await inbox_status(story, "crash-2") == "pending"
    assert deployments(story, "stage", 2) == []
    await crashes.restart()
    await story.settle()
    assert (await send(story, "issue_comment", second, "crash-2")).status_code in (200, 202)
    await story.settle()
    assert len(deployments(story, "stage", 2)) == 1
    assert len(threads(crashes.slack)) == 2
    assert len(github.calls_to("reactions/create-for-issue-comment")) == 2
    assert_each_reply_once(crashes.slack)


async def test_killed_while_github_creates_a_deployment_deploys_once(crashes: Crashes) -> None:
    story, github = crashes.story, crashes.github
    github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline())
    await story.deliver("installation", installation_created())
    await story.deliver("pull_request", open_pr(story, 1))

    # GitHub creates the deployment, but its answer never reaches the process.
    github.delay("repos/create-deployment", 0.5)
    await send(story, "issue_comment", deploy_comment("stage", number=1, comment_id=11), "d-1")
    await until(lambda: held(github, "repos/create-deployment"), "the deployment call")
    crashes.kill()
    await until(lambda: answered(github, "repos/create-deployment"), "GitHub creating it")
    assert len(deployments(story, "stage", 1)) == 1
    await crashes.restart()
    await story.settle()
    (stage,) = deployments(story, "stage", 1)
    # The new process recorded GitHub's deployment as the rollout's: its status lands.
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))
    await story.eventually(lambda: "`stage` is running 1111111" in story.thread())

    # GitHub never creates it (the call fails after the process is gone): created once, now.
    github.fail("repos/create-deployment", status=502, delay=HOLD)
    calls = len(github.calls_to("repos/create-deployment"))
    await send(story, "issue_comment", deploy_comment("qa", number=1, comment_id=12), "d-2")
    await until(lambda: held(github, "repos/create-deployment", calls + 1), "the qa call")
    crashes.kill()
    assert deployments(story, "qa", 1) == []
    await crashes.restart()
    await story.settle()
    (qa,) = deployments(story, "qa", 1)
    await story.deliver("deployment_status", deployment_status(qa["id"], "success"))
    await story.eventually(lambda: "`qa` is running 1111111" in story.thread())
    assert len(deployments(story, "stage", 1)) == 1
    assert_each_reply_once(crashes.slack)


async def test_killed_while_slack_takes_a_message_posts_it_once(crashes: Crashes) -> None:
    story, github, slack = crashes.story, crashes.github, crashes.slack
    github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline())
    await story.deliver("installation", installation_created())

    # Slack posts the thread's status board; the process dies before it hears back.
    crashes.wire.hold("chat.postMessage")
    await send(story, "pull_request", open_pr(story, 1), "s-1")
    await until(crashes.wire.holding.is_set, "posting the board")
    crashes.kill()
    assert crashes.wire.taken is not None and len(threads(slack)) == 1
    await crashes.restart()
    await story.settle()
    assert len(threads(slack)) == 1

    # The same for a reply in the thread.
    crashes.wire.hold("chat.postMessage")
    await send(story, "issue_comment", deploy_comment("stage", number=1, comment_id=11), "s-2")
    await until(crashes.wire.holding.is_set, "posting a reply")
    crashes.kill()
    reply = crashes.wire.taken
    assert reply is not None and reply["message"]["thread_ts"] == threads(slack)[0]["ts"]
    await crashes.restart()
    await story.settle()
    assert len(threads(slack)) == 1
    assert len(deployments(story, "stage", 1)) == 1
    assert_each_reply_once(slack)


async def test_killed_mid_soak_the_rollout_finishes_or_rolls_back_once(crashes: Crashes) -> None:
    story, github, health = crashes.story, crashes.github, crashes.health
    github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline(health.url))
    await story.deliver("installation", installation_created())

    # Killed while it probes a healthy rollout: the new process soaks it to success.
    await story.deliver("pull_request", open_pr(story, 1))
    await story.deliver("issue_comment", deploy_comment("stage", number=1, comment_id=11))
    (good,) = deployments(story, "stage", 1)
    health.hold_next()
    await story.deliver("deployment_status", deployment_status(good["id"], "success"))
    await until(health.holding.is_set, "a health probe")
    crashes.kill()
    assert await leased_rollouts(story) == 1
    await crashes.restart()
    await story.tick_until(lambda: "`stage` is running 1111111" in story.thread())

    # Killed while it probes a failing one: the new process fails it and rolls back, once.
    await story.deliver("pull_request", open_pr(story, 2))
    await story.deliver("issue_comment", deploy_comment("stage", number=2, comment_id=21))
    (bad,) = deployments(story, "stage", 2)
    health.failing = True
    health.hold_next()
    await story.deliver("deployment_status", deployment_status(bad["id"], "success"))
    await until(health.holding.is_set, "a failing health probe")
    crashes.kill()
    assert await leased_rollouts(story) == 1
    await crashes.restart()
    await story.tick_until(lambda: len(deployments(story, "stage", 1)) == 2)
    await story.settle()  # the rollback's deployment id is recorded
    rollback = deployments(story, "stage", 1)[0]
    assert rollback["payload"]["kind"] == "rollback"
    health.failing = False
    await story.deliver("deployment_status", deployment_status(rollback["id"], "success"))
    await story.eventually(lambda: "Rolled back `stage` to 1111111" in story.thread())
    for _ in range(3):
        await story.tick()
    await story.settle()
    assert len(story.deployments("stage")) == 3
    assert thread_text(story).count("Rolling `stage` back to 1111111") == 1
    assert_each_reply_once(crashes.slack)


async def test_killed_between_canary_steps_the_canary_goes_on_to_100(crashes: Crashes) -> None:
    story, github, health = crashes.story, crashes.github, crashes.health
    github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline(health.url, canary=True))
    await story.deliver("installation", installation_created())
    await story.deliver("pull_request", open_pr(story, 1))
    await story.deliver("issue_comment", deploy_comment("stage", number=1, comment_id=11))

    def steps() -> list[tuple[str, int | None]]:
        return [
            (d["task"], d["payload"].get("weight")) for d in reversed(story.deployments("stage"))
        ]

    async def succeed_newest() -> None:
        newest = story.deployments("stage")[0]
        await story.deliver("deployment_status", deployment_status(newest["id"], "success"))

    # Killed in the pause after 10 %, while it probes the canary.
    assert steps() == [("deploy:canary", 10)]
    health.hold_next()
    await succeed_newest()
    await until(health.holding.is_set, "a probe of the 10% step")
    crashes.kill()
    assert await leased_rollouts(story) == 1
    await crashes.restart()
    await story.tick_until(lambda: len(steps()) == 2)
    await story.settle()  # the step's deployment id is recorded
    assert steps()[-1] == ("deploy:canary", 50)

    # Killed while GitHub creates the 100 % deployment, which it does after the process died.
    github.delay("repos/create-deployment", 0.5)
    calls = len(github.calls_to("repos/create-deployment"))
    await succeed_newest()
    await until(lambda: held(github, "repos/create-deployment", calls + 1), "the 100% step")
    crashes.kill()
    await until(lambda: answered(github, "repos/create-deployment"), "GitHub creating it")
    await crashes.restart()
    await story.settle()
    assert steps() == [("deploy:canary", 10), ("deploy:canary", 50), ("deploy", 100)]
    await succeed_newest()
    await story.tick_until(lambda: "`stage` is running 1111111" in story.thread())
    assert len(steps()) == 3
    assert_each_reply_once(crashes.slack)
