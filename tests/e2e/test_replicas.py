"""Replicas (issue #6, item 1): several real `deploybot serve` processes on one PostgreSQL
database, the same GitHub and Slack emulators and health endpoint behind them all, a short
lease (`DEPLOYBOT_LEASE_SECONDS`) and a short tick.

A delivery posted to two replicas at once is stored once and handled once; a verifying
rollout is probed at its interval, not once per replica; a replica killed with SIGKILL in
the middle of a delivery or of a GitHub call leaves its work to another, which takes it
over when the lease runs out and finishes it once; the replies of one thread are posted in
the order they were written, whichever replica sends them.

Each replica reaches Slack through its own path on a wire in front of the Slack emulator,
so the test knows which replica posted what; a lease's owner names its process id, so the
test knows which replica holds a row.
"""

from __future__ import annotations

import asyncio
import html
import itertools
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
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

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.postgres,
    # PostgreSQL only: SQLite is one file on one machine, so it has no replicas to test.
    pytest.mark.parametrize("database_url", ["postgresql"], indirect=True),
]

LEASE = 3.0  # DEPLOYBOT_LEASE_SECONDS
TICK = 0.3  # DEPLOYBOT_TICK_SECONDS
POLL = 1.0  # how often an idle queue worker looks again (QueueWorker.poll_seconds)
SHAS = {1: "1" * 40, 2: "2" * 40}


class SlackWire(LoopbackServer):
    """The Slack Web API as the replicas reach it: each replica has its own path
    (`/<name>/api/`), each call is handed to the emulator, and each message posted is noted
    with the replica that posted it and when. `post_delay` keeps every `chat.postMessage`
    that long after Slack took it, before its answer goes back."""

    def __init__(self, slack: SlackEmulator) -> None:
        self.slack = slack
        self.post_delay = 0.0
        self.posts: list[Post] = []
        self.holding = threading.Event()
        self._hold: tuple[int, float] | None = None
        self._lock = threading.Lock()
        app = Starlette(
            routes=[Route("/{replica:str}/api/{method:str}", self._call, methods=["GET", "POST"])]
        )
        super().__init__(app, thread_name="slack-wire")

    def url_for(self, replica: str) -> str:
        return f"{self.base_url}/{replica}/api/"

    def hold_reply(self, index: int, seconds: float) -> None:
        """Keep the answer to thread reply number `index` (0: the next reply posted)
        `seconds` instead; `holding` is set while it is kept."""
        with self._lock:
            self._hold = (len(self._replies()) + index, seconds)
        self.holding.clear()

    def replies(self) -> list[Post]:
        with self._lock:
            return self._replies()

    def _replies(self) -> list[Post]:
        return [post for post in self.posts if post.reply]

    async def _call(self, request: Request) -> JSONResponse:
        method = request.path_params["method"]
        status, body, headers = self.slack.handle(
            method,
            http_method=request.method,
            headers=dict(request.headers),
            query=str(request.url.query),
            body=await request.body(),
        )
        if method == "chat.postMessage" and body.get("ok"):
            post = Post(request.path_params["replica"], body["message"], time.time())
            delay = self.post_delay
            with self._lock:
                if post.reply and self._hold and self._hold[0] == len(self._replies()):
                    delay = self._hold[1]
                    self.holding.set()
                self.posts.append(post)
            await asyncio.sleep(delay)
        return JSONResponse(body, status_code=status, headers=headers)


@dataclass
class Post:
    """A message Slack took: who posted it, and when (wall clock)."""

    replica: str
    message: dict[str, Any]
    at: float

    @property
    def reply(self) -> bool:
        return self.message.get("thread_ts") not in (None, self.message["ts"])

    @property
    def key(self) -> str | None:
        """The outbox key the message carries (its metadata)."""
        metadata = self.message.get("metadata") or {}
        return (metadata.get("event_payload") or {}).get("key")


class TimedHealth(HealthEndpoint):
    """The health endpoint, noting when each probe came."""

    def __init__(self) -> None:
        self.times: list[float] = []
        super().__init__()

    async def _health(self, request: Request) -> PlainTextResponse:
        self.times.append(time.monotonic())
        return await super()._health(request)


