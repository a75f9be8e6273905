"""Slack ack latency (issue #7 item 2): signed `block_actions` clicks at a paced 500/s, the
time to the ack, and the work after the ack going on meanwhile.

In one run, with the same clicks (bodies and signatures) and the same signing secret:
- the baseline, a minimal slack-bolt `AsyncApp` that only acks (`bench/bolt_app.py`: Bolt's
  Starlette adapter; its token is checked by an `authorize` function that answers at once,
  so there is no `auth.test` and no network), served by the same uvicorn;
- `deploybot serve`, with real state: the GitHub and Slack emulators, eight installed
  repositories each with a release waiting for a production approval, built from real
  deliveries (pull request opened, `/deploy stage`, the deploy system's `success`,
  `/deploy production`). The clicks are Approve, Reject and Roll back on the messages
  deploybot itself posted, from several people: the requester, a read-only user and a
  stranger are refused with an ephemeral answer, the approvers approve or reject each
  request once and are told it is already decided after that, a writer opens the rollback
  modal (after asking GitHub for the pipeline file and their permission).

The server under test runs alone on core 0 (deploybot is stopped while the baseline runs).
`wrk`, this script and the emulators share core 1: the emulators serve from threads of this
process, which is pinned there, because the GitHub emulator's state (pipeline files,
permissions, the pull request it answers) is set through its Python interface only.

Clicks are form-encoded `payload=` bodies built from the corpus's `BlockActionPayload.json`
shape around the clicked message, each with its own `action_ts` and `trigger_id`, signed
(`X-Slack-Signature`, v0 HMAC over `v0:ts:body`) just before each run and read by wrk's Lua
from a file. wrk waits `delay()` after each answer, so its rate is connections / (delay +
latency): two warm-up runs of clicks that change nothing measure the latency and set the
delay, so that the measured run arrives at `--rate`; each wait is drawn at random around
that delay (see `common.Pacing`). The warm-up's clicks are all worked off before the next run.

Printed: achieved rate, p50/p99 of the ack and answers by status, for both servers, and the
ratios; the CPU each side used; for deploybot, what the clicks did (ephemeral answers,
modals, decisions; Slack and GitHub calls), how many were worked off in each second of the
run, when the last was, and how quickly `GET /healthz` answered meanwhile. Exit status 1
when a rate was more than 5 % off, an answer was not 200, an acked click was never handled,
the work after the ack stood still for a second, or deploybot's p99 missed 100 ms.

    .venv/bin/python bench/slack_ack.py [--seconds 20] [--rate 500]
        [--database-url postgresql://...] [--profile FILE]

`--profile FILE` samples deploybot with py-spy (on core 1) during the measured run, writes
the collapsed stacks to FILE and prints the functions most often on CPU.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import hmac
import itertools
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (
    LOAD_CPU,
    ROOT,
    SERVER_CPU,
    Pacing,
    WrkResult,
    deploybot_env,
    deploybot_serve,
    free_port,
    machine,
    ratio,
    require_wrk,
    run_wrk,
    serving,
    uvicorn_app,
)

CONNECTIONS = 200  # a long delay each: the latency moves the rate little
WARM_UP_SECONDS = 4
CALIBRATIONS = 2  # warm-up runs, each correcting the delay
RATE_TOLERANCE = 0.05
TARGET_P99_MS = 100.0
GUESSED_LATENCY_MS = 12.0  # Bolt answers once its 10 ms poll sees the ack
STALL_SECONDS = 60  # no click handled for this long after a run: deploybot is stuck
PATH = "/slack/events"

OWNER = "acme"
REPOSITORIES = 8
INSTALLATION_ID = 4242
CHANNEL = "C0DEPLOYS"
TEAM_ID = "T0BENCH"
SLACK_APP_ID = "A0DEPLOYBOT"
BOT_TOKEN = "xoxb-bench"
PEOPLE = {"alice": "U0ALICE", "bob": "U0BOB", "carol": "U0CAROL", "mallory": "U0MALLORY"}
PERMISSIONS = {"alice": "write", "bob": "write", "carol": "write", "mallory": "read"}
STRANGER = "U0STRANGER"  # a Slack user deploybot knows no GitHub login for
_USERS = "\n".join(f"  {login}: {user}" for login, user in PEOPLE.items())
PIPELINE = f"""\
slack:
  channel: {CHANNEL}
users:
{_USERS}
environments:
  - name: stage
  - name: production
    approvals: 1
    approvers: [bob, carol]
