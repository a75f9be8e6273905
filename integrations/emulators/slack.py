"""A Slack Web API emulator: a real HTTP server on loopback for the demo and the tests.

Method names, required arguments, token rules and example answers come from Slack's
published Web API description (`slack-web-api/slack_web_openapi_v2.json` in the shared
corpora). Messages and views are checked against Block Kit's limits, and what the bot
posts is kept as channel state, so a test can read a thread the way a person would.

    with SlackEmulator(bot_token="xoxb-test") as slack:
        client = AsyncWebClient(token="xoxb-test", base_url=slack.url)
        ...
        assert not slack.invalid_calls

Socket Mode is served as Slack serves it: `apps.connections.open` (app-level `xapp-` token
only) answers a `ws://` URL on the same port, the websocket greets with `hello`, and a test
pushes envelopes and gets the app's ack back:

    ack = await slack.socket_send("slash_commands", {..., "response_url": url})

`response_url(channel=..., user=...)` mints a URL like the `response_url` in Slack's slash
command and block_actions payloads; what the app posts there lands in `messages`
(`in_channel`) or `ephemerals` (the default), checked like `chat.postMessage`.

Standalone: `python -m integrations.emulators.slack --port 3001`.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import dataclasses
import functools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from integrations.emulators.loopback import CORPORA_ENV, LoopbackServer, corpora_dir, take_fault

__all__ = [
    "InvalidCall",
    "SlackCall",
    "SlackEmulator",
    "SocketConnection",
    "block_kit_errors",
    "find_slack_spec",
    "view_errors",
]

logger = logging.getLogger(__name__)

SPEC_RELATIVE_PATH = Path("slack-web-api/slack_web_openapi_v2.json")

TEAM_ID = "T0EMULATOR"
TEAM_NAME = "Deploybot Emulator"
TEAM_URL = "https://deploybot-emulator.slack.com/"
BOT_USER_ID = "U0DEPLOYBOT"
BOT_USER_NAME = "deploybot"
BOT_ID = "B0DEPLOYBOT"
APP_ID = "A0DEPLOYBOT"

# Block Kit limits, from Slack's Block Kit reference.
MAX_BLOCKS = {"message": 50, "modal": 100, "home": 100}
MAX_MESSAGE_TEXT = 40_000
MAX_SECTION_TEXT = 3_000
MAX_SECTION_FIELD = 2_000
MAX_SECTION_FIELDS = 10
MAX_CONTEXT_TEXT = 3_000
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_HEADER_TEXT = 150
MAX_MARKDOWN_BLOCK_TEXT = 12_000
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2_000
MAX_URL = 3_000
MAX_ACTION_ID = 255
MAX_BLOCK_ID = 255
MAX_PLACEHOLDER = 150
MAX_OPTION_TEXT = 75
MAX_OPTION_VALUE = 150
MAX_OPTIONS = 100
MAX_LABEL = 2_000
MAX_ALT_TEXT = 2_000
MAX_CONFIRM = {"title": 100, "text": 300, "confirm": 30, "deny": 30}
MAX_VIEW_TITLE = 24
MAX_VIEW_BUTTON = 24
MAX_CALLBACK_ID = 255
MAX_PRIVATE_METADATA = 3_000

BLOCK_TYPES = frozenset(
    {
        "actions", "call", "context", "divider", "file", "header", "image", "input",
        "markdown", "rich_text", "section", "video",
    }
)  # fmt: skip
ELEMENT_TYPES = frozenset(
    {
        "button", "channels_select", "checkboxes", "conversations_select", "datepicker",
        "datetimepicker", "email_text_input", "external_select", "file_input", "image",
        "multi_channels_select", "multi_conversations_select", "multi_external_select",
        "multi_static_select", "multi_users_select", "number_input", "overflow",
        "plain_text_input", "radio_buttons", "rich_text_input", "static_select", "timepicker",
        "url_text_input", "users_select", "workflow_button",
    }
)  # fmt: skip

# Arguments sent as JSON-encoded strings in form bodies; decoded so tests see structures.
_JSON_ARGS = ("blocks", "attachments", "view", "metadata")

# Arguments real Slack requires but the (old) description leaves optional.
_EXTRA_REQUIRED: dict[str, tuple[str, ...]] = {
    "conversations.history": ("channel",),
    "conversations.info": ("channel",),
    "conversations.replies": ("channel", "ts"),
    "users.info": ("user",),
    "views.update": ("view",),
}

# Methods that take the app-level (xapp-) token; the description predates them.
_APP_TOKEN_METHODS = frozenset({"apps.connections.open"})

# Socket Mode: the envelope types Slack sends, and how long it waits for an ack.
SOCKET_ENVELOPE_TYPES = frozenset({"events_api", "interactive", "slash_commands"})
SOCKET_ACK_SECONDS = 3.0
# Interactive payloads whose ack may carry a response (the rest are acked empty).
_RESPONDING_INTERACTIONS = frozenset({"view_submission", "block_suggestion"})
_SOCKET_HOST = "applink-emulator"  # what `hello` and `disconnect` name in `debug_info`

# A response_url takes up to five messages (Slack: five times within 30 minutes).
MAX_RESPONSE_URL_USES = 5
_RESPONSE_TYPES = ("ephemeral", "in_channel")
# Keys the emulator adds to what it records; never part of what Slack answers.
_PRIVATE_KEYS = frozenset({"channel", "via", "invoked_by"})


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True)
class MethodContract:
    """What the Web API description says about one method."""

    name: str
    needs_token: bool
    required: tuple[str, ...]
    example: Mapping[str, Any] | None = None


def find_slack_spec(corpora: str | os.PathLike[str] | None = None) -> Path | None:
    """Locate the Slack Web API description.

    An explicit `corpora` (the corpora folder, or the spec file itself) wins, then the
    `DEPLOYBOT_CORPORA` variable; either must exist. Otherwise `<repo>/../shared/corpora`
    is tried, and None is returned when there is no such folder (an installed package has no
    corpora).
    """
    root = corpora_dir(corpora)
    if root is None:
        return None
    candidate = root if root.is_file() else root / SPEC_RELATIVE_PATH
    if not candidate.is_file():
        raise FileNotFoundError(f"Slack Web API description not found at {candidate}")
    return candidate


@functools.lru_cache(maxsize=4)
def _load_contracts(spec_path: Path) -> dict[str, MethodContract]:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    contracts: dict[str, MethodContract] = {}
    for path, operations in spec["paths"].items():
        name = path.lstrip("/")
        for operation in operations.values():
            params = operation.get("parameters", [])
            ok = operation.get("responses", {}).get("200", {})
            required = tuple(
                p["name"] for p in params if p.get("required") and p["name"] != "token"
            )
            contracts[name] = MethodContract(
                name=name,
                # Slack takes the token in a header or an argument, so the description marks
                # it optional on some methods that still refuse anonymous calls.
                needs_token=any(p["name"] == "token" for p in params),
                required=_merge(required, _EXTRA_REQUIRED.get(name, ())),
                example=ok.get("examples", {}).get("application/json"),
            )
    return contracts


def _builtin_contracts() -> dict[str, MethodContract]:
    """The methods the emulator itself implements, for when no description is available."""
    return {
        name: MethodContract(name=name, needs_token=name != "api.test", required=required)
        for name, required in _HANDLER_REQUIRED.items()
    }


def _merge(*groups: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(name for group in groups for name in group))


# --------------------------------------------------------------------------- Block Kit


class _Problems:
    """Collects Block Kit problems in Slack's own wording: `<what> [json-pointer:<where>]`."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, pointer: str, problem: str) -> None:
        self.items.append(f"{problem} [json-pointer:{pointer}]")

    def text(
        self,
        obj: Any,
        pointer: str,
        *,
        limit: int,
        plain_only: bool = False,
        required: bool = True,
    ) -> None:
        if obj is None:
            if required:
                self.add(pointer, "missing required field")
            return
        if not isinstance(obj, dict):
            self.add(pointer, "must be a text object")
            return
        allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
        if obj.get("type") not in allowed:
            self.add(f"{pointer}/type", f"must be one of {', '.join(allowed)}")
        value = obj.get("text")
        if not isinstance(value, str) or not value:
            self.add(f"{pointer}/text", "must be a non-empty string")
        elif len(value) > limit:
            self.add(f"{pointer}/text", f"must be at most {limit} characters")

    def string(self, value: Any, pointer: str, *, limit: int, required: bool = False) -> None:
        if value is None:
            if required:
                self.add(pointer, "missing required field")
            return
        if not isinstance(value, str) or not value:
            self.add(pointer, "must be a non-empty string")
        elif len(value) > limit:
            self.add(pointer, f"must be at most {limit} characters")

    def array(self, value: Any, pointer: str, *, limit: int, minimum: int = 1) -> list[Any]:
        if not isinstance(value, list):
            self.add(pointer, "must be an array")
            return []
        if len(value) < minimum:
            self.add(pointer, f"must have at least {minimum} items")
        if len(value) > limit:
            self.add(pointer, f"no more than {limit} items allowed")
        return value


