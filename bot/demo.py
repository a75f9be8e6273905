"""`deploybot demo`: the release story, offline, on this machine.

The real app (`create_app`, its lifespan: migrations, inbox worker, outbox dispatcher,
scheduler) runs in-process on an SQLite file in a temporary directory. GitHub and Slack are
the emulators, served on loopback; a scripted deploy system answers every GitHub Deployment
the bot creates; a health endpoint is flipped to failing when the second release goes bad.
The script drives the bot only as GitHub and Slack would: signed webhook deliveries and
signed button clicks. It prints the Slack thread as a person reads it, then checks that the
story really happened (exit 0) or says what went wrong (exit 1).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import hmac
import html
import io
import json
import logging
import os
import re
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

# --------------------------------------------------------------------------- rendering

_LINK = re.compile(r"<([^<>\n]*)>")
_BOLD = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_SPECIAL = {"channel": "@channel", "here": "@here", "everyone": "@everyone"}
BOT_NAME = "deploybot"
RULE = "─" * 40


def mrkdwn_to_text(text: str, names: Mapping[str, str] | None = None) -> str:
    """Slack mrkdwn as a person sees it: `<url|text>` is `text`, `<@U1>` is `@name`, dates
    show their fallback, `*bold*` loses its stars, and `&lt;` `&gt;` `&amp;` are decoded.

    Entities are decoded last, so escaped outside text (`&lt;!channel&gt;`) is shown as the
    characters it is and never read as a mention or link.
    """
    names = names or {}

    def token(match: re.Match[str]) -> str:
        inner = match.group(1)
        target, _, label = inner.partition("|")
        if target.startswith("@"):
            return "@" + (label or names.get(target[1:], target[1:]))
        if target.startswith("#"):
            return "#" + (label or target[1:])
        if target.startswith("!"):
            word = target[1:].split("^", 1)[0]
            if label:
                return label
            return _SPECIAL.get(word, "@" + word)
        return label or target

    text = _LINK.sub(token, text)
    text = _BOLD.sub(r"\1", text)
    return html.unescape(text) if "&" in text else text


def _plain(obj: Any, names: Mapping[str, str]) -> str:
    """The shown text of a text object (plain_text as is, mrkdwn rendered)."""
    if not isinstance(obj, Mapping):
        return ""
    text = str(obj.get("text", ""))
    if obj.get("type") == "mrkdwn":
        return mrkdwn_to_text(text, names)
    return text


def _button(element: Mapping[str, Any], names: Mapping[str, str]) -> str:
    label = _plain(element.get("text"), names) or str(element.get("type", "?"))
    return f"[ {label} ]"


def _rich_text(node: Any) -> str:
    if isinstance(node, list):
        return "".join(_rich_text(n) for n in node)
    if not isinstance(node, Mapping):
        return ""
    kind = node.get("type")
    if kind in ("text", "link"):
        return str(node.get("text") or node.get("url") or "")
    if kind == "emoji":
        return f":{node.get('name', '')}:"
    if kind == "user":
        return f"@{node.get('user_id', '')}"
    if kind == "broadcast":
        return f"@{node.get('range', '')}"
    body = _rich_text(node.get("elements") or [])
    return body + "\n" if kind in ("rich_text_section", "rich_text_preformatted") else body


def render_blocks(blocks: Sequence[Mapping[str, Any]], names: Mapping[str, str]) -> list[str]:
    """Block Kit blocks as terminal lines."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            title = _plain(block.get("text"), names)
            lines += [title, "═" * min(max(len(title), 8), 60)]
        elif kind == "section":
            text = _plain(block.get("text"), names)
            fields = [_plain(f, names) for f in block.get("fields") or ()]
            accessory = block.get("accessory")
            if isinstance(accessory, Mapping) and accessory.get("type") == "button":
                text = f"{text}  {_button(accessory, names)}"
            lines += [line for piece in (text, *fields) if piece for line in piece.splitlines()]
        elif kind == "context":
            parts = [
                _plain(e, names) if e.get("type") != "image" else f"[{e.get('alt_text', '')}]"
                for e in block.get("elements") or ()
                if isinstance(e, Mapping)
            ]
            lines += " · ".join(p for p in parts if p).splitlines()
        elif kind == "divider":
            lines.append(RULE)
        elif kind == "actions":
            buttons = [
                _button(e, names) for e in block.get("elements") or () if isinstance(e, Mapping)
            ]
            lines.append("  ".join(buttons))
        elif kind == "markdown":
            lines += mrkdwn_to_text(str(block.get("text", "")), names).splitlines()
        elif kind == "rich_text":
            lines += _rich_text(block.get("elements") or []).rstrip("\n").splitlines()
        elif kind == "image":
            lines.append(f"[image: {block.get('alt_text', '')}]")
    return lines