@dataclass
class Replica:
    """One `deploybot serve`, reaching Slack at `/<name>/api/` on the wire."""

    name: str
    server: ServeProcess
    client: httpx.AsyncClient
    paused: bool = False

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    @property
    def running(self) -> bool:
        alive = self.server.process is not None and self.server.process.poll() is None
        return alive and not self.paused

    def probes(self) -> int:
        """How many health probes it has finished (its log says so)."""
        return self.server.output().count('"event": "probed"')


@dataclass
class Cluster:
    """The replicas, the emulators and the database they share; `story` tells the story to
    a running replica and reads what they all did."""

    env: dict[str, str]
    tmp_path: Path
    github: GitHubEmulator
    slack: SlackEmulator
    wire: SlackWire
    health: TimedHealth
    engine: AsyncEngine
    replicas: list[Replica] = field(default_factory=list)
    story: Story = field(init=False)  # from the first `start`

    def __post_init__(self) -> None:
        self.sessions = db.read_sessions(self.engine)

    @property
    def running(self) -> list[Replica]:
        return [r for r in self.replicas if r.running]

    async def start(self, count: int) -> list[Replica]:
        """Start `count` replicas side by side (they migrate the database together)."""
        names = [chr(ord("a") + len(self.replicas) + i) for i in range(count)]
        servers = [
            ServeProcess(
                {**self.env, "SLACK_API_URL": self.wire.url_for(name)},
                self.tmp_path / f"serve-{name}.log",
            )
            for name in names
        ]
        await asyncio.gather(*(asyncio.to_thread(server.start) for server in servers))
        started = [
            Replica(name, server, httpx.AsyncClient(base_url=server.url, timeout=10))
            for name, server in zip(names, servers, strict=True)
        ]
        self.replicas.extend(started)
        if not hasattr(self, "story"):

            async def wait_for_the_scheduler() -> None:
                await asyncio.sleep(TICK)

            self.story = Story(
                started[0].client,
                self.github,
                self.slack,
                sessions=self.sessions,
                tick=wait_for_the_scheduler,
            )
        return started

    def holder(self, lease_owner: str | None) -> Replica:
        """The replica whose process holds a lease (owners are `host:pid:random`)."""
        assert lease_owner is not None, "no one holds it"
        pid = int(lease_owner.split(":")[-2])
        (replica,) = [r for r in self.replicas if r.pid == pid]
        return replica

    def named(self, name: str) -> Replica:
        (replica,) = [r for r in self.replicas if r.name == name]
        return replica

    async def send(self, replica: Replica, event: str, payload: dict, delivery: str) -> int:
        """A signed delivery to one replica, not waiting for it to be handled."""
        body = compact(payload)
        headers = github_headers(body, secret=WEBHOOK_SECRET, event=event, delivery=delivery)
        response = await replica.client.post("/github/webhook", content=body, headers=headers)
        assert response.is_success, response.text
        return response.status_code

    async def kill(self, replica: Replica) -> float:
        """SIGKILL `replica`; returns when (monotonic)."""
        replica.server.kill()
        killed = time.monotonic()
        self._retell()
        # A write it had sent before it died (a lease renewal) lands before the test reads.
        await asyncio.sleep(0.05)
        return killed

    async def pause(self, replica: Replica) -> None:
        """SIGSTOP `replica`, which keeps everything it holds until `resume`."""
        replica.server.pause()
        replica.paused = True
        self._retell()
        await asyncio.sleep(0.05)

    def resume(self, replica: Replica) -> None:
        replica.server.resume()
        replica.paused = False

    def _retell(self) -> None:
        self.story.client = self.running[0].client

    async def stop(self) -> None:
        for replica in self.replicas:
            if replica.paused:
                self.resume(replica)
            await replica.client.aclose()
        await asyncio.gather(*(asyncio.to_thread(r.server.stop) for r in self.replicas))


