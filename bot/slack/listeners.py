"""Slack listeners on a Bolt `AsyncApp`: acknowledge at once, work after the ack.

Each listener acks and hands the rest of its work to `AfterAck`; the app processes before it
responds (`process_before_response=True`), so the answer leaves as soon as the listener
returns. Bolt's other way, in HTTP mode, runs the listener in a task and has the request
poll for its `ack()` every 10 ms, which put 10 ms under every answer and let the work of a
burst of clicks crowd out the next acks.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import structlog
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.settings import Settings
from bot.slack import modals
from bot.slack.access import Access, Invocation
from bot.slack.actions import ButtonActions, Clicked
from bot.slack.blocks import ACTIONS
from bot.slack.commands import SlashCommands
from bot.slack.rollbacks import Rollbacks
from bot.slack.writes import SharedWrites
from integrations.github_app import GitHubApp
from storage import db

log = structlog.get_logger(__name__)

# Every button of CONTRACT §6, matched by one listener: Bolt asks each listener in turn
# whether a request is its own, and asking costs it the listener's arguments each time.
BUTTONS = re.compile(f"^(?:{'|'.join(map(re.escape, ACTIONS))})$")

# Work after acks runs this many pieces at a time: enough to overlap their waits on Slack,
# GitHub and the database, few enough that the event loop stays free for the next request.
AFTER_ACK_LIMIT = 16
# How long a shutdown waits for the work after acks: each ack told Slack it would be done.
AFTER_ACK_GRACE_SECONDS = 5.0


class AfterAck:
    """Work that listeners do once they have acked, in the order it came, at most `limit`
    pieces at a time. A piece waiting its turn is only a call to make (the coroutine is made
    when its turn comes), so a backlog of thousands of clicks stays small for the garbage
    collector, whose pauses would otherwise hold up the acks. A piece that fails is logged,
    as Bolt logs a listener that raises after its ack. A shutdown waits up to `grace`
    seconds for what was started (`close`)."""

    def __init__(
        self, *, limit: int = AFTER_ACK_LIMIT, grace: float = AFTER_ACK_GRACE_SECONDS
    ) -> None:
        self.limit = limit
        self.grace = grace
        self._waiting: deque[tuple[Callable[[], Awaitable[None]], str]] = deque()
        self._workers: set[asyncio.Task[None]] = set()
        self._running: dict[asyncio.Task[Any] | None, str] = {}  # by worker: its piece's name

    def start(self, work: Callable[[], Awaitable[None]], *, name: str) -> None:
        """Make `work()` when its turn comes."""
        self._waiting.append((work, name))
        if len(self._workers) < self.limit:
            worker = asyncio.get_running_loop().create_task(self._work(), name="slack-after-ack")
            self._workers.add(worker)  # the loop keeps only weak references to tasks
            worker.add_done_callback(self._workers.discard)

    @property
    def pending(self) -> int:
        """Pieces waiting for their turn."""
        return len(self._waiting)

    async def wait(self) -> None:
        """Until every piece started so far (and any they start) has finished."""
        while self._workers:
            await asyncio.gather(*self._workers, return_exceptions=True)

    async def close(self) -> None:
        """Until every piece started so far (and any they start) has finished, for at most
        `grace` seconds; then what still runs is cancelled, what waits is dropped, and both
        are logged by listener."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.grace
        while self._workers and (left := deadline - loop.time()) > 0:
            await asyncio.wait(list(self._workers), timeout=left)
        if not self._workers:
            return
        running = [self._running[w] for w in self._workers if w in self._running]
        dropped = Counter(running) + Counter(name for _, name in self._waiting)
        self._waiting.clear()
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        log.warning(
            "slack: shutdown dropped work after acks",
            grace_seconds=self.grace,
            cancelled=len(running),
            never_started=dropped.total() - len(running),
            listeners=dict(dropped),
        )

    async def _work(self) -> None:
        worker = asyncio.current_task()
        try:
            while self._waiting:
                work, name = self._waiting.popleft()
                self._running[worker] = name
                try:
                    await work()
                except Exception:
                    log.exception("slack: the work after an ack failed", listener=name)
        finally:
            self._running.pop(worker, None)


def web_client(settings: Settings, *, retry_connections: bool = True) -> AsyncWebClient:
    """The bot's Web API client: `SLACK_API_URL`, retrying 429s and (`retry_connections`)
    connection errors."""
    handlers: list[AsyncRetryHandler] = [AsyncRateLimitErrorRetryHandler(max_retry_count=3)]
    if retry_connections:
        handlers.insert(0, AsyncConnectionErrorRetryHandler(max_retry_count=2))
    return AsyncWebClient(
        token=settings.slack_bot_token.get_secret_value(),
        base_url=settings.slack_api_url,
        retry_handlers=handlers,
    )