def message_lines(message: Mapping[str, Any], names: Mapping[str, str]) -> list[str]:
    """What one message shows: its blocks, or its text when it has none; then reactions."""
    blocks = message.get("blocks") or []
    lines = render_blocks(blocks, names) if blocks else []
    if not lines:
        lines = mrkdwn_to_text(str(message.get("text", "")), names).splitlines() or [""]
    if message.get("reactions"):
        lines.append(
            " ".join(f":{r.get('name', '')}: {r.get('count', 1)}" for r in message["reactions"])
        )
    return lines


def is_ephemeral(message: Mapping[str, Any]) -> bool:
    """Ephemeral messages (`chat.postEphemeral`) carry `message_ts` and no `ts`."""
    return bool(message.get("ephemeral")) or ("message_ts" in message and "ts" not in message)


def is_parent(message: Mapping[str, Any]) -> bool:
    return not is_ephemeral(message) and message.get("thread_ts") in (None, message.get("ts"))


def render_reply(message: Mapping[str, Any], names: Mapping[str, str] | None = None) -> str:
    """One reply in a thread: `↳ who: text`, continuation lines aligned under the text."""
    names = names or {}
    author = names.get(str(message.get("user", "")), "") if not message.get("bot_id") else ""
    author = author or BOT_NAME
    if is_ephemeral(message):
        viewer = str(message.get("user", ""))
        author = f"{BOT_NAME} (only visible to {names.get(viewer, viewer)})"
    if message.get("edited") and not is_ephemeral(message):
        author += " (edited)"
    head = f"  ↳ {author}: "
    lines = message_lines(message, names)
    pad = " " * len(head)
    return "\n".join([head + lines[0], *(pad + line for line in lines[1:])]).rstrip()


def render_board(message: Mapping[str, Any], names: Mapping[str, str] | None = None) -> str:
    """A parent message (a status board), framed on the left."""
    return "\n".join(f"│ {line}".rstrip() for line in message_lines(message, names or {}))


def render_thread(
    messages: Iterable[Mapping[str, Any]], names: Mapping[str, str] | None = None
) -> str:
    """A Slack thread as plain text: the parent (the status board) framed, then each reply and
    ephemeral in the order given, with who said it.

    `messages` are Slack message objects as `conversations.replies` returns them, plus any
    ephemerals (objects with `message_ts` and `user`, as `chat.postEphemeral` takes them);
    `names` maps Slack user ids to the names to show.
    """
    names = names or {}
    out: list[str] = []
    for message in messages:
        if is_parent(message):
            out.append(render_board(message, names))
        else:
            out.append(render_reply(message, names))
    return "\n".join(out)


# --------------------------------------------------------------------------- the story

OWNER, NAME = "acme", "shop"
REPOSITORY = f"{OWNER}/{NAME}"
REPOSITORY_ID = 4_200_000_042
INSTALLATION_ID = 4_242
APP_ID = 4_242
TEAM_ID = "T0EMULATOR"
SLACK_APP_ID = "A0DEPLOYBOT"
CHANNEL = "C0DEPLOYS"
PEOPLE = {"alice": "U0ALICE", "bob": "U0BOB"}
NAMES = {slack: login for login, slack in PEOPLE.items()}
WEBHOOK_SECRET = "demo-webhook-secret-" + uuid.uuid4().hex
SIGNING_SECRET = "demo-signing-secret-" + uuid.uuid4().hex
# Not Slack-shaped on purpose: it only ever reaches the built-in Slack emulator.
BOT_TOKEN = "demo-bot-token-" + uuid.uuid4().hex[:16]
TICK_SECONDS = 0.5
STEP_TIMEOUT = 20.0


def _sha(seed: str) -> str:
    return hashlib.sha1(seed.encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class Change:
    number: int
    title: str
    branch: str
    sha: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "sha", _sha(f"{REPOSITORY}#{self.number}:{self.title}"))

    @property
    def short(self) -> str:
        return self.sha[:7]


FIRST = Change(42, "Add express checkout", "express-checkout")
SECOND = Change(43, "Switch payment provider", "payments-v2")


class DemoFailure(Exception):
    """The story did not happen as told; the message says what was missing."""