@pytest.fixture
def emulators(
    app_private_key: rsa.RSAPrivateKey,
) -> Iterator[tuple[GitHubEmulator, SlackEmulator, SlackWire, TimedHealth]]:
    public = app_private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with (
        GitHubEmulator(app_id=4242, app_public_key=public) as github,
        SlackEmulator(bot_token=BOT_TOKEN) as slack,
        SlackWire(slack) as wire,
        TimedHealth() as health,
    ):
        yield github, slack, wire, health


@pytest.fixture
async def cluster(
    emulators, settings_env: dict[str, str], database_url: str, tmp_path: Path
) -> AsyncIterator[Cluster]:
    """No replica yet: each test starts as many as it needs."""
    github, slack, wire, health = emulators
    for login in ("alice", "bob"):
        github.set_permission(OWNER, NAME, login, "write")
    env = {
        **settings_env,
        "DATABASE_URL": database_url,
        "GITHUB_API_URL": github.url,
        "DEPLOYBOT_TICK_SECONDS": str(TICK),
        "DEPLOYBOT_LEASE_SECONDS": str(LEASE),
    }
    engine = db.create_engine(database_url)
    cluster = Cluster(env, tmp_path, github, slack, wire, health, engine)
    try:
        yield cluster
    finally:
        await cluster.stop()
        await engine.dispose()
    for replica in cluster.replicas:
        output = replica.server.output()
        assert "Traceback" not in output, f"replica {replica.name}:\n{output[-3000:]}"
    assert github.invalid_requests == [] and slack.invalid_calls == []


def pipeline(health_url: str | None = None) -> str:
    """`stage` (verified when `health_url` is given, and soaking for longer than a test
    looks) then `qa`."""
    stage = "  - name: stage\n"
    if health_url:
        stage += f'    health: {{url: "{health_url}", interval: 1s, soak: 1m, failures: 3}}\n'
    return f"""
slack:
  channel: {CHANNEL}
users:
  alice: U0ALICE
environments:
{stage}  - name: qa
"""


def open_pr(cluster: Cluster, number: int) -> dict:
    pr = pull_request(
        "opened", number=number, sha=SHAS[number], title=f"Change {number}", author="alice"
    )
    cluster.github.respond("pulls/get", body=pr["pull_request"])
    return pr


def deploy_comment(environment: str, *, number: int, comment_id: int) -> dict:
    return comment(f"/deploy {environment}", number=number, login="alice", comment_id=comment_id)


# --- waiting and reading -----------------------------------------------------------------


