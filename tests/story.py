"""The release story's moving parts for tests: deliveries built from GitHub's own examples,
a health endpoint that can be made to fail, and a way to wait for the app to settle."""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from integrations.emulators.github import GitHubEmulator
from integrations.emulators.loopback import LoopbackServer
from integrations.emulators.slack import SlackEmulator
from storage import inbox, outbox
from tests.conftest import CORPORA, SIGNING_SECRET, WEBHOOK_SECRET
from tests.helpers import compact, github_headers, slack_headers

EXAMPLES = CORPORA / "github-webhooks" / "payload-examples" / "api.github.com"
OWNER, NAME = "acme", "api"
REPOSITORY = f"{OWNER}/{NAME}"
REPOSITORY_ID = 4_200_000_001
INSTALLATION_ID = 77
CHANNEL = "C0DEPLOYS"


def example(path: str) -> dict[str, Any]:
    """One of octokit's example deliveries (a fresh copy to change)."""
    return copy.deepcopy(json.loads((EXAMPLES / path).read_text()))


def slack_shape(path: str) -> dict[str, Any]:
    """One of the java-slack-sdk payload shapes (every field, values blank), to fill in."""
    return json.loads((CORPORA / "slack-payload-shapes" / path).read_text())


def _ours(payload: dict[str, Any]) -> dict[str, Any]:
    repository = payload["repository"]
    repository.update(id=REPOSITORY_ID, name=NAME, full_name=REPOSITORY, default_branch="main")
    repository["owner"]["login"] = OWNER
    payload["installation"] = {"id": INSTALLATION_ID, "node_id": "MDIz"}
    return payload


def installation_created() -> dict[str, Any]:
    payload = example("installation/created.payload.json")
    payload["installation"]["id"] = INSTALLATION_ID
    payload["installation"]["account"]["login"] = OWNER
    payload["repositories"] = [
        {"id": REPOSITORY_ID, "name": NAME, "full_name": REPOSITORY, "private": False}
    ]
    return payload


def pull_request(action: str, *, number: int, sha: str, title: str, author: str) -> dict[str, Any]:
    payload = _ours(example("pull_request/opened.payload.json"))
    payload["action"] = action
    payload["number"] = number
    pr = payload["pull_request"]
    pr.update(number=number, title=title, state="open", merged=False)
    pr["html_url"] = f"https://github.com/{REPOSITORY}/pull/{number}"
    pr["head"].update(sha=sha, ref=f"feature-{number}")
    pr["user"]["login"] = author
    return payload


def comment(body: str, *, number: int, login: str, comment_id: int) -> dict[str, Any]:
    payload = _ours(example("issue_comment/created.with-installation.payload.json"))
    payload["issue"]["number"] = number
    payload["issue"]["pull_request"] = {
        "url": f"https://api.github.com/repos/{REPOSITORY}/pulls/{number}"
    }
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    payload["comment"].update(id=comment_id, body=body, created_at=now, updated_at=now)
    payload["comment"]["user"].update(login=login, type="User")
    return payload


def deployment_status(deployment_id: int, state: str) -> dict[str, Any]:
    payload = _ours(example("deployment_status/with-installation.payload.json"))
    payload["deployment"]["id"] = deployment_id
    payload["deployment_status"]["state"] = state
    return payload


def commit_status(sha: str, context: str, state: str) -> dict[str, Any]:
    """A `status` delivery: `context` on commit `sha` is now `state`."""
    payload = _ours(example("status/with-installation.payload.json"))
    payload.update(sha=sha, context=context, state=state)
    return payload


def check_suite_completed(sha: str) -> dict[str, Any]:
    """A `check_suite` `completed` delivery for commit `sha`."""
    payload = _ours(example("check_suite/completed.payload.json"))
    payload["check_suite"]["head_sha"] = sha
    return payload


class HealthEndpoint(LoopbackServer):
    """`GET /healthz` answering 200 until `failing` is set, then 503."""

    def __init__(self) -> None:
        self.failing = False
        self.hits = 0
        super().__init__(Starlette(routes=[Route("/healthz", self._health)]), thread_name="health")

    async def _health(self, _request: Request) -> PlainTextResponse:
        self.hits += 1
        if self.failing:
            return PlainTextResponse("database unreachable", status_code=503)
        return PlainTextResponse("ok")

    @property
    def url(self) -> str:
        return f"{self.base_url}/healthz"


def pipeline_file(*, channel: str, health_url: str) -> str:
    return f"""
slack:
  channel: {channel}
users:
  alice: U0ALICE
  bob: U0BOB
environments:
  - name: stage
    health: {{url: "{health_url}", interval: 1s, soak: 2s, failures: 2}}
  - name: production
    approvals: 1
    approvers: [bob, carol]
    health: {{url: "{health_url}", interval: 1s, soak: 2s, failures: 2}}
"""