def block_kit_errors(
    blocks: Any, *, surface: str = "message", pointer: str = "/blocks"
) -> list[str]:
    """Check `blocks` against Block Kit's limits for a surface (`message`, `modal`, `home`).

    Returns Slack-style problem strings (empty when the blocks are valid). Pure, so Block
    Kit builders can be unit-tested with it directly.
    """
    problems = _Problems()
    items = problems.array(blocks, pointer, limit=MAX_BLOCKS[surface], minimum=0)
    block_ids: set[str] = set()
    for index, block in enumerate(items):
        _check_block(problems, block, f"{pointer}/{index}", block_ids)
    return problems.items


def _check_block(problems: _Problems, block: Any, at: str, block_ids: set[str]) -> None:
    if not isinstance(block, dict):
        problems.add(at, "must be an object")
        return
    kind = block.get("type")
    if kind not in BLOCK_TYPES:
        problems.add(f"{at}/type", f"unknown block type {kind!r}")
        return
    block_id = block.get("block_id")
    problems.string(block_id, f"{at}/block_id", limit=MAX_BLOCK_ID)
    if isinstance(block_id, str):
        if block_id in block_ids:
            problems.add(f"{at}/block_id", f"duplicate block_id {block_id!r}")
        block_ids.add(block_id)
    action_ids: set[str] = set()
    if kind == "section":
        if block.get("text") is None and block.get("fields") is None:
            problems.add(at, "must have text or fields")
        problems.text(block.get("text"), f"{at}/text", limit=MAX_SECTION_TEXT, required=False)
        if block.get("fields") is not None:
            fields = problems.array(block["fields"], f"{at}/fields", limit=MAX_SECTION_FIELDS)
            for i, item in enumerate(fields):
                problems.text(item, f"{at}/fields/{i}", limit=MAX_SECTION_FIELD)
        if block.get("accessory") is not None:
            _check_element(problems, block["accessory"], f"{at}/accessory", action_ids)
    elif kind == "context":
        elements = problems.array(
            block.get("elements"), f"{at}/elements", limit=MAX_CONTEXT_ELEMENTS
        )
        for i, element in enumerate(elements):
            if isinstance(element, dict) and element.get("type") == "image":
                _check_image(problems, element, f"{at}/elements/{i}")
            else:
                problems.text(element, f"{at}/elements/{i}", limit=MAX_CONTEXT_TEXT)
    elif kind == "actions":
        elements = problems.array(
            block.get("elements"), f"{at}/elements", limit=MAX_ACTIONS_ELEMENTS
        )
        for i, element in enumerate(elements):
            _check_element(problems, element, f"{at}/elements/{i}", action_ids)
    elif kind == "header":
        problems.text(block.get("text"), f"{at}/text", limit=MAX_HEADER_TEXT, plain_only=True)
    elif kind == "image":
        _check_image(problems, block, at)
        problems.text(
            block.get("title"), f"{at}/title", limit=MAX_ALT_TEXT, plain_only=True, required=False
        )
    elif kind == "input":
        problems.text(block.get("label"), f"{at}/label", limit=MAX_LABEL, plain_only=True)
        problems.text(
            block.get("hint"), f"{at}/hint", limit=MAX_LABEL, plain_only=True, required=False
        )
        if block.get("element") is None:
            problems.add(f"{at}/element", "missing required field")
        else:
            _check_element(problems, block["element"], f"{at}/element", action_ids)
    elif kind == "markdown":
        problems.string(
            block.get("text"), f"{at}/text", limit=MAX_MARKDOWN_BLOCK_TEXT, required=True
        )
    elif kind == "rich_text" and not isinstance(block.get("elements"), list):
        problems.add(f"{at}/elements", "must be an array")


def _check_image(problems: _Problems, image: dict[str, Any], at: str) -> None:
    if image.get("image_url") is None and image.get("slack_file") is None:
        problems.add(f"{at}/image_url", "missing required field")
    problems.string(image.get("image_url"), f"{at}/image_url", limit=MAX_URL)
    problems.string(image.get("alt_text"), f"{at}/alt_text", limit=MAX_ALT_TEXT, required=True)


def _check_element(problems: _Problems, element: Any, at: str, action_ids: set[str]) -> None:
    if not isinstance(element, dict):
        problems.add(at, "must be an object")
        return
    kind = element.get("type")
    if kind not in ELEMENT_TYPES:
        problems.add(f"{at}/type", f"unknown element type {kind!r}")
        return
    if kind == "image":
        _check_image(problems, element, at)
        return
    action_id = element.get("action_id")
    problems.string(action_id, f"{at}/action_id", limit=MAX_ACTION_ID)
    if isinstance(action_id, str):
        if action_id in action_ids:
            problems.add(f"{at}/action_id", f"duplicate action_id {action_id!r}")
        action_ids.add(action_id)
    if kind == "button":
        problems.text(element.get("text"), f"{at}/text", limit=MAX_BUTTON_TEXT, plain_only=True)
        problems.string(element.get("value"), f"{at}/value", limit=MAX_BUTTON_VALUE)
        problems.string(element.get("url"), f"{at}/url", limit=MAX_URL)
        if element.get("style") not in (None, "primary", "danger"):
            problems.add(f"{at}/style", "must be one of primary, danger")
    problems.text(
        element.get("placeholder"),
        f"{at}/placeholder",
        limit=MAX_PLACEHOLDER,
        plain_only=True,
        required=False,
    )
    if element.get("options") is not None:
        options = problems.array(element["options"], f"{at}/options", limit=MAX_OPTIONS)
        for i, option in enumerate(options):
            if not isinstance(option, dict):
                problems.add(f"{at}/options/{i}", "must be an object")
                continue
            problems.text(option.get("text"), f"{at}/options/{i}/text", limit=MAX_OPTION_TEXT)
            problems.string(option.get("value"), f"{at}/options/{i}/value", limit=MAX_OPTION_VALUE)
    if element.get("confirm") is not None:
        confirm = element["confirm"]
        if not isinstance(confirm, dict):
            problems.add(f"{at}/confirm", "must be an object")
            return
        for key, limit in MAX_CONFIRM.items():
            problems.text(
                confirm.get(key), f"{at}/confirm/{key}", limit=limit, plain_only=key != "text"
            )
        if confirm.get("style") not in (None, "primary", "danger"):
            problems.add(f"{at}/confirm/style", "must be one of primary, danger")