async def until(predicate: Callable[[], bool], what: str, seconds: float = 10) -> float:
    """Wait for `predicate`; returns the monotonic time it was first seen true."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, f"{what} did not happen in time"
        await asyncio.sleep(0.01)
    return time.monotonic()


async def until_async(predicate: Callable[[], Any], what: str, seconds: float = 10) -> float:
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, f"{what} did not happen in time"
        await asyncio.sleep(0.01)
    return time.monotonic()


def held(github: GitHubEmulator, operation_id: str, count: int) -> bool:
    """GitHub has the `count`th call of `operation_id` and has not answered it yet."""
    calls = github.calls_to(operation_id)
    return len(calls) >= count and calls[count - 1].status is None


async def row(cluster: Cluster, table: Any, *where: Any) -> Any:
    async with cluster.sessions() as session:
        return (await session.execute(sa.select(table).where(*where))).scalar_one()


def deployments(cluster: Cluster, environment: str, number: int) -> list[dict]:
    return [
        d
        for d in cluster.github.deployments(OWNER, NAME)
        if d["environment"] == environment and d["sha"] == SHAS[number]
    ]


def threads(slack: SlackEmulator) -> list[dict]:
    return [
        m
        for m in slack.messages
        if m["channel"] == CHANNEL and m.get("thread_ts") in (None, m["ts"])
    ]


def replies(slack: SlackEmulator) -> list[dict]:
    return [m for m in slack.messages if m.get("thread_ts") not in (None, m["ts"])]


def assert_each_reply_once(slack: SlackEmulator) -> None:
    said = Counter((m["thread_ts"], m.get("text", "")) for m in replies(slack))
    assert said, "the thread has replies"
    twice = [text for (_, text), count in said.items() if count > 1]
    assert twice == [], f"posted more than once: {twice}"


# --- the tests ----------------------------------------------------------------------------


async def test_a_delivery_posted_to_two_replicas_at_once_is_handled_once(
    cluster: Cluster,
) -> None:
    """GitHub's delivery (or its redelivery) reaching two replicas at the same moment, as
    behind a load balancer: stored once, so one thread, one deployment, one 👀."""
    a, b = await cluster.start(2)
    story, github = cluster.story, cluster.github
    github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline())
    await story.deliver("installation", installation_created())

    async def at_once(event: str, payload: dict, delivery: str) -> None:
        answers = await asyncio.gather(
            cluster.send(a, event, payload, delivery), cluster.send(b, event, payload, delivery)
        )
        # One replica stores it (202); the other finds it stored (200, "duplicate").
        assert sorted(answers) == [200, 202]

    await at_once("pull_request", open_pr(cluster, 1), "twice-1")
    await story.settle()
    await at_once("issue_comment", deploy_comment("stage", number=1, comment_id=11), "twice-2")
    await story.settle()
    (stage,) = deployments(cluster, "stage", 1)
    await at_once("deployment_status", deployment_status(stage["id"], "success"), "twice-3")
    await story.settle()

    async with cluster.sessions() as session:
        stored = await session.scalar(sa.select(sa.func.count()).select_from(InboxItem))
    assert stored == 4  # the installation and the three deliveries, each once
    assert len(threads(cluster.slack)) == 1
    assert len(deployments(cluster, "stage", 1)) == 1
    assert len(github.calls_to("reactions/create-for-issue-comment")) == 1
    assert "`stage` is running 1111111" in story.thread()
    assert_each_reply_once(cluster.slack)


async def test_a_verifying_rollout_is_probed_at_its_interval_not_once_per_replica(
    cluster: Cluster,
) -> None:
    """Both replicas tick every 0.3 s; the rollout's health is checked every 1 s by one
    of them at a time, and by the other once that one is gone."""
    await cluster.start(2)
    story, health = cluster.story, cluster.health
    cluster.github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline(health.url))
    await story.deliver("installation", installation_created())
    await story.deliver("pull_request", open_pr(cluster, 1))
    await story.deliver("issue_comment", deploy_comment("stage", number=1, comment_id=11))
    (stage,) = deployments(cluster, "stage", 1)
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))

    # A probe starts on the first tick (of any replica) at or after its due time, which
    # counts from the tick of the one before: each gap is the interval (1 s) plus up to one
    # tick, give or take the few milliseconds between a tick and its request. Two replicas
    # probing on their own would make gaps well under the interval, and twice the probes.
    await until(lambda: len(health.times) >= 1, "the first probe")
    await asyncio.sleep(4.0)
    before = probe_gaps(health)
    assert len(before) >= 3 and all(0.8 <= gap <= 1.0 + TICK + 0.3 for gap in before), before

    # Shared: the replica that probes dies (between two probes, holding no lease); the
    # other probes the rollout at its next due time, and at the same interval.
    prober = max(cluster.replicas, key=Replica.probes)
    seen = len(health.times)
    await until_async(lambda: lease_free(cluster, RolloutRow), "the probe's lease released")
    assert len(health.times) == seen
    await cluster.kill(prober)
    (survivor,) = cluster.running
    probed = survivor.probes()
    await until(lambda: survivor.probes() >= probed + 3, "the survivor probing")
    after = probe_gaps(health)[len(before) :]
    assert all(0.8 <= gap <= 1.0 + TICK + 0.3 for gap in after), after
    async with cluster.sessions() as session:
        rollout = (await session.execute(sa.select(RolloutRow))).scalar_one()
    assert rollout.status == "verifying"


def probe_gaps(health: TimedHealth) -> list[float]:
    times = list(health.times)
    return [round(later - earlier, 3) for earlier, later in itertools.pairwise(times)]


async def lease_free(cluster: Cluster, table: Any) -> bool:
    async with cluster.sessions() as session:
        held = await session.scalar(
            sa.select(sa.func.count()).select_from(table).where(table.lease_owner.is_not(None))
        )
    return held == 0


async def test_the_work_of_a_killed_replica_is_finished_by_another_within_a_lease(
    cluster: Cluster,
) -> None:
    """Killed while it handles a delivery (GitHub holds its permission read), then while it
    creates a deployment (GitHub holds the call, and creates it after the sender is gone):
    each time another replica takes the work over once the dead one's lease has run out,
    not before, and finishes it within a lease and a poll of the kill; every deployment,
    reaction and reply once."""
    await cluster.start(3)
    story, github = cluster.story, cluster.github
    github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline())
    await story.deliver("installation", installation_created())
    await story.deliver("pull_request", open_pr(cluster, 1))

    # Mid-ingest: the delivery is stored and answered; its handler waits on GitHub.
    permission = "repos/get-collaborator-permission-level"
    github.delay(permission, 30)
    calls = len(github.calls_to(permission))
    stage_comment = deploy_comment("stage", number=1, comment_id=11)
    await cluster.send(cluster.replicas[1], "issue_comment", stage_comment, "kill-1")
    await until(lambda: held(github, permission, calls + 1), "the handler reading GitHub")
    item = await row(cluster, InboxItem, InboxItem.delivery_id == "kill-1")
    killed = await cluster.kill(cluster.holder(item.lease_owner))
    item = await row(cluster, InboxItem, InboxItem.delivery_id == "kill-1")  # as it was left
    assert item.status == "pending" and deployments(cluster, "stage", 1) == []
    taken = await until(lambda: len(github.calls_to(permission)) >= calls + 2, "a takeover")
    assert utcnow() >= item.lease_until, "taken over before the lease ran out"
    await story.settle()
    finished = time.monotonic()
    assert (await row(cluster, InboxItem, InboxItem.delivery_id == "kill-1")).status == "done"
    timings = {"ingest": (taken - killed, finished - killed)}

    (stage,) = deployments(cluster, "stage", 1)
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))

    # Mid-dispatch: GitHub holds the deployment's creation, and makes it after the kill.
    github.delay("repos/create-deployment", 1.0)
    calls = len(github.calls_to("repos/create-deployment"))
    qa_comment = deploy_comment("qa", number=1, comment_id=12)
    await cluster.send(cluster.running[0], "issue_comment", qa_comment, "kill-2")
    await until(lambda: held(github, "repos/create-deployment", calls + 1), "the deployment call")
    pending = OutboxEffect.kind == "CreateDeployment", OutboxEffect.status == "pending"
    effect = await row(cluster, OutboxEffect, *pending)
    killed = await cluster.kill(cluster.holder(effect.lease_owner))
    effect = await row(cluster, OutboxEffect, OutboxEffect.id == effect.id)
    taken = await until_async(
        lambda: effect_claimed_again(cluster, effect.id, effect.lease_owner), "a takeover"
    )
    assert utcnow() >= effect.lease_until, "taken over before the lease ran out"
    await story.settle()
    finished = time.monotonic()
    timings["dispatch"] = (taken - killed, finished - killed)
    (qa,) = deployments(cluster, "qa", 1)
    # The survivor recorded GitHub's deployment as the rollout's: its status lands.
    await story.deliver("deployment_status", deployment_status(qa["id"], "success"))
    assert "`qa` is running 1111111" in story.thread()

    # The lease ran out at most a lease after the kill (it was renewed every third of one);
    # an idle survivor looks again every poll; what is left is the work itself.
    for taken_after, finished_after in timings.values():
        assert taken_after <= LEASE + POLL + 0.5, timings
        assert finished_after <= LEASE + POLL + 1.5, timings
    assert len(deployments(cluster, "stage", 1)) == 1
    assert len(deployments(cluster, "qa", 1)) == 1
    assert len(github.calls_to("reactions/create-for-issue-comment")) == 2
    assert len(threads(cluster.slack)) == 1
    assert_each_reply_once(cluster.slack)


async def effect_claimed_again(cluster: Cluster, effect_id: int, owner: str | None) -> bool:
    """The outbox row is in other hands than `owner`'s, or done."""
    effect = await row(cluster, OutboxEffect, OutboxEffect.id == effect_id)
    return effect.status != "pending" or effect.lease_owner not in (None, owner)


