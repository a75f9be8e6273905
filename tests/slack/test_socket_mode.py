"""Socket Mode end to end: the real app (lifespan, Bolt's aiohttp Socket Mode client) connects
to the Slack emulator's websocket through `SLACK_API_URL`, and the emulator pushes envelopes
the way Slack does and reads the acks back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from fastapi import FastAPI

from bot.app import _start_socket_mode, create_app
from integrations.emulators.github import GitHubEmulator
from integrations.emulators.slack import SlackEmulator
from tests.conftest import BOT_TOKEN, CORPORA

APP_TOKEN = "xapp-1-A0DEPLOYBOT-1-socketmodetest"
CHANNEL = "C0DEPLOYS"
USER = "U0ALICE"


@pytest.fixture(scope="module")
def slack_server() -> Iterator[SlackEmulator]:
    with SlackEmulator(bot_token=BOT_TOKEN, app_token=APP_TOKEN) as emulator:
        yield emulator


@pytest.fixture
async def running(
    make_settings, database_url: str, slack: SlackEmulator, github: GitHubEmulator
) -> AsyncIterator[FastAPI]:
    """The app in Socket Mode, started; its lifespan ends when the test does."""
    settings = make_settings(
        DATABASE_URL=database_url,
        SLACK_API_URL=slack.url,
        SLACK_APP_TOKEN=APP_TOKEN,
        GITHUB_API_URL=github.url,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


def slash_command(text: str, response_url: str) -> dict[str, Any]:
    """A `/deploy` payload shaped like the corpus sample, blanks filled in (Socket Mode
    carries it as JSON, not as a form)."""
    shape = json.loads(
        (CORPORA / "slack-payload-shapes/slash-commands/SlashCommandPayload.json").read_text()
    )
    return {
        **shape,
        "token": "unused-in-socket-mode",
        "api_app_id": "A0DEPLOYBOT",
        "team_id": "T0EMULATOR",
        "team_domain": "emulator",
        "enterprise_id": "",
        "enterprise_name": "",
        "channel_id": CHANNEL,
        "channel_name": "deploys",
        "user_id": USER,
        "user_name": "alice",
        "command": "/deploy",
        "text": text,
        "response_url": response_url,
        "trigger_id": "1.2.3",
    }


def button_click(value: str, response_url: str) -> dict[str, Any]:
    """A block_actions payload shaped like the corpus sample: Approve on a message."""
    shape = json.loads(
        (
            CORPORA / "slack-payload-shapes/interactive-components/BlockActionPayload.json"
        ).read_text()
    )
    button = {
        "type": "button",
        "action_id": "approve",
        "block_id": "decide",
        "text": {"type": "plain_text", "text": "Approve", "emoji": True},
        "value": value,
        "action_ts": "1700000001.000200",
    }
    return {
        **shape,
        "type": "block_actions",
        "team": {"id": "T0EMULATOR", "domain": "emulator"},
        "user": {"id": USER, "username": "alice", "name": "alice", "team_id": "T0EMULATOR"},
        "api_app_id": "A0DEPLOYBOT",
        "container": {
            "type": "message",
            "message_ts": "1700000000.000100",
            "channel_id": CHANNEL,
            "is_ephemeral": False,
        },
        "trigger_id": "1.2.3",
        "channel": {"id": CHANNEL, "name": "deploys"},
        "message": {
            "type": "message",
            "ts": "1700000000.000100",
            "user": "U0DEPLOYBOT",
            "text": "acme/api: approve production?",
            "blocks": [{"type": "actions", "block_id": "decide", "elements": [button]}],
        },
        "response_url": response_url,
        "actions": [button],
    }


async def test_the_app_connects_with_the_app_token_through_slack_api_url(
    running: FastAPI, slack: SlackEmulator
) -> None:
    connection = await slack.wait_for_socket_connection()
    assert connection.token == APP_TOKEN
    assert connection.open and connection.hello["type"] == "hello"
    (call,) = slack.calls_to("apps.connections.open")
    assert call.ok and call.headers["authorization"] == f"Bearer {APP_TOKEN}"
    assert len(slack.socket_connections) == 1


async def test_deploy_help_over_socket_mode_is_acked_with_the_usage(
    running: FastAPI, slack: SlackEmulator
) -> None:
    url = slack.response_url(channel=CHANNEL, user=USER)
    ack = await slack.socket_send("slash_commands", slash_command("help", url))

    assert ack["payload"]["response_type"] == "ephemeral"
    assert "/deploy subscribe &lt;owner/repo&gt;" in ack["payload"]["text"]
    assert slack.socket_envelopes[0]["ack"] == ack
    assert slack.invalid_calls == []


async def test_a_button_click_over_socket_mode_is_acked_then_handled(
    running: FastAPI, slack: SlackEmulator
) -> None:
    url = slack.response_url(channel=CHANNEL, user=USER, message_ts="1700000000.000100")
    ack = await slack.socket_send("interactive", button_click("rollout:999999", url))

    (envelope,) = slack.socket_envelopes
    assert ack == {"envelope_id": envelope["envelope"]["envelope_id"]}
    assert envelope["envelope"]["accepts_response_payload"] is False
    # Handled after the ack: the clicker hears that nothing changed (an unknown rollout).
    # Waiting for it also keeps the listener from outliving the lifespan.
    for _ in range(200):
        if slack.ephemerals:
            break
        await asyncio.sleep(0.01)
    (told,) = slack.ephemerals
    assert told["user"] == USER and told["channel"] == CHANNEL
    assert slack.invalid_calls == []


async def test_shutdown_closes_the_connection(
    make_settings, database_url: str, slack: SlackEmulator, github: GitHubEmulator
) -> None:
    settings = make_settings(
        DATABASE_URL=database_url,
        SLACK_API_URL=slack.url,
        SLACK_APP_TOKEN=APP_TOKEN,
        GITHUB_API_URL=github.url,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert (await slack.wait_for_socket_connection()).open
    (connection,) = await slack.wait_for_socket_closed()
    assert connection.close_code == 1000  # a normal close from the app, not a dropped socket
    with pytest.raises(ConnectionError):
        await slack.socket_send("events_api", {"event": {"type": "app_home_opened"}}, seconds=0.1)


async def test_an_app_token_slack_refuses_stops_the_start_up(
    make_settings, slack: SlackEmulator
) -> None:
    # slack-sdk alone would retry apps.connections.open forever and the lifespan would hang.
    settings = make_settings(SLACK_API_URL=slack.url, SLACK_APP_TOKEN="xapp-1-A0-1-revoked")
    app = create_app(settings)
    with pytest.raises(RuntimeError, match="invalid_auth"):
        await asyncio.wait_for(_start_socket_mode(settings, app.state.services.slack), 2)
    (call,) = slack.calls_to("apps.connections.open")
    assert call.response["error"] == "invalid_auth"
    assert slack.socket_connections == []