"""


@dataclass(frozen=True)
class Click:
    """Who clicks which button, and how often (a weight)."""

    action: str
    user: str
    weight: int
    decides: bool = False  # may change the request's state (only the first such click does)


# The measured mix: most clicks are refused with an ephemeral answer, the approvers decide
# each request once (and are told it is decided after that), a writer opens rollback modals.
CLICKS = (
    Click("approve", "alice", 4),  # asked for the deploy: may not approve it
    Click("approve", "mallory", 3),  # not an approver
    Click("reject", "mallory", 1),
    Click("approve", STRANGER, 1),  # no GitHub login known
    Click("approve", "bob", 2, decides=True),
    Click("reject", "carol", 1, decides=True),
    Click("rollback", "alice", 1),  # may write: the rollback modal opens
    Click("rollback", "mallory", 2),  # may only read: refused
    Click("rollback", STRANGER, 1),
)
# The warm-up mix changes nothing, so every request still waits for its decision after it.
WARM_UP_CLICKS = tuple(click for click in CLICKS if not click.decides)


# --- GitHub's deliveries and Slack's clicks ---------------------------------------------


def corpora() -> Path:
    from integrations.emulators.loopback import corpora_dir

    root = corpora_dir()
    needed = ("github-webhooks", "github-rest", "slack-payload-shapes", "slack-web-api")
    if root is None or not all((root / part).is_dir() for part in needed):
        sys.exit("the corpora are not found: run from the checkout beside ../shared")
    return root


def sha_of(seed: str) -> str:
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Change:
    """A pull request in one of the benchmark's repositories."""

    repository: int
    number: int

    @property
    def full_name(self) -> str:
        return f"{OWNER}/svc-{self.repository}"

    @property
    def sha(self) -> str:
        return sha_of(f"{self.full_name}#{self.number}")


class Deliveries:
    """GitHub's example deliveries (octokit's, in the corpora) retargeted at our repositories."""

    def __init__(self, root: Path) -> None:
        self.root = root / "github-webhooks" / "payload-examples" / "api.github.com"

    def _example(self, path: str) -> dict[str, Any]:
        return json.loads((self.root / path).read_text(encoding="utf-8"))

    def _ours(self, payload: dict[str, Any], change: Change) -> dict[str, Any]:
        repository = payload["repository"]
        repository.update(
            id=4_200_000_000 + change.repository,
            name=change.full_name.split("/")[1],
            full_name=change.full_name,
            default_branch="main",
        )
        repository["owner"]["login"] = OWNER
        payload["installation"] = {"id": INSTALLATION_ID, "node_id": "MDIzOkluc3RhbGxhdGlvbg=="}
        return payload

    def installation_created(self, repositories: Sequence[Change]) -> dict[str, Any]:
        payload = self._example("installation/created.payload.json")
        payload["installation"].update(id=INSTALLATION_ID, app_id=4242)
        payload["installation"]["account"].update(login=OWNER, type="Organization")
        payload["repositories"] = [
            {
                "id": 4_200_000_000 + c.repository,
                "name": c.full_name.split("/")[1],
                "full_name": c.full_name,
                "private": True,
            }
            for c in repositories
        ]
        return payload

    def pull_request_opened(self, change: Change, author: str) -> dict[str, Any]:
        payload = self._ours(self._example("pull_request/opened.payload.json"), change)
        payload["number"] = change.number
        pr = payload["pull_request"]
        pr.update(number=change.number, title=f"Change {change.number}", state="open")
        pr["html_url"] = f"https://github.com/{change.full_name}/pull/{change.number}"
        pr["head"].update(sha=change.sha, ref=f"change-{change.number}")
        pr["base"].update(ref="main")
        pr["user"]["login"] = author
        payload["sender"]["login"] = author
        return payload

    def comment(self, change: Change, body: str, login: str, comment_id: int) -> dict[str, Any]:
        path = "issue_comment/created.with-installation.payload.json"
        payload = self._ours(self._example(path), change)
        payload["issue"]["number"] = change.number
        payload["issue"]["pull_request"] = {
            "url": f"https://api.github.com/repos/{change.full_name}/pulls/{change.number}"
        }
        payload["comment"].update(id=comment_id, body=body)
        payload["comment"]["user"].update(login=login, type="User")
        payload["sender"]["login"] = login
        return payload

    def deployment_status(self, change: Change, deployment: dict[str, Any]) -> dict[str, Any]:
        path = "deployment_status/with-installation.payload.json"
        payload = self._ours(self._example(path), change)
        payload["deployment"].update(
            id=deployment["id"],
            sha=deployment["sha"],
            ref=deployment["ref"],
            environment=deployment["environment"],
            payload=deployment.get("payload") or {},
        )
        payload["deployment_status"].update(
            id=deployment["id"] * 10, state="success", environment=deployment["environment"]
        )
        return payload


@dataclass(frozen=True)
class Button:
    """A button deploybot rendered, in the message Slack shows it in."""

    message: dict[str, Any]
    block_id: str
    element: dict[str, Any]