async def handled(cluster: Cluster, delivery: str) -> bool:
    item = await row(cluster, InboxItem, InboxItem.delivery_id == delivery)
    return item.status != "pending"


async def test_the_replies_of_a_thread_stay_in_order_across_replicas(cluster: Cluster) -> None:
    """Commands on one pull request come to both replicas in turn, each handled before the
    next comes, while Slack takes its time over every post: the thread's replies queue up
    and both replicas' dispatchers are woken for them. The replica sending the third reply
    stops dead (SIGSTOP) while Slack has the message, holding the line's lease; the other
    sends nothing of the line until the lease runs out, then finds that reply already in
    the thread and sends the rest. When the stopped one comes back, its late answer
    changes nothing. The thread reads in the order of the commands, each reply once."""
    await cluster.start(2)
    story, wire = cluster.story, cluster.wire
    cluster.github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline())
    await story.deliver("installation", installation_created())
    await story.deliver("pull_request", open_pr(cluster, 1))
    reasons = ("one", "two", "three", "four")
    commands = [text for reason in reasons for text in (f"/lock qa {reason}", "/unlock qa")]

    async def command(number: int) -> None:
        running = cluster.running
        said = comment(commands[number], number=1, login="alice", comment_id=100 + number)
        await cluster.send(running[number % len(running)], "issue_comment", said, f"c-{number}")
        await until_async(lambda: handled(cluster, f"c-{number}"), "the command")

    async def stop_the_holder() -> tuple[Replica, OutboxEffect]:
        held = wire.replies()[2]
        holder = cluster.named(held.replica)
        await cluster.pause(holder)
        effect = await row(cluster, OutboxEffect, OutboxEffect.idempotency_key == held.key)
        assert effect.status == "pending" and cluster.holder(effect.lease_owner) is holder
        return holder, effect

    wire.post_delay = 0.2
    wire.hold_reply(2, seconds=2.0)
    for number in range(6):
        await command(number)
        if wire.holding.is_set() and all(r.running for r in cluster.replicas):
            stopped, effect = await stop_the_holder()
    if all(r.running for r in cluster.replicas):
        await until(wire.holding.is_set, "the third reply")
        stopped, effect = await stop_the_holder()
    await story.settle()  # the survivor sends the rest once the lease runs out
    cluster.resume(stopped)
    await until(lambda: "lease lost" in stopped.server.output(), "the late answer refused")
    for number in range(6, 8):
        await command(number)
    await story.settle()

    # Posted in the order they were written (outbox ids), each once, reading as commanded.
    posts = wire.replies()
    async with cluster.sessions() as session:
        ids = dict(
            (await session.execute(sa.select(OutboxEffect.idempotency_key, OutboxEffect.id))).all()
        )
    written = [ids[post.key] for post in posts]
    assert len(written) == len(commands) and written == sorted(set(written)), written
    said = [html.unescape(m.get("text", "")) for m in replies(cluster.slack)]
    assert len(said) == len(commands)
    for text, reply in zip(commands, said, strict=True):
        if text.startswith("/lock"):
            assert "alice locked `qa`" in reply and text.split()[-1] in reply, (text, reply)
        else:
            assert "alice unlocked `qa`" in reply, (text, reply)
    # The stopped replica posted the third reply; the other sent none of the line until the
    # lease on it had run out, looked the third up in the thread rather than post it again,
    # and sent the next within a poll of the lease's end (and the time to look that one up).
    assert posts[2].replica == stopped.name
    assert posts[3].replica != stopped.name
    expired = effect.lease_until.timestamp()
    assert expired <= posts[3].at <= expired + POLL + 1.0, (expired, posts[3].at)
    assert cluster.slack.calls_to("conversations.replies")