def view_errors(
    view: Any, *, kinds: Iterable[str] = ("modal", "home")
) -> tuple[list[str], list[str]]:
    """Check a view payload: returns (view-level problems, block problems)."""
    problems = _Problems()
    if not isinstance(view, dict):
        problems.add("/view", "must be an object")
        return problems.items, []
    kind = view.get("type")
    allowed = tuple(kinds)
    if kind not in allowed:
        problems.add("/view/type", f"must be one of {', '.join(allowed)}")
        return problems.items, []
    if kind == "modal":
        problems.text(view.get("title"), "/view/title", limit=MAX_VIEW_TITLE, plain_only=True)
        for key in ("submit", "close"):
            problems.text(
                view.get(key),
                f"/view/{key}",
                limit=MAX_VIEW_BUTTON,
                plain_only=True,
                required=False,
            )
        has_input = any(
            isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks") or ()
        )
        if has_input and view.get("submit") is None:
            problems.add("/view/submit", "required when the view has input blocks")
    problems.string(view.get("callback_id"), "/view/callback_id", limit=MAX_CALLBACK_ID)
    problems.string(view.get("external_id"), "/view/external_id", limit=MAX_CALLBACK_ID)
    if view.get("private_metadata"):
        problems.string(
            view.get("private_metadata"), "/view/private_metadata", limit=MAX_PRIVATE_METADATA
        )
    if view.get("blocks") is None:
        problems.add("/view/blocks", "missing required field")
        return problems.items, []
    return problems.items, block_kit_errors(view["blocks"], surface=kind, pointer="/view/blocks")


# --------------------------------------------------------------------------- records


@dataclass(frozen=True)
class SlackCall:
    """One request the emulator received, with what it answered."""

    method: str
    args: dict[str, Any]
    headers: dict[str, str]
    http_method: str
    status: int
    response: dict[str, Any]
    injected: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))


@dataclass(frozen=True)
class InvalidCall:
    """A request refused because it broke the Web API contract or Block Kit's rules."""

    method: str
    error: str
    errors: list[str]
    args: dict[str, Any]


@dataclass(frozen=True)
class SocketConnection:
    """A Socket Mode websocket the emulator accepted, as it stood when read."""

    id: str
    token: str  # the app-level token whose apps.connections.open issued the URL
    url: str
    hello: dict[str, Any]
    open: bool
    close_code: int | None = None