def reading(sessions: async_sessionmaker[AsyncSession]) -> async_sessionmaker[AsyncSession]:
    """Sessions like `sessions` for reading only. On SQLite they begin deferred, beside the
    writer, where every other transaction begins by taking the one write lock: a click's
    look-ups would otherwise wait in line with every write of the service."""
    return db.read_sessions(sessions.kw["bind"])


class SlackApp(AsyncApp):
    """The Bolt app, with the work its listeners leave for after their acks (`after_ack`),
    which a shutdown waits for."""

    def __init__(self, *, after_ack: AfterAck, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.after_ack = after_ack


def build_slack_app(
    settings: Settings,
    client: AsyncWebClient,
    *,
    sessions: async_sessionmaker[AsyncSession],
    github: GitHubApp,
    on_change: Callable[[], None],
    after_ack: AfterAck | None = None,
) -> SlackApp:
    """The Bolt app with every listener registered. Request signatures are checked by the
    HTTP route (`bot.slack.ingress`) before Bolt sees a request, so Bolt does not check
    them again; over Socket Mode there are none."""
    signing_secret = settings.slack_signing_secret
    after_ack = after_ack or AfterAck()
    app = SlackApp(
        after_ack=after_ack,
        client=client,
        signing_secret=signing_secret.get_secret_value() if signing_secret else None,
        request_verification_enabled=False,
        # Listeners ack and return at once; their work goes on in `AfterAck`.
        process_before_response=True,
    )
    readers = reading(sessions)
    writes = SharedWrites(sessions)
    access = Access(
        sessions=sessions,
        github=github,
        config_path=settings.deploybot_config_path,
        readers=readers,
    )
    rollbacks = Rollbacks(
        access=access, sessions=sessions, on_change=on_change, readers=readers, writes=writes
    )
    commands = SlashCommands(
        access=access,
        rollbacks=rollbacks,
        sessions=sessions,
        on_change=on_change,
        readers=readers,
    )
    buttons = ButtonActions(
        sessions=sessions,
        github=github,
        on_change=on_change,
        access=access,
        rollbacks=rollbacks,
        readers=readers,
        writes=writes,
    )
    register(app, buttons, commands, rollbacks, after_ack)
    return app


def register(
    app: AsyncApp,
    buttons: ButtonActions,
    commands: SlashCommands,
    rollbacks: Rollbacks,
    after_ack: AfterAck,
) -> None:
    @app.action(BUTTONS)
    async def button(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any) -> None:
        await ack()
        clicked = Clicked.of(body)  # not the whole payload: the clicked message is large
        after_ack.start(partial(buttons.click, clicked, action, client), name="button")

    @app.command("/deploy")
    async def deploy_command(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        invocation = Invocation.from_command(command)
        answer = commands.immediate(command.get("text") or "")
        if answer is not None:
            await ack(response_type="ephemeral", text=answer)
            after_ack.start(partial(commands.audit_malformed, invocation), name="/deploy")
            return
        await ack()
        after_ack.start(partial(commands.run, invocation, client), name="/deploy")

    @app.view(modals.CONFIRM)
    async def confirmed(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        invocation = Invocation.confirmed_from(
            modals.read_metadata(body.get("view") or {}), user=body["user"]["id"]
        )
        if invocation is not None:
            after_ack.start(partial(commands.run, invocation, client), name="confirmed")

    @app.view(modals.ROLLBACK)
    async def rollback_chosen(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        view = body.get("view") or {}
        target = modals.chosen_target(view)
        if target is None:
            await ack(
                response_action="errors",
                errors={modals.TARGET_BLOCK: "Choose the commit to roll back to."},
            )
            return
        await ack()
        chosen = partial(
            rollbacks.choose,
            user=body["user"]["id"],
            meta=modals.read_metadata(view),
            target=target,
            client=client,
        )
        after_ack.start(chosen, name="rollback chosen")

    @app.event("app_home_opened")
    async def app_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        # Events are acked by Bolt once this returns: the tab is drawn after that.
        if event.get("tab") == "home":
            after_ack.start(partial(publish_home, client, event["user"]), name="app_home_opened")

    async def publish_home(client: AsyncWebClient, user: str) -> None:
        await client.views_publish(user_id=user, view=await commands.access.home(user))