def pipeline_file(health_base: str) -> str:
    """The demo repository's `.github/deploybot.yml`: short intervals so it runs in seconds."""
    checks = "interval: 500ms, soak: 1s, failures: 2"
    return f"""\
slack:
  channel: {CHANNEL}
users:
  alice: {PEOPLE["alice"]}
  bob: {PEOPLE["bob"]}
environments:
  - name: stage
    health: {{url: "{health_base}/stage/healthz", {checks}}}
  - name: production
    approvals: 1
    approvers: [bob]
    health: {{url: "{health_base}/production/healthz", {checks}}}
"""


def find_corpora() -> Path:
    """The shared corpora the emulators answer from, or a DemoFailure saying where to look."""
    from integrations.emulators.loopback import CORPORA_ENV, corpora_dir

    root = corpora_dir()
    needed = [
        Path("github-rest") / "openapi-subset.json",
        Path("github-webhooks") / "payload-examples" / "api.github.com",
    ]
    if root is None or not all((root / part).exists() for part in needed):
        where = f"{root}" if root is not None else "../shared/corpora beside the checkout"
        raise DemoFailure(
            f"the GitHub corpora were not found (looked in {where}). The demo's GitHub "
            f"emulator answers from them: run it from the project checkout next to "
            f"../shared, or set {CORPORA_ENV} to the corpora folder."
        )
    return root


class Deliveries:
    """GitHub deliveries built from GitHub's own example payloads, retargeted at acme/shop."""

    def __init__(self, corpora: Path) -> None:
        self.root = corpora / "github-webhooks" / "payload-examples" / "api.github.com"

    def _example(self, path: str) -> dict[str, Any]:
        return copy.deepcopy(json.loads((self.root / path).read_text(encoding="utf-8")))

    def _ours(self, payload: dict[str, Any]) -> dict[str, Any]:
        repository = payload["repository"]
        repository.update(
            id=REPOSITORY_ID,
            name=NAME,
            full_name=REPOSITORY,
            default_branch="main",
            html_url=f"https://github.com/{REPOSITORY}",
        )
        repository["owner"]["login"] = OWNER
        payload["installation"] = {"id": INSTALLATION_ID, "node_id": "MDIzOkluc3RhbGxhdGlvbg=="}
        return payload

    def installation_created(self) -> dict[str, Any]:
        payload = self._example("installation/created.payload.json")
        payload["installation"]["id"] = INSTALLATION_ID
        payload["installation"]["app_id"] = APP_ID
        payload["installation"]["account"]["login"] = OWNER
        payload["installation"]["account"]["type"] = "Organization"
        payload["repositories"] = [
            {"id": REPOSITORY_ID, "name": NAME, "full_name": REPOSITORY, "private": True}
        ]
        payload["sender"]["login"] = "alice"
        return payload

    def pull_request_opened(self, change: Change, author: str) -> dict[str, Any]:
        payload = self._ours(self._example("pull_request/opened.payload.json"))
        payload["number"] = change.number
        pr = payload["pull_request"]
        pr.update(number=change.number, title=change.title, state="open", merged=False)
        pr["html_url"] = f"https://github.com/{REPOSITORY}/pull/{change.number}"
        pr["head"].update(sha=change.sha, ref=change.branch)
        pr["base"].update(ref="main")
        pr["user"]["login"] = author
        payload["sender"]["login"] = author
        return payload

    def comment(self, change: Change, body: str, login: str, comment_id: int) -> dict[str, Any]:
        payload = self._ours(self._example("issue_comment/created.with-installation.payload.json"))
        issue = payload["issue"]
        issue.update(number=change.number, title=change.title)
        issue["pull_request"] = {
            "url": f"https://api.github.com/repos/{REPOSITORY}/pulls/{change.number}",
            "html_url": f"https://github.com/{REPOSITORY}/pull/{change.number}",
        }
        payload["comment"].update(id=comment_id, body=body)
        payload["comment"]["user"].update(login=login, type="User")
        payload["sender"]["login"] = login
        return payload

    def deployment_status(self, deployment: Mapping[str, Any], state: str) -> dict[str, Any]:
        payload = self._ours(self._example("deployment_status/with-installation.payload.json"))
        payload["deployment"].update(
            id=deployment["id"],
            sha=deployment["sha"],
            ref=deployment["ref"],
            environment=deployment["environment"],
            original_environment=deployment["environment"],
            payload=deployment.get("payload") or {},
        )
        status = payload["deployment_status"]
        status.update(
            id=int(_sha(f"{deployment['id']}:{state}")[:8], 16),
            state=state,
            environment=deployment["environment"],
            description=f"{state.replace('_', ' ')} (demo deploy system)",
        )
        status["creator"]["login"] = "deploy-system[bot]"
        status["creator"]["type"] = "Bot"
        payload["sender"]["login"] = "deploy-system[bot]"
        return payload