class _SocketLink:
    """A live Socket Mode websocket; everything but the records lives in the server's loop."""

    def __init__(
        self,
        *,
        link_id: str,
        token: str,
        url: str,
        websocket: WebSocket,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.id = link_id
        self.token = token
        self.url = url
        self.websocket = websocket
        self.loop = loop
        self.hello: dict[str, Any] = {}
        self.open = True
        self.close_code: int | None = None
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.send_lock = asyncio.Lock()

    def snapshot(self) -> SocketConnection:
        return SocketConnection(
            id=self.id,
            token=self.token,
            url=self.url,
            hello=copy.deepcopy(self.hello),
            open=self.open,
            close_code=self.close_code,
        )


@dataclass
class _ResponseHook:
    """A minted response_url: who and where it answers, and what it posted last."""

    channel: str
    user: str
    message_ts: str | None  # the message a block_actions click came from
    uses: int = 0
    last: tuple[str, str] | None = None  # ("message" | "ephemeral", ts) posted through it


@dataclass
class _Fault:
    status: int
    body: dict[str, Any]
    headers: dict[str, str]
    remaining: int


_GONE = frozenset({"expired_url", "used_url", "message_not_found"})  # response_url 404s


class _Refusal(Exception):
    def __init__(
        self,
        error: str,
        *,
        messages: Iterable[str] = (),
        errors: list[str] | None = None,
        violation: bool = True,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.messages = list(messages)
        self.errors = errors
        self.violation = violation

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ok": False, "error": self.error}
        if self.errors:
            body["errors"] = self.errors
        if self.messages:
            body["response_metadata"] = {"messages": self.messages}
        return body


# --------------------------------------------------------------------------- emulator


_HANDLER_REQUIRED: dict[str, tuple[str, ...]] = {
    "api.test": (),
    "auth.test": (),
    "apps.connections.open": (),
    "chat.postMessage": ("channel",),
    "chat.update": ("channel", "ts"),
    "chat.delete": ("channel", "ts"),
    "chat.postEphemeral": ("channel", "user"),
    "chat.getPermalink": ("channel", "message_ts"),
    "reactions.add": ("channel", "name", "timestamp"),
    "conversations.info": ("channel",),
    "conversations.history": ("channel",),
    "conversations.replies": ("channel", "ts"),
    "users.info": ("user",),
    "views.open": ("trigger_id", "view"),
    "views.push": ("trigger_id", "view"),
    "views.publish": ("user_id", "view"),
    "views.update": ("view",),
}


class SlackEmulator(LoopbackServer):
    """A Slack Web API on 127.0.0.1, recording calls and keeping channel state.

    Use it as a context manager (`with` or `async with`); `url` is the value for
    `SLACK_API_URL` / `base_url`. State is safe to read from the test's thread while the
    server answers in its own, and stays readable after `stop()`.
    """

    def __init__(
        self,
        *,
        bot_token: str = "xoxb-test",  # noqa: S107 (a fake token for a fake Slack)
        app_token: str = "xapp-test",  # noqa: S107
        corpora: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        ts_start: int = 1_700_000_000,
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.spec_path = find_slack_spec(corpora)
        if self.spec_path is None:
            logger.warning(
                "Slack Web API description not found (set %s); checking built-in methods only",
                CORPORA_ENV,
            )
            self._contracts = _builtin_contracts()
        else:
            self._contracts = _load_contracts(self.spec_path)
        self._users = {k: dict(v) for k, v in (users or {}).items()}
        self._ts_start = ts_start
        self._lock = threading.RLock()
        # Socket Mode: URLs issued (ticket -> app token) and connections, kept over `reset()`
        # while open (a connected app stays connected between tests).
        self._tickets: dict[str, str] = {}
        self._links: list[_SocketLink] = []
        self._reset_state()
        super().__init__(self._asgi_app(), host=host, port=port, thread_name="slack-emulator")

    # -- lifecycle (start, stop, serve_forever, `with`, `async with`): LoopbackServer

    @property
    def url(self) -> str:
        """The Web API base, ending in `/api/` (slack-sdk appends the method names)."""
        return f"{self.base_url}/api/"

    def _asgi_app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/api/{method:str}", self._endpoint, methods=["GET", "POST"]),
                Route("/_emulator/state", self._state_endpoint, methods=["GET"]),
                Route("/responses/{hook_id:str}", self._response_endpoint, methods=["POST"]),
                WebSocketRoute("/link/", self._socket_endpoint),
            ]
        )

    # -- what tests read

    @property
    def calls(self) -> list[SlackCall]:
        """Every request received, in order."""
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[SlackCall]:
        """The requests made to one Web API method, in order."""
        with self._lock:
            return [c for c in self._calls if c.method == method]

    @property
    def invalid_calls(self) -> list[InvalidCall]:
        """Requests refused for breaking the contract (not injected faults, not state errors)."""
        with self._lock:
            return list(self._invalid)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Channel messages as they stand now (after updates and deletes), in posting order."""
        with self._lock:
            return copy.deepcopy(self._messages)

    def thread(self, ts: str, channel: str | None = None) -> list[dict[str, Any]]:
        """A thread's parent followed by its replies."""
        with self._lock:
            return copy.deepcopy(
                [
                    m
                    for m in self._messages
                    if (channel is None or m["channel"] == channel)
                    and (m["ts"] == ts or m.get("thread_ts") == ts)
                ]
            )

    @property
    def ephemerals(self) -> list[dict[str, Any]]:
        """Ephemeral messages, which are never part of `messages`."""
        with self._lock:
            return copy.deepcopy(self._ephemerals)

    @property
    def socket_connections(self) -> list[SocketConnection]:
        """Socket Mode websockets accepted, oldest first (closed ones until `reset()`)."""
        with self._lock:
            return [link.snapshot() for link in self._links]

    @property
    def socket_envelopes(self) -> list[dict[str, Any]]:
        """Envelopes sent over Socket Mode, in order: `{"connection", "envelope", "ack"}`,
        `ack` being the app's answer (None while there is none)."""
        with self._lock:
            return copy.deepcopy(self._envelopes)

    @property
    def views(self) -> dict[str, dict[str, Any]]:
        """Modal views by view id, as last opened, pushed or updated."""
        with self._lock:
            return copy.deepcopy(self._views)

    @property
    def home_views(self) -> dict[str, dict[str, Any]]:
        """Published App Home views by user id."""
        with self._lock:
            return copy.deepcopy(self._home_views)

    def transcript(self, channel: str | None = None) -> str:
        """The channels as a person would read them: each message, its replies indented."""
        lines: list[str] = []
        for parent in self.messages:
            if parent.get("thread_ts") not in (None, parent["ts"]):
                continue
            if channel is not None and parent["channel"] != channel:
                continue
            lines.append(f"#{parent['channel']} {_render(parent)}")
            lines.extend(
                f"    ↳ {_render(reply)}"
                for reply in self.thread(parent["ts"], parent["channel"])
                if reply["ts"] != parent["ts"]
            )
        return "\n".join(lines)

    # -- what tests control

    def fail(
        self,
        method: str,
        *,
        status: int = 200,
        error: str | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` calls to `method` (`"*"`: any method) with a fault.

        `status=429` defaults to `{"ok": false, "error": "ratelimited"}` and `Retry-After: 1`;
        5xx to `{"ok": false, "error": "fatal_error"}`; `error="..."` alone gives that
        `ok: false` answer with status 200. `body` replaces the answer entirely.
        """
        if body is None:
            default = "ratelimited" if status == 429 else "fatal_error" if status >= 500 else None
            if error is None and default is None:
                raise ValueError("give an error, a body, or a 429/5xx status")
            body = {"ok": False, "error": error or default}
        fault_headers = dict(headers or {})
        if status == 429 and not any(k.lower() == "retry-after" for k in fault_headers):
            fault_headers["Retry-After"] = "1"
        with self._lock:
            self._faults.setdefault(method, []).append(
                _Fault(status=status, body=dict(body), headers=fault_headers, remaining=times)
            )

    def response_url(self, *, channel: str, user: str, message_ts: str | None = None) -> str:
        """Mint a `response_url` for a payload the test builds (a slash command from `user`
        in `channel`, or a block_actions click on the message at `message_ts`).

        What is POSTed there is checked like `chat.postMessage` and recorded: `in_channel`
        answers become `messages` (`invoked_by` the user), ephemeral ones (the default)
        `ephemerals` for the user; both carry `via: "response_url"`. `replace_original`
        replaces the clicked message (else the last answer through this URL) in place,
        `delete_original` deletes it. Up to `MAX_RESPONSE_URL_USES` answers, then 404.
        """
        hook_id = uuid.uuid4().hex
        with self._lock:
            self._hooks[hook_id] = _ResponseHook(channel=channel, user=user, message_ts=message_ts)
        return f"{self.base_url}/responses/{hook_id}"

    async def socket_send(
        self,
        type: str,
        payload: Mapping[str, Any],
        *,
        accepts_response_payload: bool | None = None,
        envelope_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
        seconds: float = SOCKET_ACK_SECONDS,
    ) -> dict[str, Any]:
        """Push one envelope to the newest open Socket Mode connection and return the app's
        ack (`{"envelope_id": ..., "payload"?: ...}`).

        Waits up to `seconds` for a connection, then as long again for the ack (Slack allows
        3 s): `ConnectionError` without a connection or when it closes first, `TimeoutError`
        without an ack. `accepts_response_payload` defaults to Slack's choice: true for slash
        commands, view submissions and block suggestions. Callable from any event loop.
        """
        if type not in SOCKET_ENVELOPE_TYPES:
            raise ValueError(f"envelope type must be one of {sorted(SOCKET_ENVELOPE_TYPES)}")
        if accepts_response_payload is None:
            accepts_response_payload = type == "slash_commands" or (
                type == "interactive" and payload.get("type") in _RESPONDING_INTERACTIONS
            )
        link = await self._open_link(seconds)
        envelope: dict[str, Any] = {
            "envelope_id": envelope_id or str(uuid.uuid4()),
            "type": type,
            "payload": copy.deepcopy(dict(payload)),
            "accepts_response_payload": accepts_response_payload,
        }
        if type == "events_api":
            envelope["retry_attempt"] = retry_attempt
            envelope["retry_reason"] = retry_reason
        record = {"connection": link.id, "envelope": envelope, "ack": None}
        with self._lock:
            self._envelopes.append(record)
            self._envelope_records[envelope["envelope_id"]] = record
        delivery = asyncio.run_coroutine_threadsafe(
            self._deliver(link, envelope, seconds), link.loop
        )
        return await asyncio.wrap_future(delivery)

    async def socket_disconnect(self, reason: str = "refresh_requested") -> int:
        """Send Slack's `disconnect` message (`refresh_requested`, `warning`, `link_disabled`)
        to every open connection; returns how many got it. The app is expected to reconnect
        through `apps.connections.open` and close the old socket itself."""
        with self._lock:
            links = [link for link in self._links if link.open]
        message = {"type": "disconnect", "reason": reason, "debug_info": {"host": _SOCKET_HOST}}
        for link in links:
            sent = asyncio.run_coroutine_threadsafe(self._send(link, message), link.loop)
            await asyncio.wrap_future(sent)
        return len(links)

    async def wait_for_socket_connection(self, seconds: float = 2.0) -> SocketConnection:
        """The newest open Socket Mode connection, waiting up to `seconds` for one."""
        return (await self._open_link(seconds)).snapshot()

    async def wait_for_socket_closed(self, seconds: float = 2.0) -> list[SocketConnection]:
        """Wait up to `seconds` until no Socket Mode connection is open (`TimeoutError`
        otherwise); returns the connections, all closed."""
        deadline = time.monotonic() + seconds
        while True:
            connections = self.socket_connections
            if not any(c.open for c in connections):
                return connections
            if time.monotonic() >= deadline:
                raise TimeoutError(f"a Socket Mode connection is still open after {seconds} s")
            await asyncio.sleep(0.01)

    def reset(self) -> None:
        """Forget calls, messages, views, pending faults, response URLs and closed Socket Mode
        connections (open ones stay usable)."""
        with self._lock:
            self._reset_state()
            self._links = [link for link in self._links if link.open]

    def _reset_state(self) -> None:
        self._calls: list[SlackCall] = []
        self._invalid: list[InvalidCall] = []
        self._faults: dict[str, list[_Fault]] = {}
        self._messages: list[dict[str, Any]] = []
        self._by_ts: dict[tuple[str, str], dict[str, Any]] = {}
        self._ephemerals: list[dict[str, Any]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._home_views: dict[str, dict[str, Any]] = {}
        self._hooks: dict[str, _ResponseHook] = {}
        self._envelopes: list[dict[str, Any]] = []
        self._envelope_records: dict[str, dict[str, Any]] = {}
        self._counter = 0

    # -- HTTP

    async def _endpoint(self, request: Request) -> JSONResponse:
        raw = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, body, extra = self.handle(
            request.path_params["method"],
            http_method=request.method,
            headers=headers,
            query=str(request.url.query),
            body=raw,
        )
        return JSONResponse(body, status_code=status, headers=extra)

    async def _state_endpoint(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {
                "messages": self.messages,
                "ephemerals": self.ephemerals,
                "invalid_calls": [dataclasses.asdict(c) for c in self.invalid_calls],
            }
        )

    def handle(
        self,
        method: str,
        *,
        http_method: str = "POST",
        headers: Mapping[str, str] | None = None,
        query: str = "",
        body: bytes = b"",
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Answer one Web API request: (HTTP status, JSON body, extra headers)."""
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        args, parse_error = _parse_args(query, headers.get("content-type", ""), body)
        token = _bearer(headers.get("authorization")) or _pop_token(args)
        with self._lock:
            fault = take_fault(self._faults, method)
            if fault is not None:
                self._record(method, args, headers, http_method, fault.status, fault.body, True)
                return fault.status, copy.deepcopy(fault.body), dict(fault.headers)
            try:
                if parse_error is not None:
                    raise _Refusal(parse_error)
                answer = self._answer(method, args, token)
            except _Refusal as refusal:
                answer = refusal.body()
                if refusal.violation:
                    self._invalid.append(
                        InvalidCall(
                            method=method,
                            error=refusal.error,
                            errors=list(refusal.errors or refusal.messages),
                            args=copy.deepcopy(args),
                        )
                    )
            self._record(method, args, headers, http_method, 200, answer, False)
            return 200, copy.deepcopy(answer), {}

    def _record(
        self,
        method: str,
        args: dict[str, Any],
        headers: dict[str, str],
        http_method: str,
        status: int,
        response: dict[str, Any],
        injected: bool,
    ) -> None:
        self._calls.append(
            SlackCall(
                method=method,
                args=copy.deepcopy(args),
                headers=dict(headers),
                http_method=http_method,
                status=status,
                response=copy.deepcopy(response),
                injected=injected,
            )
        )

    def _answer(self, method: str, args: dict[str, Any], token: str | None) -> dict[str, Any]:
        contract = self._contracts.get(method)
        if contract is None and method in _APP_TOKEN_METHODS:
            contract = MethodContract(name=method, needs_token=True, required=())
        if contract is None:
            raise _Refusal("unknown_method")
        self._authenticate(method, contract, token)
        required = _merge(contract.required, _HANDLER_REQUIRED.get(method, ()))
        missing = [name for name in required if args.get(name) in (None, "")]
        if missing:
            raise _Refusal(
                "invalid_arguments",
                messages=[f"[ERROR] missing required field: {name}" for name in missing],
            )
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is not None:
            return handler(args)
        return copy.deepcopy(dict(contract.example)) if contract.example else {"ok": True}

    def _authenticate(self, method: str, contract: MethodContract, token: str | None) -> None:
        if not contract.needs_token:
            return
        if not token:
            raise _Refusal("not_authed")
        wants_app_token = method in _APP_TOKEN_METHODS
        if token == (self.app_token if wants_app_token else self.bot_token):
            return
        if token in (self.app_token, self.bot_token):
            raise _Refusal("not_allowed_token_type")
        raise _Refusal("invalid_auth")

    def _next_ts(self) -> str:
        self._counter += 1
        seconds, step = divmod(self._counter, 10_000)
        return f"{self._ts_start + seconds}.{step * 100:06d}"

    # -- response_url

    async def _response_endpoint(self, request: Request) -> JSONResponse:
        status, body = self.handle_response(
            request.path_params["hook_id"], headers=dict(request.headers), body=await request.body()
        )
        return JSONResponse(body, status_code=status)

    def handle_response(
        self, hook_id: str, *, headers: Mapping[str, str] | None = None, body: bytes = b""
    ) -> tuple[int, dict[str, Any]]:
        """Answer one POST to a minted response_url: (HTTP status, JSON body).

        Recorded in `calls` as method `"response_url"`; refusals also in `invalid_calls`,
        except deleting an original that is gone.
        """
        headers = {k.lower(): v for k, v in (headers or {}).items()}
        try:
            decoded = json.loads(body or b"null")
        except ValueError:
            decoded = None
        args = decoded if isinstance(decoded, dict) else {}
        with self._lock:
            status = 200
            try:
                hook = self._hooks.get(hook_id)
                if hook is None:
                    raise _Refusal("expired_url")
                if hook.uses >= MAX_RESPONSE_URL_USES:
                    raise _Refusal("used_url")
                if not isinstance(decoded, dict):
                    raise _Refusal(
                        "invalid_payload", messages=["[ERROR] the body must be a JSON object"]
                    )
                answer = self._respond(hook, args)
                hook.uses += 1
            except _Refusal as refusal:
                answer = refusal.body()
                status = 404 if refusal.error in _GONE else 400
                if refusal.violation:
                    self._invalid.append(
                        InvalidCall(
                            method="response_url",
                            error=refusal.error,
                            errors=list(refusal.errors or refusal.messages),
                            args=copy.deepcopy(args),
                        )
                    )
            self._record("response_url", args, headers, "POST", status, answer, False)
            return status, copy.deepcopy(answer)

    def _respond(self, hook: _ResponseHook, args: dict[str, Any]) -> dict[str, Any]:
        response_type = args.get("response_type") or "ephemeral"
        if response_type not in _RESPONSE_TYPES:
            raise _Refusal(
                "invalid_payload",
                messages=[f"[ERROR] response_type must be one of {', '.join(_RESPONSE_TYPES)}"],
            )
        original = self._original_of(hook)
        delete = _truthy(args.get("delete_original"))
        self._check_message(args, require_content=not delete)  # before anything changes
        if delete:
            if original is None:
                raise _Refusal("message_not_found", violation=False)
            self._drop(original)
            hook.last = None
            if not (args.get("text") or args.get("blocks") or args.get("attachments")):
                return {"ok": True}
            original = None  # anything else in the body is posted as a new message
        if _truthy(args.get("replace_original")) and original is not None:
            original.update(
                text=args.get("text") or "",
                edited={"user": BOT_USER_ID, "ts": self._next_ts()},
            )
            for key in ("blocks", "attachments"):
                if args.get(key) is not None:
                    original[key] = args[key]
                else:
                    original.pop(key, None)  # a replacement is the whole message
            return {"ok": True}
        if response_type == "in_channel":
            message = self._post(hook.channel, args, via="response_url", invoked_by=hook.user)
            hook.last = ("message", message["ts"])
            return {"ok": True}
        ephemeral: dict[str, Any] = {
            "channel": hook.channel,
            "user": hook.user,
            "message_ts": self._next_ts(),
            "text": args.get("text") or "",
        }
        for key in ("blocks", "attachments", "thread_ts"):
            if args.get(key) is not None:
                ephemeral[key] = args[key]
        ephemeral["via"] = "response_url"
        self._ephemerals.append(ephemeral)
        hook.last = ("ephemeral", ephemeral["message_ts"])
        return {"ok": True}

    def _original_of(self, hook: _ResponseHook) -> dict[str, Any] | None:
        """The message a response_url acts on: the clicked one, else its last answer."""
        wanted = [("message", hook.message_ts), ("ephemeral", hook.message_ts)]
        candidates = wanted if hook.message_ts else [hook.last] if hook.last else []
        for kind, ts in candidates:
            if kind == "message":
                found = self._by_ts.get((hook.channel, ts))
            else:
                found = next(
                    (
                        e
                        for e in self._ephemerals
                        if e["channel"] == hook.channel and e["message_ts"] == ts
                    ),
                    None,
                )
            if found is not None:
                return found
        return None

    def _drop(self, message: dict[str, Any]) -> None:
        for records in (self._ephemerals, self._messages):
            for index, record in enumerate(records):
                if record is message:
                    del records[index]
                    break
        if "ts" in message:
            self._by_ts.pop((message["channel"], message["ts"]), None)

    # -- Socket Mode

    async def _socket_endpoint(self, websocket: WebSocket) -> None:
        ticket = websocket.query_params.get("ticket", "")
        with self._lock:
            token = self._tickets.get(ticket)
            if token is None:
                self._invalid.append(
                    InvalidCall(
                        method="socket_mode",
                        error="invalid_ticket",
                        errors=["[ERROR] connect to a URL from apps.connections.open"],
                        args={"ticket": ticket},
                    )
                )
        if token is None:
            await websocket.close(code=1008)  # before the handshake: a 403 to the client
            return
        link = _SocketLink(
            link_id=f"conn-{uuid.uuid4().hex[:12]}",
            token=token,
            url=str(websocket.url),
            websocket=websocket,
            loop=asyncio.get_running_loop(),
        )
        try:
            # Recorded before the handshake completes, so a client that has connected is
            # always listed; `hello` goes out before any envelope (the lock orders them).
            async with link.send_lock:
                with self._lock:
                    self._links.append(link)
                    link.hello = {
                        "type": "hello",
                        "num_connections": sum(1 for other in self._links if other.open),
                        "debug_info": {
                            "host": _SOCKET_HOST,
                            "build_number": 1,
                            "approximate_connection_time": 18060,
                        },
                        "connection_info": {"app_id": APP_ID},
                    }
                await websocket.accept()
                await websocket.send_json(link.hello)
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    link.close_code = message.get("code")
                    break
                raw = message.get("text")
                if raw is None and message.get("bytes") is not None:
                    raw = message["bytes"].decode("utf-8", "replace")
                self._take_ack(link, raw or "")
        finally:
            with self._lock:
                link.open = False
            for future in link.pending.values():
                if not future.done():
                    future.set_exception(
                        ConnectionError("the Socket Mode connection closed before the ack")
                    )

    async def _open_link(self, seconds: float) -> _SocketLink:
        deadline = time.monotonic() + seconds
        while True:
            with self._lock:
                links = [link for link in self._links if link.open and link.hello]
            if links:
                return links[-1]
            if time.monotonic() >= deadline:
                raise ConnectionError("no Socket Mode connection is open")
            await asyncio.sleep(0.01)

    @staticmethod
    async def _send(link: _SocketLink, message: dict[str, Any]) -> None:
        async with link.send_lock:
            await link.websocket.send_json(message)

    async def _deliver(
        self, link: _SocketLink, envelope: dict[str, Any], seconds: float
    ) -> dict[str, Any]:
        """In the server's loop: send one envelope and wait for its ack."""
        envelope_id = envelope["envelope_id"]
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        link.pending[envelope_id] = future
        try:
            await self._send(link, envelope)
            try:
                return await asyncio.wait_for(future, seconds)
            except TimeoutError:
                raise TimeoutError(
                    f"no ack for {envelope['type']} envelope {envelope_id} within {seconds} s"
                ) from None
        finally:
            link.pending.pop(envelope_id, None)

    def _take_ack(self, link: _SocketLink, raw: str) -> None:
        """In the server's loop: record what the app sent, and wake the sender of its envelope."""
        try:
            ack = json.loads(raw)
        except ValueError:
            ack = None
        with self._lock:
            if not isinstance(ack, dict):
                self._invalid.append(
                    InvalidCall(
                        method="socket_mode",
                        error="invalid_json",
                        errors=["[ERROR] the app sent a message that is not a JSON object"],
                        args={"message": raw[:2_000]},
                    )
                )
                return
            record = self._envelope_records.get(str(ack.get("envelope_id")))
            if record is None:
                self._invalid.append(
                    InvalidCall(
                        method="socket_mode",
                        error="unknown_envelope_id",
                        errors=["[ERROR] an ack must name an envelope_id Slack sent"],
                        args=copy.deepcopy(ack),
                    )
                )
                return
            record["ack"] = copy.deepcopy(ack)
            problems = _ack_problems(record["envelope"], ack)
            if problems:
                self._invalid.append(
                    InvalidCall(
                        method="socket_mode.ack",
                        error="invalid_ack",
                        errors=problems,
                        args=copy.deepcopy(ack),
                    )
                )
        future = link.pending.get(str(ack.get("envelope_id")))
        if future is not None and not future.done():
            future.set_result(copy.deepcopy(ack))

    # -- methods (named _m_<method with dots as underscores>)

    def _m_auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": TEAM_URL,
            "team": TEAM_NAME,
            "user": BOT_USER_NAME,
            "team_id": TEAM_ID,
            "user_id": BOT_USER_ID,
            "bot_id": BOT_ID,
            "is_enterprise_install": False,
        }

    def _m_api_test(self, args: dict[str, Any]) -> dict[str, Any]:
        if args.get("error"):
            return {"ok": False, "error": args["error"], "args": args}
        return {"ok": True, "args": args}

    def _m_apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        # Only reached with the app-level token (`_authenticate`); the ticket remembers it.
        ticket = str(uuid.uuid4())
        self._tickets[ticket] = self.app_token
        ws_root = self.base_url.replace("http://", "ws://", 1)
        return {"ok": True, "url": f"{ws_root}/link/?ticket={ticket}&app_id={APP_ID}"}

    def _m_chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        self._check_message(args, require_content=True)
        message = self._post(str(args["channel"]), args)
        public = {k: v for k, v in message.items() if k != "channel"}
        return {"ok": True, "channel": message["channel"], "ts": message["ts"], "message": public}

    def _m_chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        self._check_message(args, require_content=False)
        channel, ts = str(args["channel"]), str(args["ts"])
        message = self._message(channel, ts)
        for key in ("text", "blocks", "attachments", "metadata"):
            if args.get(key) is not None:
                message[key] = args[key]
        message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
        public = {k: v for k, v in message.items() if k not in ("channel", "ts", "edited")}
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": message["text"],
            "message": public,
        }

    def _m_chat_delete(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args["channel"]), str(args["ts"])
        message = self._message(channel, ts)
        self._messages.remove(message)
        del self._by_ts[(channel, ts)]
        return {"ok": True, "channel": channel, "ts": ts}

    def _m_chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        self._check_message(args, require_content=True)
        message_ts = self._next_ts()
        ephemeral = {
            "channel": str(args["channel"]),
            "user": str(args["user"]),
            "message_ts": message_ts,
            "text": args.get("text") or "",
        }
        for key in ("blocks", "attachments", "thread_ts"):
            if args.get(key) is not None:
                ephemeral[key] = args[key]
        self._ephemerals.append(ephemeral)
        return {"ok": True, "message_ts": message_ts}

    def _m_chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args["channel"]), str(args["message_ts"])
        message = self._message(channel, ts)
        link = f"{TEAM_URL}archives/{channel}/p{ts.replace('.', '')}"
        if message.get("thread_ts") not in (None, ts):
            link += f"?thread_ts={message['thread_ts']}&cid={channel}"
        return {"ok": True, "channel": channel, "permalink": link}

    def _m_reactions_add(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self._message(str(args["channel"]), str(args["timestamp"]))
        name = str(args["name"]).strip(":")
        reactions = message.setdefault("reactions", [])
        for reaction in reactions:
            if reaction["name"] == name:
                raise _Refusal("already_reacted", violation=False)
        reactions.append({"name": name, "users": [BOT_USER_ID], "count": 1})
        return {"ok": True}

    def _m_conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel_id = str(args["channel"])
        example = self._example("conversations.info").get("channel", {})
        info = {
            **example,
            "id": channel_id,
            "name": channel_id.lower(),
            "name_normalized": channel_id.lower(),
            "is_member": True,
            "is_private": channel_id.startswith("G"),
            "is_im": channel_id.startswith("D"),
        }
        return {"ok": True, "channel": info}

    def _m_conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        top_level = [
            self._public(m)
            for m in reversed(self._messages)
            if m["channel"] == channel and m.get("thread_ts") in (None, m["ts"])
        ]
        return {"ok": True, "messages": top_level, "has_more": False, "pin_count": 0}

    def _m_conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(args["channel"]), str(args["ts"])
        if (channel, ts) not in self._by_ts:
            raise _Refusal("thread_not_found", violation=False)
        thread = [
            self._public(m)
            for m in self._messages
            if m["channel"] == channel and (m["ts"] == ts or m.get("thread_ts") == ts)
        ]
        return {"ok": True, "messages": thread, "has_more": False}

    def _m_users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args["user"])
        name = user_id.lower()
        user = self._example("users.info").get("user", {})
        # The documented example is one specific person; make it this user throughout.
        user.update(id=user_id, name=name, real_name=name, team_id=TEAM_ID, is_admin=False)
        user["profile"] = {
            **user.get("profile", {}),
            "display_name": name,
            "display_name_normalized": name,
            "real_name": name,
            "real_name_normalized": name,
            "email": f"{name}@example.com",
            "team": TEAM_ID,
        }
        overrides = dict(self._users.get(user_id, {}))
        user["profile"].update(overrides.pop("profile", {}))
        user.update(overrides)
        return {"ok": True, "user": user}

    def _m_views_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "view": self._store_view(args["view"], kinds=("modal",))}

    def _m_views_push(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "view": self._store_view(args["view"], kinds=("modal",))}

    def _m_views_update(self, args: dict[str, Any]) -> dict[str, Any]:
        view_id, external_id = args.get("view_id"), args.get("external_id")
        if not view_id and not external_id:
            raise _Refusal(
                "invalid_arguments", messages=["[ERROR] view_id or external_id is required"]
            )
        current = next(
            (
                v
                for v in self._views.values()
                if v["id"] == view_id or (external_id and v.get("external_id") == external_id)
            ),
            None,
        )
        if current is None:
            raise _Refusal("not_found", violation=False)
        if args.get("hash") and args["hash"] != current["hash"]:
            raise _Refusal("hash_conflict", violation=False)
        return {"ok": True, "view": self._store_view(args["view"], kinds=("modal",), like=current)}

    def _m_views_publish(self, args: dict[str, Any]) -> dict[str, Any]:
        user_id = str(args["user_id"])
        current = self._home_views.get(user_id)
        if args.get("hash") and current is not None and args["hash"] != current["hash"]:
            raise _Refusal("hash_conflict", violation=False)
        view = self._store_view(args["view"], kinds=("home",), like=current, home_of=user_id)
        return {"ok": True, "view": view}

    # -- helpers for the methods

    def _post(self, channel: str, args: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Add a message from the bot to `channel` (a reply when `args` has `thread_ts`)."""
        ts = self._next_ts()
        message: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "ts": ts,
            "user": BOT_USER_ID,
            "bot_id": BOT_ID,
            "app_id": APP_ID,
            "team": TEAM_ID,
            "text": args.get("text") or "",
        }
        for key in ("blocks", "attachments", "metadata"):
            if args.get(key) is not None:
                message[key] = args[key]
        thread_ts = args.get("thread_ts")
        if thread_ts:
            message["thread_ts"] = str(thread_ts)
            parent = self._by_ts.get((channel, str(thread_ts)))
            if parent is not None:
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                parent["latest_reply"] = ts
        message.update(extra)
        self._messages.append(message)
        self._by_ts[(channel, ts)] = message
        return message

    def _message(self, channel: str, ts: str) -> dict[str, Any]:
        message = self._by_ts.get((channel, ts))
        if message is None:
            raise _Refusal("message_not_found", violation=False)
        return message

    def _example(self, method: str) -> dict[str, Any]:
        contract = self._contracts.get(method)
        return copy.deepcopy(dict(contract.example)) if contract and contract.example else {}

    @staticmethod
    def _public(message: dict[str, Any]) -> dict[str, Any]:
        return {k: copy.deepcopy(v) for k, v in message.items() if k not in _PRIVATE_KEYS}

    def _check_message(self, args: dict[str, Any], *, require_content: bool) -> None:
        text, blocks, attachments = args.get("text"), args.get("blocks"), args.get("attachments")
        if require_content and not text and not blocks and not attachments:
            raise _Refusal("no_text")
        if text is not None and len(str(text)) > MAX_MESSAGE_TEXT:
            raise _Refusal("msg_too_long")
        if blocks is None:
            return
        if isinstance(blocks, str):
            raise _Refusal("invalid_blocks_format")
        errors = block_kit_errors(blocks, surface="message")
        if errors:
            raise _Refusal(
                "invalid_blocks", errors=errors, messages=[f"[ERROR] {e}" for e in errors]
            )

    def _store_view(
        self,
        payload: Any,
        *,
        kinds: tuple[str, ...],
        like: dict[str, Any] | None = None,
        home_of: str | None = None,
    ) -> dict[str, Any]:
        if isinstance(payload, str):
            raise _Refusal("invalid_arguments", messages=["[ERROR] view must be a JSON object"])
        view_problems, block_problems = view_errors(payload, kinds=kinds)
        if view_problems:
            raise _Refusal("invalid_arguments", messages=[f"[ERROR] {e}" for e in view_problems])
        if block_problems:
            raise _Refusal(
                "invalid_blocks",
                errors=block_problems,
                messages=[f"[ERROR] {e}" for e in block_problems],
            )
        self._counter += 1
        view_id = like["id"] if like else f"V{self._counter:08d}"
        view = {
            "id": view_id,
            "team_id": TEAM_ID,
            "app_id": APP_ID,
            "bot_id": BOT_ID,
            "callback_id": "",
            "private_metadata": "",
            "external_id": "",
            "state": {"values": {}},
            "clear_on_close": False,
            "notify_on_close": False,
            "root_view_id": like.get("root_view_id", view_id) if like else view_id,
            "previous_view_id": None,
            **copy.deepcopy(payload),
            "hash": f"{self._ts_start + self._counter}.{uuid.uuid4().hex[:8]}",
        }
        if home_of is not None:
            self._home_views[home_of] = view
        else:
            self._views[view_id] = view
        return copy.deepcopy(view)


# --------------------------------------------------------------------------- parsing


def _parse_args(query: str, content_type: str, body: bytes) -> tuple[dict[str, Any], str | None]:
    args: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    kind = content_type.split(";", 1)[0].strip().lower()
    problem: str | None = None
    if kind == "application/json":
        try:
            decoded = json.loads(body or b"{}")
        except ValueError:
            return args, "invalid_json"
        if not isinstance(decoded, dict):
            return args, "json_not_object"
        args.update(decoded)
    elif kind in ("application/x-www-form-urlencoded", "") and body:
        try:
            args.update(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            problem = "invalid_charset"
    elif body:
        problem = "invalid_post_type"
    for name in _JSON_ARGS:
        value = args.get(name)
        if isinstance(value, str) and value[:1] in ("[", "{"):
            try:
                args[name] = json.loads(value)
            except ValueError:
                pass  # left as a string: the method refuses it in its own words
    return args, problem


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _ack_problems(envelope: Mapping[str, Any], ack: Mapping[str, Any]) -> list[str]:
    """What is wrong with the response an ack carries, in Block Kit's wording."""
    payload = ack.get("payload")
    if payload is None:
        return []
    if not isinstance(payload, dict):
        return ["payload must be an object [json-pointer:/payload]"]
    problems: list[str] = []
    if envelope["type"] == "slash_commands":
        if payload.get("response_type") not in (None, *_RESPONSE_TYPES):
            problems.append(
                f"must be one of {', '.join(_RESPONSE_TYPES)} [json-pointer:/payload/response_type]"
            )
        text = payload.get("text")
        if text is not None and len(str(text)) > MAX_MESSAGE_TEXT:
            problems.append(
                f"must be at most {MAX_MESSAGE_TEXT} characters [json-pointer:/payload/text]"
            )
        if payload.get("blocks") is not None:
            problems += block_kit_errors(payload["blocks"], pointer="/payload/blocks")
    elif payload.get("response_action") in ("update", "push"):
        view_problems, block_problems = view_errors(payload.get("view"), kinds=("modal",))
        problems += view_problems + block_problems
    return problems


def _bearer(header: str | None) -> str | None:
    if header and header.lower().startswith("bearer "):
        return header[7:].strip() or None
    return None


def _pop_token(args: dict[str, Any]) -> str | None:
    token = args.pop("token", None)
    return str(token) if token else None


def _render(message: Mapping[str, Any]) -> str:
    parts = [_render_block(b) for b in message.get("blocks") or ()]
    text = " | ".join(p for p in parts if p) or str(message.get("text", ""))
    if message.get("reactions"):
        text += " " + " ".join(f":{r['name']}:" for r in message["reactions"])
    return text


def _render_block(block: Mapping[str, Any]) -> str:
    def text_of(obj: Any) -> str:
        return str(obj.get("text", "")) if isinstance(obj, dict) else ""

    kind = block.get("type")
    if kind in ("section", "header"):
        pieces = [text_of(block.get("text"))] + [text_of(f) for f in block.get("fields") or ()]
        accessory = block.get("accessory")
        if isinstance(accessory, dict) and accessory.get("type") == "button":
            pieces.append(f"[{text_of(accessory.get('text'))}]")
        return " ".join(p for p in pieces if p)
    if kind == "context":
        return " · ".join(
            text_of(e) or f"[{e.get('alt_text', 'image')}]" for e in block.get("elements") or ()
        )
    if kind == "actions":
        return " ".join(
            f"[{text_of(e.get('text')) or e.get('type')}]" for e in block.get("elements") or ()
        )
    if kind == "image":
        return f"[image: {block.get('alt_text', '')}]"
    if kind == "markdown":
        return str(block.get("text", ""))
    return ""


# --------------------------------------------------------------------------- standalone


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.emulators.slack`: serve until interrupted."""
    parser = argparse.ArgumentParser(description="Slack Web API emulator on loopback")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3001, help="0 picks a free port")
    parser.add_argument("--bot-token", default="xoxb-test")
    parser.add_argument("--app-token", default="xapp-test")
    parser.add_argument("--corpora", default=None, help=f"corpora folder (or ${CORPORA_ENV})")
    options = parser.parse_args(argv)
    emulator = SlackEmulator(
        bot_token=options.bot_token,
        app_token=options.app_token,
        corpora=options.corpora,
        host=options.host,
        port=options.port,
    )
    try:
        emulator.serve_forever(
            lambda url: print(f"Slack emulator: SLACK_API_URL={url}", flush=True)
        )
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled
        pass


if __name__ == "__main__":
    main()