class Story:
    """Drives a deploybot (in process or a real server behind `client`) as GitHub and Slack
    would, and reads what it did from the emulators. `tick` advances the scheduler (or just
    waits, for a server that ticks on its own); `sessions` reads its database."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        github: GitHubEmulator,
        slack: SlackEmulator,
        *,
        sessions: async_sessionmaker[AsyncSession],
        tick: Callable[[], Awaitable[None]],
    ) -> None:
        self.client, self.github, self.slack = client, github, slack
        self.sessions, self.tick = sessions, tick
        self.deliveries = 0

    @classmethod
    def in_process(
        cls, app: Any, client: httpx.AsyncClient, github: GitHubEmulator, slack: SlackEmulator
    ) -> Story:
        """The story of an app running in this process: its scheduler ticks on request."""
        services = app.state.services

        async def tick() -> None:
            await services.scheduler.tick()

        return cls(client, github, slack, sessions=services.sessions, tick=tick)

    async def deliver(self, event: str, payload: dict, *, allow_dead: bool = False) -> None:
        self.deliveries += 1
        body = compact(payload)
        headers = github_headers(
            body, secret=WEBHOOK_SECRET, event=event, delivery=f"story-{self.deliveries}"
        )
        response = await self.client.post("/github/webhook", content=body, headers=headers)
        assert response.status_code == 202, response.text
        await self.settle(allow_dead=allow_dead)

    async def click(
        self, action_id: str, value: str, user: str, *, home: bool = False, settle: bool = True
    ) -> httpx.Response:
        """Click a button in the channel, or (`home`) on the App Home tab; then wait for the
        app to settle, unless `settle` is False (the answer comes at the ack)."""
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": "T0001"},
            "team": {"id": "T0001", "domain": "acme"},
            "api_app_id": "A0001",
            "token": "legacy",
            "trigger_id": "1.2.3",
            "channel": {"id": CHANNEL, "name": "deploys"},
            "container": {"type": "message", "channel_id": CHANNEL, "message_ts": "1.2"},
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b",
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        if home:  # a home tab's click names its view, not a channel or message
            del payload["channel"]
            payload["container"] = {"type": "view", "view_id": "V0HOME"}
            payload["view"] = {"id": "V0HOME", "type": "home", "blocks": []}
        body = urlencode({"payload": json.dumps(payload)}).encode()
        response = await self.client.post(
            "/slack/events", content=body, headers=slack_headers(body, secret=SIGNING_SECRET)
        )
        if settle:
            await self.settle()
        return response

    async def open_home(self, user: str) -> httpx.Response:
        """Open the App Home tab (the `app_home_opened` event)."""
        body = json.dumps(
            {
                "type": "event_callback",
                "token": "legacy",
                "team_id": "T0001",
                "api_app_id": "A0001",
                "event_id": f"Ev{time.time_ns()}",
                "event_time": int(time.time()),
                "event": {
                    "type": "app_home_opened",
                    "user": user,
                    "channel": "D0001",
                    "tab": "home",
                    "event_ts": f"{time.time():.6f}",
                },
            }
        ).encode()
        headers = {**slack_headers(body, secret=SIGNING_SECRET), "Content-Type": "application/json"}
        return await self.client.post("/slack/events", content=body, headers=headers)

    async def slash(self, text: str, *, user: str, channel: str = CHANNEL) -> httpx.Response:
        """Type `/deploy <text>` in Slack: the corpus's slash-command shape, filled in, with a
        response_url and a trigger_id the emulator knows."""
        payload = slack_shape("slash-commands/SlashCommandPayload.json")
        payload.update(
            team_id="T0001",
            team_domain="acme",
            api_app_id="A0001",
            channel_id=channel,
            channel_name="deploys",
            user_id=user,
            user_name=user.lower(),
            command="/deploy",
            text=text,
            response_url=self.slack.response_url(channel=channel, user=user),
            trigger_id=f"{time.time():.6f}.trigger",
        )
        body = urlencode(payload).encode()
        return await self.client.post(
            "/slack/events", content=body, headers=slack_headers(body, secret=SIGNING_SECRET)
        )

    async def submit(
        self, view: dict[str, Any], *, user: str, values: dict[str, Any] | None = None
    ) -> httpx.Response:
        """Press a modal's submit button: the corpus's view_submission shape around `view`."""
        payload = slack_shape("views/ViewSubmissionPayload.json")
        payload["team"].update(id="T0001", domain="acme")
        payload["user"].update(id=user, username=user.lower(), name=user.lower(), team_id="T0001")
        payload.update(api_app_id="A0001", trigger_id=f"{time.time():.6f}.trigger")
        submitted = payload["view"]
        submitted.update(
            id=view.get("id") or "V0001",
            type="modal",
            callback_id=view["callback_id"],
            private_metadata=view.get("private_metadata", ""),
            state={"values": values or {}},
        )
        body = urlencode({"payload": json.dumps(payload)}).encode()
        return await self.client.post(
            "/slack/events", content=body, headers=slack_headers(body, secret=SIGNING_SECRET)
        )

    async def settle(self, *, allow_dead: bool = False) -> None:
        """Wait until every delivery is handled and every effect sent (or, with
        `allow_dead`, given up on)."""
        for _ in range(500):
            async with self.sessions() as session:
                waiting = await inbox.depth(session) + await outbox.depth(session)
                dead = await inbox.dead_letters(session) + await outbox.dead_letters(session)
            assert allow_dead or not dead, [(d.last_error) for d in dead]
            if waiting == 0:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the app did not settle")

    async def eventually(self, predicate, *, seconds: float = 10, allow_dead: bool = False) -> None:
        """Slack listeners work after their ack: wait for what they do to show."""
        deadline = time.monotonic() + seconds
        while not predicate():
            assert time.monotonic() < deadline, "it did not happen in time"
            await asyncio.sleep(0.05)
            await self.settle(allow_dead=allow_dead)

    async def tick_until(self, predicate, *, seconds: float = 15) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            assert time.monotonic() < deadline, "the scheduler did not get there in time"
            await self.tick()
            await self.settle()
            await asyncio.sleep(0.2)

    def deployments(self, environment: str) -> list[dict]:
        return [d for d in self.github.deployments(OWNER, NAME) if d["environment"] == environment]

    def button_value(self, action_id: str) -> str:
        """The value of the newest button with this action_id in the channel."""
        for message in reversed(self.slack.messages):
            for block in message.get("blocks") or []:
                for element in block.get("elements", []):
                    if element.get("action_id") == action_id:
                        return element["value"]
        raise AssertionError(f"no {action_id} button in the thread")

    def thread(self) -> str:
        return self.slack.transcript(CHANNEL)