def _github_headers(body: bytes, event: str) -> dict[str, str]:
    digest = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/demo",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-GitHub-Hook-ID": "1",
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": str(APP_ID),
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def _slack_headers(body: bytes) -> dict[str, str]:
    timestamp = str(int(time.time()))
    base = b"v0:" + timestamp.encode() + b":" + body
    signature = "v0=" + hmac.new(SIGNING_SECRET.encode(), base, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/x-www-form-urlencoded",
        "X-Slack-Request-Timestamp": timestamp,
        "X-Slack-Signature": signature,
    }


class HealthEndpoints:
    """`GET /<environment>/healthz` for the demo's services: 200 until an environment is
    marked failing, then 503."""

    def __init__(self) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import PlainTextResponse
        from starlette.routing import Route

        from integrations.emulators.loopback import LoopbackServer

        self.failing: set[str] = set()
        self.hits: dict[str, int] = {}

        async def health(request: Request) -> PlainTextResponse:
            environment = request.path_params["environment"]
            self.hits[environment] = self.hits.get(environment, 0) + 1
            if environment in self.failing:
                return PlainTextResponse("payments: provider timeout", status_code=503)
            return PlainTextResponse("ok")

        app = Starlette(routes=[Route("/{environment}/healthz", health)])
        self.server = LoopbackServer(app, thread_name="demo-health")


