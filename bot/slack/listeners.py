"""Slack listeners on a Bolt `AsyncApp`: acknowledge at once, work after the ack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
from bot.slack.actions import ButtonActions
from bot.slack.commands import SlashCommands
from bot.slack.rollbacks import Rollbacks
from integrations.github_app import GitHubApp


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


def build_slack_app(
    settings: Settings,
    client: AsyncWebClient,
    *,
    sessions: async_sessionmaker[AsyncSession],
    github: GitHubApp,
    on_change: Callable[[], None],
) -> AsyncApp:
    """The Bolt app with every listener registered; request signatures are always checked."""
    signing_secret = settings.slack_signing_secret
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret.get_secret_value() if signing_secret else None,
        request_verification_enabled=signing_secret is not None,
        process_before_response=False,
    )
    access = Access(sessions=sessions, github=github, config_path=settings.deploybot_config_path)
    rollbacks = Rollbacks(access=access, sessions=sessions, on_change=on_change)
    commands = SlashCommands(
        access=access, rollbacks=rollbacks, sessions=sessions, on_change=on_change
    )
    buttons = ButtonActions(
        sessions=sessions,
        github=github,
        on_change=on_change,
        access=access,
        rollbacks=rollbacks,
    )
    register(app, buttons, commands, rollbacks)
    return app


def register(
    app: AsyncApp, buttons: ButtonActions, commands: SlashCommands, rollbacks: Rollbacks
) -> None:
    @app.action("approve")
    @app.action("reject")
    @app.action("rollback")
    @app.action("promote")
    @app.action("pause")
    @app.action("resume")
    async def button(ack: Any, body: dict[str, Any], action: dict[str, Any], client: Any) -> None:
        await ack()
        await buttons.click(body=body, action=action, client=client)

    @app.command("/deploy")
    async def deploy_command(ack: Any, command: dict[str, Any], client: AsyncWebClient) -> None:
        answer = commands.immediate(command.get("text") or "")
        if answer is not None:
            await ack(response_type="ephemeral", text=answer)
            await commands.audit_malformed(Invocation.from_command(command))
            return
        await ack()
        await commands.run(Invocation.from_command(command), client)

    @app.view(modals.CONFIRM)
    async def confirmed(ack: Any, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        invocation = Invocation.confirmed_from(
            modals.read_metadata(body.get("view") or {}), user=body["user"]["id"]
        )
        if invocation is not None:
            await commands.run(invocation, client)

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
        await rollbacks.choose(
            user=body["user"]["id"], meta=modals.read_metadata(view), target=target, client=client
        )

    @app.event("app_home_opened")
    async def app_home_opened(event: dict[str, Any], client: AsyncWebClient) -> None:
        if event.get("tab") == "home":
            await client.views_publish(
                user_id=event["user"], view=await commands.access.home(event["user"])
            )