# The keys of the corpus shape a click on a button in a channel message carries (a view,
# an unfurl, a workflow function, an Enterprise Grid install are other clicks' fields).
_MESSAGE_CLICK_KEYS = (
    "type",
    "team",
    "user",
    "api_app_id",
    "token",
    "container",
    "trigger_id",
    "channel",
    "message",
    "state",
    "response_url",
    "actions",
)
_BUTTON_ACTION_KEYS = ("action_id", "block_id", "text", "value", "type", "style", "action_ts")


class ClickBuilder:
    """block_actions payloads from the corpus's `BlockActionPayload.json` shape, filled in
    for a click on one of deploybot's buttons."""

    def __init__(self, root: Path, slack: Any) -> None:
        path = root / "slack-payload-shapes" / "interactive-components" / "BlockActionPayload.json"
        shape = json.loads(path.read_text(encoding="utf-8"))
        self.shape = {key: shape[key] for key in _MESSAGE_CLICK_KEYS}
        self.action_shape = {key: shape["actions"][0][key] for key in _BUTTON_ACTION_KEYS}
        self.slack = slack
        self.serial = itertools.count(1)

    def payload(self, button: Button, user: str) -> dict[str, Any]:
        n = next(self.serial)
        now = time.time()
        login = next((name for name, id_ in PEOPLE.items() if id_ == user), user.lower())
        message = button.message
        payload = copy.deepcopy(self.shape)
        payload["type"] = "block_actions"
        payload["team"] = {"id": TEAM_ID, "domain": "acme"}
        payload["user"] = {"id": user, "username": login, "name": login, "team_id": TEAM_ID}
        payload.update(
            api_app_id=SLACK_APP_ID,
            token="unused-verification-token",
            trigger_id=f"{int(now)}.{n}.{uuid.uuid4().hex[:16]}",
            enterprise=None,
            is_enterprise_install=False,
        )
        payload["container"] = {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": CHANNEL,
            "is_ephemeral": False,
            "thread_ts": message.get("thread_ts") or message["ts"],
        }
        payload["channel"] = {"id": CHANNEL, "name": "deploys"}
        payload["message"] = {k: v for k, v in message.items() if k != "channel"}
        payload["state"] = {"values": {}}
        payload["response_url"] = self.slack.response_url(
            channel=CHANNEL, user=user, message_ts=message["ts"]
        )
        action = copy.deepcopy(self.action_shape)
        element = button.element
        action.update(
            action_id=element["action_id"],
            block_id=button.block_id,
            text=element["text"],
            value=element["value"],
            type="button",
            action_ts=f"{now:.6f}",
        )
        if element.get("style"):
            action["style"] = element["style"]
        else:
            del action["style"]
        payload["actions"] = [action]
        return payload


def sign(body: bytes, secret: str, timestamp: int) -> str:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def write_clicks(
    path: Path,
    builder: ClickBuilder,
    buttons: dict[str, list[Button]],
    mix: Sequence[Click],
    count: int,
    secret: str,
) -> tuple[Counter[str], int]:
    """`count` signed clicks drawn from `mix` (each on a random button of its kind), signed
    now, as wrk's Lua reads them: `<timestamp> <signature> <length>\\n<body>` each. Returns
    how many of each kind were drawn, and their mean size in bytes."""
    chooser = random.Random(count)  # noqa: S311 (a benchmark's mix, not a secret)
    weights = [click.weight for click in mix]
    timestamp = int(time.time())
    drawn: Counter[str] = Counter()
    size = 0
    with path.open("wb") as out:
        for click in chooser.choices(mix, weights, k=count):
            button = chooser.choice(buttons[click.action])
            body = urlencode(
                {"payload": json.dumps(builder.payload(button, PEOPLE.get(click.user, click.user)))}
            ).encode()
            out.write(f"{timestamp} {sign(body, secret, timestamp)} {len(body)}\n".encode())
            out.write(body)
            drawn[f"{click.action} by {click.user}"] += 1
            size += len(body)
    return drawn, size // count


def clicks_lua(path: Path) -> str:
    """wrk's requests: the clicks in the file, each once, in order (around again if the run
    outlasts them)."""
    return f"""
local file = assert(io.open("{path}", "rb"))
local data = file:read("*a")
file:close()
local clicks = {{}}
local at = 1
while at <= #data do
  local eol = data:find("\\n", at, true)
  local ts, sig, len = data:sub(at, eol - 1):match("^(%d+) (%S+) (%d+)$")
  len = tonumber(len)
  clicks[#clicks + 1] = {{ts, sig, data:sub(eol + 1, eol + len)}}
  at = eol + len + 1
end
data = nil
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local sent = 0
function request()
  sent = sent % #clicks + 1
  local click = clicks[sent]
  wrk.headers["X-Slack-Request-Timestamp"] = click[1]
  wrk.headers["X-Slack-Signature"] = click[2]
  return wrk.format(nil, "{PATH}", nil, click[3])
end
"""