class Story:
    """The running pieces and the narration: what people and systems do, then what Slack
    shows for it."""

    def __init__(
        self,
        *,
        app: Any,
        client: Any,
        github: Any,
        slack: Any,
        health: HealthEndpoints,
        deliveries: Deliveries,
        out: Callable[[str], None],
    ) -> None:
        self.app, self.client, self.github, self.slack = app, client, github, slack
        self.health = health
        self.deliveries = deliveries
        self.out = out
        self.services = app.state.services
        self.shown: dict[str, str] = {}  # ts -> what was shown, to spot edits
        self.shown_ephemerals = 0
        self.shown_github_calls = 0
        self.comment_ids = iter(range(9_001, 10_000))
        self.answered: set[int] = set()
        self.before_success: Callable[[dict[str, Any]], None] = lambda _deployment: None

    # -- narration

    def say(self, text: str) -> None:
        self.out(f"\n▶ {text}")

    def note(self, text: str) -> None:
        self.out(f"  · {text}")

    def show(self) -> None:
        """Print what the bot did since the last look: on GitHub (reactions, PR comments),
        then in Slack (new threads, replies, edited replies, ephemerals), in order."""
        calls = self.github.calls
        for call in calls[self.shown_github_calls :]:
            if call.status is None or call.status >= 300:
                continue
            if call.operation_id == "reactions/create-for-issue-comment":
                self.note(f"on GitHub, deploybot reacts :{call.json['content']}: to the comment")
            elif call.operation_id == "issues/create-comment":
                first = str(call.json["body"]).strip().splitlines()[0]
                self.note(f"on GitHub, deploybot comments on the PR: {first}")
        self.shown_github_calls = len(calls)

        fresh: list[tuple[float, dict[str, Any]]] = []
        for message in self.slack.messages:
            if message["channel"] != CHANNEL:
                continue
            drawn = json.dumps([message.get("text"), message.get("blocks")], sort_keys=True)
            before = self.shown.get(message["ts"])
            if before is None:
                fresh.append((float(message["ts"]), message))
            elif before != drawn and not is_parent(message):
                edited = (message.get("edited") or {}).get("ts", message["ts"])
                fresh.append((float(edited), message))
            self.shown[message["ts"]] = drawn
        ephemerals = self.slack.ephemerals
        for message in ephemerals[self.shown_ephemerals :]:
            fresh.append((float(message["message_ts"]), {**message, "ephemeral": True}))
        self.shown_ephemerals = len(ephemerals)
        for _, message in sorted(fresh, key=lambda pair: pair[0]):
            if is_parent(message):
                self.out("\n  Slack #deploys, a new thread:")
                self.out(_indent(render_thread([message], NAMES)))
            else:
                self.out(render_thread([message], NAMES))

    def show_board(self, change: Change, caption: str) -> None:
        board = self.board_of(change)
        if board is None:
            raise DemoFailure(f"there is no thread for #{change.number} in #deploys")
        self.out(f"\n  Slack #deploys, {caption}:")
        self.out(_indent(render_thread([board], NAMES)))

    # -- reading Slack

    def board_of(self, change: Change) -> dict[str, Any] | None:
        for message in self.slack.messages:
            if is_parent(message) and _header_text(message).startswith(f"#{change.number} "):
                return message
        return None

    def status(self, change: Change, environment: str) -> str | None:
        """An environment's status on the change's board (CONTRACT §7 words), read back from
        its line: `<emoji> *<environment>*: <label>`."""
        from bot.slack.blocks import STATUS_STYLE

        board = self.board_of(change)
        for block in (board or {}).get("blocks") or ():
            text = str((block.get("text") or {}).get("text", ""))
            for status, (emoji, label) in STATUS_STYLE.items():
                if text.startswith(f"{emoji} *{environment}*: {label}"):
                    return status
        return None

    def newest_button(
        self, action_id: str, change: Change
    ) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """The newest `action_id` button in the change's thread, and its message."""
        board = self.board_of(change)
        for message in reversed(self.slack.messages):
            if board is None or message.get("thread_ts") != board["ts"]:
                continue
            for block in message.get("blocks") or ():
                for element in block.get("elements") or ():
                    if element.get("action_id") == action_id:
                        return message, element
        return None

    def deployments(self, environment: str | None = None) -> list[dict[str, Any]]:
        """The GitHub Deployments the bot created, oldest first."""
        found = self.github.deployments(OWNER, NAME)[::-1]
        return [d for d in found if environment in (None, d["environment"])]

    # -- what GitHub sends

    async def deliver(self, event: str, payload: dict[str, Any]) -> None:
        """A signed delivery to `POST /github/webhook`; returns once the bot has acted on it."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        response = await self.client.post(
            "/github/webhook", content=body, headers=_github_headers(body, event)
        )
        if response.status_code not in (200, 202):
            raise DemoFailure(
                f"POST /github/webhook ({event}) answered {response.status_code}: "
                f"{response.text[:200]}"
            )
        await self.settle()

    async def open_pull_request(self, change: Change, author: str) -> None:
        self.github.respond("pulls/get", body=self.pull(change, author))
        await self.deliver("pull_request", self.deliveries.pull_request_opened(change, author))

    async def comment(self, change: Change, login: str, body: str) -> None:
        # The bot reads the pull request on each command: the emulator answers with this one.
        self.github.respond("pulls/get", body=self.pull(change, "alice"))
        payload = self.deliveries.comment(change, body, login, next(self.comment_ids))
        await self.deliver("issue_comment", payload)

    def pull(self, change: Change, author: str) -> dict[str, Any]:
        return self.deliveries.pull_request_opened(change, author)["pull_request"]

    # -- what Slack sends

    async def click(self, action_id: str, change: Change, login: str) -> None:
        """`login` clicks the newest `action_id` button in the change's thread, in a request
        signed the way Slack signs them."""
        found = self.newest_button(action_id, change)
        if found is None:
            raise DemoFailure(f"there is no {action_id} button in the thread of #{change.number}")
        message, button = found
        user = PEOPLE[login]
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": login, "name": login, "team_id": TEAM_ID},
            "api_app_id": SLACK_APP_ID,
            "token": "legacy-verification-token-unused",
            "container": {
                "type": "message",
                "message_ts": message["ts"],
                "channel_id": CHANNEL,
                "is_ephemeral": False,
                "thread_ts": message.get("thread_ts"),
            },
            "trigger_id": f"{int(time.time())}.4242.{uuid.uuid4().hex[:16]}",
            "team": {"id": TEAM_ID, "domain": "acme"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": CHANNEL, "name": "deploys"},
            "message": {k: v for k, v in message.items() if k != "channel"},
            "state": {"values": {}},
            "response_url": self.slack.response_url(
                channel=CHANNEL, user=user, message_ts=message.get("ts")
            ),
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "demo",
                    "text": button["text"],
                    "value": button["value"],
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        body = urlencode({"payload": json.dumps(payload)}).encode()
        response = await self.client.post(
            "/slack/events", content=body, headers=_slack_headers(body)
        )
        if response.status_code != 200:
            raise DemoFailure(f"POST /slack/events (a click) answered {response.status_code}")

    # -- the deploy system (what GitHub Actions or Argo would be)

    async def deploy_system(self) -> None:
        """Answer every GitHub Deployment not answered yet: `in_progress`, then `success`.
        `before_success` lets the script break (or mend) what was deployed."""
        for deployment in self.deployments():
            if deployment["id"] in self.answered:
                continue
            self.answered.add(deployment["id"])
            rollback = (deployment.get("payload") or {}).get("kind") == "rollback"
            self.out(
                f"\n⚙ The deploy system picks up GitHub deployment {deployment['id']} "
                f"({'a rollback: ' if rollback else ''}{deployment['sha'][:7]} to "
                f"{deployment['environment']}) and reports in_progress."
            )
            await self.deliver(
                "deployment_status", self.deliveries.deployment_status(deployment, "in_progress")
            )
            self.show()
            self.before_success(deployment)
            self.out("⚙ It reports success.")
            await self.deliver(
                "deployment_status", self.deliveries.deployment_status(deployment, "success")
            )
            self.show()

    # -- waiting for the bot

    async def settle(self) -> None:
        """Wait until every delivery is handled and every effect sent (none dead-lettered)."""
        from storage import inbox, outbox

        deadline = time.monotonic() + STEP_TIMEOUT
        while True:
            async with self.services.sessions() as session:
                waiting = await inbox.depth(session) + await outbox.depth(session)
                dead = await inbox.dead_letters(session) + await outbox.dead_letters(session)
            if dead:
                errors = "; ".join(str(d.last_error)[:300] for d in dead)
                raise DemoFailure(f"the bot gave up on {len(dead)} piece(s) of work: {errors}")
            if waiting == 0:
                return
            if time.monotonic() > deadline:
                raise DemoFailure(
                    f"the bot still had {waiting} piece(s) of work after {STEP_TIMEOUT:.0f} s"
                )
            await asyncio.sleep(0.02)

    async def until(self, what: str, predicate: Callable[[], bool]) -> None:
        """Wait for something the bot does on its own time (after a Slack ack, on a tick)."""
        deadline = time.monotonic() + STEP_TIMEOUT
        while not predicate():
            if time.monotonic() > deadline:
                raise DemoFailure(f"waited {STEP_TIMEOUT:.0f} s for {what}; it did not happen")
            await asyncio.sleep(0.05)
        await self.settle()


def _header_text(message: Mapping[str, Any]) -> str:
    for block in message.get("blocks") or ():
        if block.get("type") == "header":
            return str((block.get("text") or {}).get("text", ""))
    return str(message.get("text", ""))


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


async def tell(story: Story, pipeline: str) -> None:
    """The release story, step by step; each step waits for the bot's visible answer."""
    a, b = FIRST, SECOND

    story.say(f"The deploybot GitHub App is installed on {REPOSITORY}.")
    await story.deliver("installation", story.deliveries.installation_created())
    story.note(f"{REPOSITORY}'s .github/deploybot.yml on main:")
    story.out(_indent(_indent(pipeline.rstrip())))

    # --- #42: stage, then production with bob's approval -------------------------------
    story.say(f'alice opens PR #{a.number} "{a.title}" (branch {a.branch}, head {a.short}).')
    await story.open_pull_request(a, "alice")
    await story.until(f"the thread of #{a.number}", lambda: story.board_of(a) is not None)
    story.show()

    story.say(f"alice comments on PR #{a.number}: /deploy stage")
    await story.comment(a, "alice", "/deploy stage")
    await story.until(f"a stage deployment of {a.short}", lambda: bool(story.deployments("stage")))
    story.show()
    await story.deploy_system()
    await story.until(
        "stage to pass its health checks", lambda: story.status(a, "stage") == "success"
    )
    story.say("stage's health endpoint answers 200 for the whole soak: stage succeeds.")
    story.show()

    story.say(f"alice comments on PR #{a.number}: /deploy production")
    await story.comment(a, "alice", "/deploy production")
    await story.until("the approval request", lambda: story.newest_button("approve", a) is not None)
    story.show()

    story.say("alice clicks Approve on her own deploy.")
    await story.click("approve", a, "alice")
    await story.until("deploybot's answer to alice", lambda: bool(story.slack.ephemerals))
    story.show()
    if story.deployments("production"):
        raise DemoFailure("alice's approval of her own deploy started a production deployment")

    story.say("bob clicks Approve.")
    await story.click("approve", a, "bob")
    await story.until(
        f"a production deployment of {a.short}", lambda: bool(story.deployments("production"))
    )
    story.show()
    await story.deploy_system()
    await story.until(
        "production to pass its health checks", lambda: story.status(a, "production") == "success"
    )
    story.say("production's health endpoint answers 200 for the whole soak: production succeeds.")
    story.show()
    story.show_board(a, f"the thread's parent message, #{a.number}'s status board, now")

    # --- #43: stage, production, a failing health check, the automatic rollback ------
    story.say(f'alice opens PR #{b.number} "{b.title}" (branch {b.branch}, head {b.short}).')
    await story.open_pull_request(b, "alice")
    await story.until(f"the thread of #{b.number}", lambda: story.board_of(b) is not None)
    story.show()

    story.say(f"alice comments on PR #{b.number}: /deploy stage")
    await story.comment(b, "alice", "/deploy stage")
    await story.until(
        f"a stage deployment of {b.short}", lambda: len(story.deployments("stage")) == 2
    )
    story.show()
    await story.deploy_system()
    await story.until(
        "stage to pass its health checks", lambda: story.status(b, "stage") == "success"
    )
    story.say("stage stays healthy: stage succeeds.")
    story.show()

    story.say(f"alice comments on PR #{b.number}: /deploy production")
    await story.comment(b, "alice", "/deploy production")
    await story.until("the approval request", lambda: story.newest_button("approve", b) is not None)
    story.show()
    story.say("bob clicks Approve.")
    await story.click("approve", b, "bob")
    await story.until(
        f"a production deployment of {b.short}", lambda: len(story.deployments("production")) == 2
    )
    story.show()

    def break_production(deployment: dict[str, Any]) -> None:
        if deployment["environment"] == "production" and deployment["sha"] == b.sha:
            story.health.failing.add("production")
            story.out(
                "  · (the new payment provider times out in production: production's health "
                "endpoint starts answering 503)"
            )

    story.before_success = break_production
    await story.deploy_system()
    await story.until("an automatic rollback", lambda: len(story.deployments("production")) == 3)
    story.say(
        f"production's health checks fail twice in a row: deploybot rolls production back to "
        f"{a.short} (#{a.number}) on its own."
    )
    story.show()

    def mend_production(deployment: dict[str, Any]) -> None:
        if deployment["environment"] == "production" and deployment["sha"] == a.sha:
            story.health.failing.discard("production")

    story.before_success = mend_production
    await story.deploy_system()
    await story.until(
        "production to show rolled back", lambda: story.status(b, "production") == "rolled_back"
    )
    story.show()
    story.show_board(b, f"#{b.number}'s status board at the end")


def check(story: Story) -> list[str]:
    """The facts the story claims, checked against what the emulators saw."""
    a, b = FIRST, SECOND
    problems: list[str] = []
    made = [(d["environment"], d["sha"][:7]) for d in story.deployments()]
    expected = [
        ("stage", a.short),
        ("production", a.short),
        ("stage", b.short),
        ("production", b.short),
        ("production", a.short),
    ]
    if made != expected:
        problems.append(f"the GitHub deployments were {made}, not {expected}")
    last = (story.deployments("production") or [{}])[-1]
    if (last.get("payload") or {}).get("kind") != "rollback" or last.get("sha") != a.sha:
        problems.append(f"the last production deployment is not a rollback to {a.short}")
    if not [e for e in story.slack.ephemerals if e["user"] == PEOPLE["alice"]]:
        problems.append("alice's approval of her own deploy was not refused")
    if story.status(a, "production") != "success":
        problems.append(f"#{a.number}'s board does not show production deployed")
    if story.status(b, "production") != "rolled_back":
        problems.append(f"#{b.number}'s board does not show production rolled back")
    if unanswered := {d["id"] for d in story.deployments()} - story.answered:
        problems.append(f"deployments {sorted(unanswered)} were never deployed")
    if story.slack.invalid_calls:
        problems.append(f"the bot made invalid Slack calls: {story.slack.invalid_calls[:3]}")
    if story.github.invalid_requests:
        problems.append(
            f"the bot sent invalid GitHub requests: {story.github.invalid_requests[:3]}"
        )
    if problems:
        raise DemoFailure("; ".join(problems))
    return [
        f"5 GitHub Deployments: {a.short} to stage and production, {b.short} to stage and "
        f"production, then {a.short} to production again (the rollback)",
        "alice's approval of her own deploy was refused; bob's approval deployed it",
        f"#{b.number}'s board shows production rolled back to {a.short}",
        "every Slack and GitHub call deploybot made passed the emulators' checks",
    ]