# --- pacing -------------------------------------------------------------------------------


def on_rate(result: WrkResult, rate: float) -> bool:
    return abs(result.requests_per_second - rate) <= RATE_TOLERANCE * rate


# --- the servers ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cpu:
    """CPU seconds used until a moment: by the server (core 0), by this process (the
    emulators' threads, core 1) and by its finished children (wrk, core 1)."""

    at: float
    server: float
    emulators: float
    wrk: float

    @classmethod
    def now(cls, server_pid: int) -> Cpu:
        fields = Path(f"/proc/{server_pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        mine = os.times()
        return cls(
            at=time.monotonic(),
            server=(int(fields[11]) + int(fields[12])) / ticks,  # utime, stime
            emulators=mine.user + mine.system,
            wrk=mine.children_user + mine.children_system,
        )

    def since(self, before: Cpu) -> str:
        wall = self.at - before.at

        def share(seconds: float) -> str:
            return f"{100 * seconds / wall:.0f}%"

        return (
            f"server {share(self.server - before.server)} of core {SERVER_CPU}; "
            f"emulators {share(self.emulators - before.emulators)}, "
            f"wrk {share(self.wrk - before.wrk)} of core {LOAD_CPU}"
        )


@dataclass
class Run:
    """One server's measured run, and (deploybot) what its clicks did around it."""

    name: str
    result: WrkResult
    drawn: Counter[str]
    body_bytes: int
    pool: int
    cpu: str
    start: Observed | None = None
    end: Observed | None = None
    after: Observed | None = None


def measure(
    name: str,
    url: str,
    *,
    builder: ClickBuilder,
    buttons: dict[str, list[Button]],
    secret: str,
    rate: float,
    seconds: float,
    workdir: Path,
    server_pid: int,
    outcomes: Outcomes | None = None,
    profile: Callable[[], Callable[[], None]] | None = None,
) -> Run:
    """Warm-up runs at `rate` of clicks that change nothing, each setting the delay from the
    latency it saw, then the measured run of the full mix. With `outcomes`, each run's clicks
    are waited for until all are handled, so no run's work spills into the next; `profile`
    starts beside the measured run, and what it returns is called when the run is over."""
    pacing = Pacing(rate, CONNECTIONS, GUESSED_LATENCY_MS)
    clicks = workdir / f"{name}.clicks"
    for _ in range(CALIBRATIONS):
        count = math.ceil(rate * WARM_UP_SECONDS * 1.25) + 4 * CONNECTIONS
        write_clicks(clicks, builder, buttons, WARM_UP_CLICKS, count, secret)
        before = outcomes.now() if outcomes else None
        lua = clicks_lua(clicks) + pacing.lua()
        warm_up = run_wrk(url, lua, connections=CONNECTIONS, seconds=WARM_UP_SECONDS)
        pacing.learn(warm_up)
        done = ""
        if outcomes is not None and before is not None:
            seen = outcomes.wait(before, warm_up.answered)
            handled = seen.handled_since(before)
            done = f"; its clicks handled {seen.at - before.at - WARM_UP_SECONDS:.1f} s after"
            if handled < warm_up.answered:
                done = f"; only {handled:,} of its {warm_up.answered:,} clicks were ever handled"
        print(
            f"  {name}: warm-up {warm_up.requests_per_second:,.0f}/s, "
            f"p99 {warm_up.p99:.1f} ms{done}; delay now {pacing.delay_ms:.1f} ms",
            flush=True,
        )
    pool = math.ceil(rate * seconds * 1.25) + 4 * CONNECTIONS
    drawn, body_bytes = write_clicks(clicks, builder, buttons, CLICKS, pool, secret)
    lua = clicks_lua(clicks) + pacing.lua()
    start = outcomes.now() if outcomes else None
    finish = profile() if profile is not None else None
    cpu = Cpu.now(server_pid)
    try:
        with outcomes.sampled() if outcomes else nullcontext():
            result = run_wrk(url, lua, connections=CONNECTIONS, seconds=seconds)
    finally:
        used = Cpu.now(server_pid).since(cpu)
        end = outcomes.now() if outcomes else None
        if finish is not None:
            finish()
    clicks.unlink()
    run = Run(name, result, drawn, body_bytes, pool, used, start, end)
    if outcomes is not None and start is not None:
        run.after = outcomes.wait(start, result.answered)
    return run


def show(run: Run) -> None:
    result = run.result
    statuses = ", ".join(f"{code}: {n:,}" for code, n in sorted(result.statuses.items()))
    print(
        f"  {run.name:<10} {result.requests_per_second:>7,.1f}/s   p50 {result.p50:7.2f} ms"
        f"   p99 {result.p99:7.2f} ms   [{statuses}] {result.errors}",
        flush=True,
    )
    print(f"  {'':<10} CPU during the run: {run.cpu}", flush=True)


def public_key_of(private_pem: str) -> bytes:
    from cryptography.hazmat.primitives import serialization

    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@contextmanager
def emulators(root: Path, private_pem: str) -> Iterator[tuple[Any, Any]]:
    """The GitHub and Slack emulators, serving from threads of this process (pinned to the
    load core): the GitHub emulator is set up (pipeline files, permissions, the pull request
    the bot reads) through its Python interface, which it has no HTTP for."""
    from integrations.emulators.github import GitHubEmulator
    from integrations.emulators.slack import SlackEmulator

    with (
        GitHubEmulator(app_id=4242, app_public_key=public_key_of(private_pem), spec=root) as gh,
        SlackEmulator(bot_token=BOT_TOKEN, corpora=root) as slack,
    ):
        for n in range(1, REPOSITORIES + 1):
            name = f"svc-{n}"
            gh.set_file(OWNER, name, ".github/deploybot.yml", PIPELINE)
            for login, permission in PERMISSIONS.items():
                gh.set_permission(OWNER, name, login, permission)
        yield gh, slack


# --- real state: releases waiting for approval -----------------------------------------------


class Seeder:
    """Drives a running deploybot as GitHub would, until each repository has a release in
    stage and a second one waiting for its production approval."""

    def __init__(self, url: str, database_url: str, secret: str, gh: Any, root: Path) -> None:
        self.url, self.database_url, self.secret, self.gh = url, database_url, secret, gh
        self.deliveries = Deliveries(root)
        self.comment_ids = itertools.count(9_001)

    async def run(self) -> None:
        import httpx

        from storage import db

        self.engine = db.create_engine(self.database_url)
        try:
            async with httpx.AsyncClient(base_url=self.url, timeout=30) as self.client:
                firsts = [Change(n, 1) for n in range(1, REPOSITORIES + 1)]
                await self.deliver("installation", self.deliveries.installation_created(firsts))
                for n in range(1, REPOSITORIES + 1):
                    await self.to_stage(Change(n, 1))
                    second = Change(n, 2)
                    await self.to_stage(second)
                    await self.comment(second, "/deploy production")
        finally:
            await self.engine.dispose()

    async def to_stage(self, change: Change) -> None:
        self.gh.respond("pulls/get", body=self.pull(change))
        await self.deliver("pull_request", self.deliveries.pull_request_opened(change, "alice"))
        await self.comment(change, "/deploy stage")
        owner, name = change.full_name.split("/")
        (deployment,) = [
            d
            for d in self.gh.deployments(owner, name)
            if d["sha"] == change.sha and d["environment"] == "stage"
        ]
        await self.deliver(
            "deployment_status", self.deliveries.deployment_status(change, deployment)
        )

    def pull(self, change: Change) -> dict[str, Any]:
        return self.deliveries.pull_request_opened(change, "alice")["pull_request"]

    async def comment(self, change: Change, body: str) -> None:
        # The bot reads the pull request for each command: the emulator answers with this one.
        self.gh.respond("pulls/get", body=self.pull(change))
        payload = self.deliveries.comment(change, body, "alice", next(self.comment_ids))
        await self.deliver("issue_comment", payload)

    async def deliver(self, event: str, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        digest = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "Content-Type": "application/json",
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": str(uuid.uuid4()),
            "X-Hub-Signature-256": f"sha256={digest}",
        }
        response = await self.client.post("/github/webhook", content=body, headers=headers)
        if response.status_code != 202:
            raise RuntimeError(f"{event} delivery answered {response.status_code}")
        await settle(self.engine)


async def settle(engine: Any, seconds: float = 30) -> float:
    """Wait until deploybot's inbox and outbox are empty; how long it took."""
    from storage import db, inbox, outbox

    sessions = db.session_factory(engine)
    started = time.monotonic()
    while True:
        async with sessions() as session:
            waiting = await inbox.depth(session) + await outbox.depth(session)
            dead = await inbox.QUEUE.dead_count(session) + await outbox.QUEUE.dead_count(session)
        if dead:
            raise RuntimeError(f"deploybot gave up on {dead} piece(s) of work")
        if waiting == 0:
            return time.monotonic() - started
        if time.monotonic() - started > seconds:
            raise RuntimeError(f"deploybot still has {waiting} piece(s) of work after {seconds}s")
        await asyncio.sleep(0.05)


def find_buttons(slack: Any) -> dict[str, list[Button]]:
    """Every button deploybot shows now, by action_id."""
    found: dict[str, list[Button]] = {}
    for message in slack.messages:
        for block in message.get("blocks") or ():
            for element in block.get("elements") or ():
                if element.get("type") == "button" and "action_id" in element:
                    button = Button(message, block.get("block_id") or "b", element)
                    found.setdefault(element["action_id"], []).append(button)
    return found


def decided(database_url: str) -> int:
    """Production requests no longer waiting for approval."""
    import sqlalchemy as sa

    from storage import db

    async def count() -> int:
        engine = db.create_engine(database_url)
        try:
            async with engine.connect() as connection:
                result = await connection.execute(
                    sa.text(
                        "SELECT count(*) FROM rollout WHERE environment = 'production' "
                        "AND status != 'awaiting_approval'"
                    )
                )
                return int(result.scalar_one())
        finally:
            await engine.dispose()

    return asyncio.run(count())


def drain(database_url: str) -> float:
    """Wait until deploybot's outbox (and inbox) is empty again; how long it took."""
    from storage import db

    async def wait() -> float:
        engine = db.create_engine(database_url)
        try:
            return await settle(engine, seconds=STALL_SECONDS)
        finally:
            await engine.dispose()

    return asyncio.run(wait())


# --- what the clicks did ---------------------------------------------------------------------


@dataclass
class Observed:
    """What deploybot had done in Slack and GitHub at one moment."""

    at: float
    decisions: int
    slack_calls: Counter[str]
    github_calls: Counter[str]

    @property
    def ephemerals(self) -> int:
        return self.slack_calls["chat.postEphemeral"]

    @property
    def modals(self) -> int:
        return self.slack_calls["views.open"]

    def handled_since(self, before: Observed) -> int:
        """Clicks that had their outcome: an ephemeral answer, a modal, or a decision."""
        return (
            self.ephemerals
            - before.ephemerals
            + self.modals
            - before.modals
            + self.decisions
            - before.decisions
        )


class Outcomes:
    """What deploybot's clicks did, read from the emulators and its database; and how
    quickly deploybot answers `GET /healthz` while it works them off."""

    def __init__(self, slack: Any, gh: Any, database_url: str, url: str) -> None:
        self.slack, self.gh, self.database_url, self.url = slack, gh, database_url, url
        self.per_second: list[int] = []  # clicks handled in each second of the measured run
        self.healthz_ms: list[float] = []  # while the backlog was worked off

    def handled(self) -> int:
        """Clicks answered so far with an ephemeral message or a modal (cheap to count)."""
        methods = Counter(call.method for call in self.slack.calls)
        return methods["chat.postEphemeral"] + methods["views.open"]

    @contextmanager
    def sampled(self) -> Iterator[None]:
        """Count the clicks handled in each second while the block runs."""
        stop = threading.Event()

        def sample() -> None:
            last = self.handled()
            while not stop.wait(1.0):
                now = self.handled()
                self.per_second.append(now - last)
                last = now

        sampler = threading.Thread(target=sample, name="bench-sampler", daemon=True)
        sampler.start()
        try:
            yield
        finally:
            stop.set()
            sampler.join()

    def healthz(self) -> None:
        started = time.monotonic()
        with urllib.request.urlopen(f"{self.url}/healthz", timeout=10) as answer:  # noqa: S310
            answer.read()
        self.healthz_ms.append(1000 * (time.monotonic() - started))

    def now(self) -> Observed:
        return Observed(
            at=time.monotonic(),
            decisions=decided(self.database_url),
            slack_calls=Counter(call.method for call in self.slack.calls),
            github_calls=Counter(call.operation_id for call in list(self.gh.calls)),
        )

    def wait(self, since: Observed, clicks: int) -> Observed:
        """What was done once `clicks` clicks after `since` were all handled, the outbox was
        empty and nothing more happened for a moment (clicks still in flight when wrk
        stopped are handled too); or, if some never are, once none was for a long while."""
        deadline = time.monotonic() + STALL_SECONDS
        last: Observed | None = None
        while True:
            self.healthz()
            seen = self.now()
            handled = seen.handled_since(since)
            if last is not None and handled == last.handled_since(since):
                if handled >= clicks:
                    drain(self.database_url)
                    return self.now()
                if time.monotonic() > deadline:
                    print(f"  (no click handled for {STALL_SECONDS} s: the rest never will be)")
                    return seen
            else:
                deadline = time.monotonic() + STALL_SECONDS
            last = seen
            time.sleep(0.5)


def calls_between(before: Counter[str], after: Counter[str]) -> str:
    delta = after - before
    return ", ".join(f"{name} {n:,}" for name, n in delta.most_common()) or "none"


# --- profiling -------------------------------------------------------------------------------


def py_spy(pid: int, out: Path, seconds: float) -> Callable[[], Callable[[], None]]:
    """py-spy sampling `pid` (on the load core) for the measured run."""

    def start() -> Callable[[], None]:
        command = [
            "taskset",
            "-c",
            str(LOAD_CPU),
            str(Path(sys.executable).parent / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(round(seconds)),
            "--rate",
            "200",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        def finish() -> None:
            _, errors = process.communicate(timeout=seconds + 30)
            if process.returncode != 0:
                print(f"py-spy failed: {errors.decode(errors='replace')[-500:]}")

        return finish

    return start


def show_profile(path: Path, top: int = 15) -> None:
    """What py-spy's collapsed stacks show: the functions most often on CPU themselves, the
    same by package, and deploybot's own functions with what they called."""
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_frame(f) for f in stack.split(";")]
        own[frames[-1][0]] += n
        packages[frames[-1][1]] += n
        for name in {name for name, package in frames if package in _OURS}:
            ours[name] += n
    if not total:
        print("  (no samples)")
        return
    print(f"\nprofile of deploybot during the measured run ({total:,} samples on CPU)")
    for title, counts, shown in (
        ("on CPU themselves", own, top),
        ("by package", packages, 10),
        ("deploybot's functions, with what they called", ours, top),
    ):
        print(f"{title}:")
        for name, n in counts.most_common(shown):
            print(f"  {100 * n / total:5.1f}%  {name}")


_OURS = frozenset({"bot", "storage", "integrations"})
_WRAPPERS = frozenset({"main (bot/cli.py)", "serve (bot/cli.py)"})


def _frame(frame: str) -> tuple[str, str]:
    """py-spy's `function (path/to/module.py:line)` as `function (module path)` and the
    package it is in (deploybot's own, a library, or the standard library's module)."""
    name, _, where = frame.partition(" (")
    file = where.rsplit(":", 1)[0]  # py-spy shortens it to the importable path
    for marker in ("site-packages/", f"{ROOT}/"):
        file = file.split(marker, 1)[-1]
    shown = f"{name} ({file})"
    package = file.split("/", 1)[0] if "/" in file else file.removesuffix(".py")
    if shown in _WRAPPERS:
        package = "uvicorn"  # deploybot's entry point: all of it is below
    return shown, package


# --- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=20, help="length of each measured run")
    parser.add_argument("--rate", type=float, default=500, help="clicks a second")
    parser.add_argument(
        "--database-url", default=None, help="an empty database (default: a fresh SQLite file)"
    )
    parser.add_argument("--profile", type=Path, default=None, help="py-spy deploybot into FILE")
    options = parser.parse_args()
    require_wrk()
    root = corpora()
    if hasattr(os, "sched_setaffinity") and shutil.which("taskset"):
        os.sched_setaffinity(0, {LOAD_CPU})  # this script and the emulators' threads
    workdir = Path(tempfile.mkdtemp(prefix="bench-slack-ack-"))
    database_url = options.database_url or f"sqlite:///{workdir / 'deploybot.db'}"
    signing_secret = uuid.uuid4().hex
    webhook_secret = uuid.uuid4().hex
    env = deploybot_env(
        database_url=database_url, webhook_secret=webhook_secret, signing_secret=signing_secret
    )
    print(f"machine: {machine()}")
    print(
        f"signed block_actions clicks at {options.rate:,.0f}/s for {options.seconds:.0f} s "
        f"({WARM_UP_SECONDS} s warm-up first), {CONNECTIONS} connections; "
        f"deploybot on {database_url.split(':', 1)[0]}",
        flush=True,
    )
    try:
        return bench(options, root, workdir, database_url, signing_secret, webhook_secret, env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def bench(
    options: argparse.Namespace,
    root: Path,
    workdir: Path,
    database_url: str,
    signing_secret: str,
    webhook_secret: str,
    env: dict[str, str],
) -> int:
    with emulators(root, env["GITHUB_APP_PRIVATE_KEY"]) as (gh, slack):
        env = {**env, "SLACK_API_URL": slack.url, "GITHUB_API_URL": gh.url}
        env["SLACK_BOT_TOKEN"] = BOT_TOKEN
        port = free_port()
        command = deploybot_serve(port)
        url = f"http://127.0.0.1:{port}"

        print(f"seeding {REPOSITORIES} repositories through real deliveries ...", flush=True)
        started = time.monotonic()
        with serving("deploybot", command, port=port, env=env, cwd=workdir, ready_path="/readyz"):
            asyncio.run(Seeder(url, database_url, webhook_secret, gh, root).run())
        buttons = find_buttons(slack)
        for action in {click.action for click in CLICKS}:
            if not buttons.get(action):
                raise RuntimeError(f"deploybot shows no {action} button after seeding")
        waiting = len(buttons["approve"])
        print(
            f"  {waiting} production requests waiting for approval, "
            f"{len(buttons['rollback'])} rollback buttons, in {time.monotonic() - started:.1f} s",
            flush=True,
        )
        common = {
            "builder": ClickBuilder(root, slack),
            "buttons": buttons,
            "secret": signing_secret,
            "rate": options.rate,
            "seconds": options.seconds,
            "workdir": workdir,
        }

        base_port = free_port()
        base_command = uvicorn_app("bench.bolt_app:app", base_port)
        base_env = {"SLACK_SIGNING_SECRET": signing_secret}
        with serving("bolt", base_command, port=base_port, env=base_env, cwd=ROOT) as process:
            base_url = f"http://127.0.0.1:{base_port}"
            baseline = measure("baseline", base_url, server_pid=process.pid, **common)
        show(baseline)

        with serving(
            "deploybot", command, port=port, env=env, cwd=workdir, ready_path="/readyz"
        ) as process:
            profile = None
            if options.profile:
                profile = py_spy(process.pid, options.profile, options.seconds)
            outcomes = Outcomes(slack, gh, database_url, url)
            ours = measure(
                "deploybot",
                url,
                server_pid=process.pid,
                outcomes=outcomes,
                profile=profile,
                **common,
            )
        show(ours)
    return report(options, baseline, ours, outcomes, waiting)


def report(
    options: argparse.Namespace, baseline: Run, ours: Run, outcomes: Outcomes, waiting: int
) -> int:
    base, run = baseline.result, ours.result
    assert ours.start is not None and ours.end is not None and ours.after is not None
    start, end, after = ours.start, ours.end, ours.after
    print()
    print(f"deploybot / baseline: p50 {ratio(run.p50, base.p50)}, p99 {ratio(run.p99, base.p99)}")
    print(
        f"deploybot p99 {run.p99:.2f} ms at {run.requests_per_second:,.1f}/s "
        f"(target: p99 < {TARGET_P99_MS:.0f} ms at {options.rate:,.0f}/s)"
    )
    sent = run.answered
    during = end.handled_since(start)
    total = after.handled_since(start)
    print(
        f"clicks in deploybot's measured run: {sent:,} answered, {ours.body_bytes:,} bytes "
        "each on average; the mix drawn:"
    )
    print("  " + ", ".join(f"{name} {n:,}" for name, n in ours.drawn.most_common()))
    seconds = end.at - start.at
    every = outcomes.per_second[1:]  # the first second is the one the backlog starts in
    print(
        f"work after the ack: {total:,} clicks handled ({after.ephemerals - start.ephemerals:,} "
        f"ephemeral answers, {after.modals - start.modals:,} rollback modals, "
        f"{after.decisions - start.decisions} of {waiting} requests decided):"
    )
    if total >= sent:
        rest = (
            f"the last of them {after.at - end.at:.1f} s after it, the outbox empty again "
            f"({total / (after.at - start.at):,.0f}/s from the first click to the last answer)"
        )
    else:
        rest = f"and {sent - total:,} never: nothing more was handled for {STALL_SECONDS} s"
    print(
        f"  {during:,} while the load ran ({during / seconds:,.0f}/s; in each second "
        f"{min(every, default=0):,} to {max(every, default=0):,}), {rest}"
    )
    healthz = sorted(outcomes.healthz_ms)
    if healthz:
        print(
            f"  meanwhile GET /healthz answered in {healthz[len(healthz) // 2]:.1f} ms "
            f"(median of {len(healthz)}), {healthz[-1]:.1f} ms at most"
        )
    print(f"  Slack calls during the run:  {calls_between(start.slack_calls, end.slack_calls)}")
    print(f"  Slack calls after it:        {calls_between(end.slack_calls, after.slack_calls)}")
    print(f"  GitHub calls during the run: {calls_between(start.github_calls, end.github_calls)}")
    print(f"  GitHub calls after it:       {calls_between(end.github_calls, after.github_calls)}")
    if options.profile:
        show_profile(options.profile)

    failures = []
    for name, result in (("baseline", base), ("deploybot", run)):
        if not on_rate(result, options.rate):
            failures.append(
                f"{name} ran at {result.requests_per_second:,.1f}/s, not {options.rate:,.0f}/s "
                f"(± {RATE_TOLERANCE:.0%})"
            )
        if set(result.statuses) != {200} or result.errors:
            failures.append(f"{name} answered {dict(result.statuses)} {result.errors}".strip())
    for name, measured in (("baseline", baseline), ("deploybot", ours)):
        if measured.result.answered > measured.pool:
            failures.append(f"{name}: clicks were sent twice (the pool of {measured.pool} ran out)")
    if total < sent:
        failures.append(f"only {total:,} of {sent:,} acked clicks were ever handled")
    if not every or min(every) == 0:
        failures.append("the work after the ack stood still for a second while the load ran")
    if run.p99 >= TARGET_P99_MS:
        failures.append(f"deploybot's p99 {run.p99:.1f} ms misses the target")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