def _settings(*, database_url: str, slack_url: str, github_url: str, private_key: str) -> Any:
    """The demo's settings, from explicit values only: no `.env`, no environment variables."""
    from bot.settings import Settings

    class DemoSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: Any, init_settings: Any, **_others: Any
        ) -> tuple[Any, ...]:
            return (init_settings,)

    return DemoSettings(
        database_url=database_url,
        slack_bot_token=BOT_TOKEN,
        slack_signing_secret=SIGNING_SECRET,
        slack_app_token=None,
        slack_api_url=slack_url,
        github_app_id=APP_ID,
        github_webhook_secret=WEBHOOK_SECRET,
        github_app_private_key=private_key,
        github_app_private_key_file=None,
        github_api_url=github_url,
        deploybot_api_token=None,
        deploybot_tick_seconds=TICK_SECONDS,
        deploybot_config_path=".github/deploybot.yml",
        deploybot_log_format="console",
        deploybot_host="127.0.0.1",
        deploybot_port=0,
    )


async def run_demo(out: Callable[[str], None] = print) -> None:
    """Tell the story; raises DemoFailure when something did not happen as told."""
    import httpx
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from bot.app import create_app
    from integrations.emulators.github import GitHubEmulator
    from integrations.emulators.slack import SlackEmulator

    corpora = find_corpora()
    started = time.monotonic()
    # The App's key lives in memory only: the emulator checks the JWTs signed with it.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    health = HealthEndpoints()
    with (
        tempfile.TemporaryDirectory(prefix="deploybot-demo-") as workdir,
        GitHubEmulator(app_id=APP_ID, app_public_key=public_pem, spec=corpora) as github,
        SlackEmulator(bot_token=BOT_TOKEN, corpora=corpora) as slack,
        health.server,
    ):
        pipeline = pipeline_file(health.server.base_url)
        github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline)
        for login in PEOPLE:
            github.set_permission(OWNER, NAME, login, "write")
        settings = _settings(
            database_url=f"sqlite:///{Path(workdir) / 'deploybot.db'}",
            slack_url=slack.url,
            github_url=github.url,
            private_key=private_pem,
        )
        out("deploybot demo: one release story, offline, on this machine")
        out(f"  · deploybot (the real app, in-process) on SQLite in {workdir}")
        out(f"  · GitHub emulator {github.url} · Slack emulator {slack.url}")
        out(f"  · the shop's health endpoints {health.server.base_url}/<environment>/healthz")
        app = create_app(settings)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://deploybot"
            ) as client,
        ):
            story = Story(
                app=app,
                client=client,
                github=github,
                slack=slack,
                health=health,
                deliveries=Deliveries(corpora),
                out=out,
            )
            await tell(story, pipeline)
            facts = check(story)
    out("\n✔ All of that really happened:")
    for fact in facts:
        out(f"  · {fact}")
    out(f"\ndeploybot demo: done in {time.monotonic() - started:.1f} s.")


@contextlib.contextmanager
def _no_proxies() -> Iterator[None]:
    """Everything the demo talks to is on 127.0.0.1. A proxy set for the outside world would
    take the bot's requests there: slack-sdk uses HTTP(S)_PROXY and ignores NO_PROXY."""
    names = [n for base in _PROXY_VARIABLES for n in (base, base.lower())]
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


_PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")


def main(*, verbose: bool = False) -> int:
    """`deploybot demo`: run the story with the app's own logs kept out of the way.

    Returns the exit status: 0 when the story happened, 1 (with the reason, and the app's
    warnings) when it did not.
    """
    from bot.logs import configure_logging

    logs = io.StringIO()
    configure_logging(
        secrets=[WEBHOOK_SECRET, SIGNING_SECRET, BOT_TOKEN],
        fmt="console",
        level=logging.INFO if verbose else logging.WARNING,
    )
    if not verbose:
        for handler in logging.getLogger().handlers:
            if isinstance(handler, logging.StreamHandler):
                handler.setStream(logs)

    def out(line: str) -> None:
        print(line, flush=True)

    try:
        with _no_proxies():
            asyncio.run(run_demo(out))
    except Exception as exc:
        if isinstance(exc, DemoFailure):
            print(f"\n✘ deploybot demo failed: {exc}", file=sys.stderr)
        else:
            print("\n✘ deploybot demo failed with an error:", file=sys.stderr)
            traceback.print_exception(exc, file=sys.stderr)
        tail = logs.getvalue().strip().splitlines()[-40:]
        if tail:
            print("\nThe app's log (last lines):", file=sys.stderr)
            print("\n".join(tail), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndeploybot demo: interrupted", file=sys.stderr)
        return 130
    return 0
