"""The Slack emulator, driven over real HTTP by slack-sdk's own clients."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import aiohttp
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_async_handlers
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from integrations.emulators.slack import (
    CORPORA_ENV,
    MAX_RESPONSE_URL_USES,
    SlackEmulator,
    block_kit_errors,
    find_slack_spec,
)

TOKEN = "xoxb-test"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def running_emulator():
    # One server for the module (starting and stopping one costs ~0.1 s); each test
    # starts from a reset state, which test_reset_forgets_everything checks.
    with SlackEmulator(bot_token=TOKEN) as emulator:
        yield emulator


@pytest.fixture
def slack(running_emulator):
    running_emulator.reset()
    return running_emulator


@pytest.fixture
def no_jitter(monkeypatch):
    """slack-sdk adds up to 1 s of random jitter to each retry; tests don't need to wait."""
    monkeypatch.setattr(builtin_async_handlers.random, "random", lambda: 0.0)


@pytest.fixture
def client(slack):
    return AsyncWebClient(token=TOKEN, base_url=slack.url)


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(label: str, action_id: str = "approve") -> dict:
    return {
        "type": "button",
        "text": {"type": "plain_text", "text": label},
        "action_id": action_id,
        "value": "r1",
    }


async def error_of(call) -> SlackApiError:
    with pytest.raises(SlackApiError) as caught:
        await call
    return caught.value


def test_loads_the_web_api_description_from_the_shared_corpora(slack):
    assert slack.spec_path is not None
    assert slack.spec_path.name == "slack_web_openapi_v2.json"
    assert slack.url.startswith("http://127.0.0.1:")
    assert slack.url.endswith("/api/")


async def test_auth_test_answers_the_documented_shape(slack, client):
    response = await client.auth_test()

    assert response["ok"] is True
    for key in ("url", "team", "user", "team_id", "user_id", "bot_id"):
        assert response[key]
    [call] = slack.calls_to("auth.test")
    assert call.headers["authorization"] == f"Bearer {TOKEN}"
    assert call.ok


async def test_a_thread_reads_back_as_posted_and_updated(slack, client):
    parent = await client.chat_postMessage(
        channel="C0DEPLOY", text="acme/api #12", blocks=[section("*acme/api* #12: stage ⏳")]
    )
    reply = await client.chat_postMessage(
        channel="C0DEPLOY", thread_ts=parent["ts"], text="stage: deploying abc123"
    )
    await client.chat_update(
        channel="C0DEPLOY", ts=parent["ts"], text="acme/api #12", blocks=[section("stage ✅")]
    )

    assert parent["channel"] == "C0DEPLOY"
    assert parent["message"]["text"] == "acme/api #12"
    assert parent["ts"] < reply["ts"]
    assert len({parent["ts"], reply["ts"]}) == 2
    assert [m["text"] for m in slack.messages] == ["acme/api #12", "stage: deploying abc123"]

    thread = slack.thread(parent["ts"])
    assert [m["ts"] for m in thread] == [parent["ts"], reply["ts"]]
    assert thread[0]["blocks"] == [section("stage ✅")]
    assert thread[1]["thread_ts"] == parent["ts"]

    replies = await client.conversations_replies(channel="C0DEPLOY", ts=parent["ts"])
    assert [m["ts"] for m in replies["messages"]] == [parent["ts"], reply["ts"]]
    assert slack.transcript() == "#C0DEPLOY stage ✅\n    ↳ stage: deploying abc123"
    assert slack.invalid_calls == []


async def test_update_of_an_unknown_message_is_refused(client):
    error = await error_of(client.chat_update(channel="C1", ts="1.000001", text="x"))
    assert error.response["error"] == "message_not_found"


async def test_ephemeral_messages_stay_out_of_the_channel(slack, client):
    response = await client.chat_postEphemeral(
        channel="C0DEPLOY", user="U0ALICE", text="usage: /deploy help"
    )

    assert response["ok"] is True
    assert response["message_ts"]
    assert slack.messages == []
    [ephemeral] = slack.ephemerals
    assert ephemeral["user"] == "U0ALICE"
    assert ephemeral["text"] == "usage: /deploy help"


async def test_unknown_method(slack, client):
    error = await error_of(client.api_call("chat.postMessag", json={"channel": "C1"}))

    assert error.response["error"] == "unknown_method"
    assert [c.error for c in slack.invalid_calls] == ["unknown_method"]


async def test_missing_required_argument(slack, client):
    error = await error_of(client.api_call("chat.postMessage", json={"text": "hi"}))

    assert error.response["error"] == "invalid_arguments"
    assert error.response["response_metadata"]["messages"] == [
        "[ERROR] missing required field: channel"
    ]
    assert slack.invalid_calls[0].method == "chat.postMessage"


def test_missing_required_argument_form_encoded(slack):
    sync = WebClient(token=TOKEN, base_url=slack.url)
    with pytest.raises(SlackApiError) as caught:
        sync.api_call("reactions.add", params={"channel": "C1", "name": "eyes"})

    assert caught.value.response["error"] == "invalid_arguments"
    [call] = slack.calls_to("reactions.add")
    assert call.headers["content-type"].startswith("application/x-www-form-urlencoded")


async def test_message_without_text_or_blocks(client):
    error = await error_of(client.api_call("chat.postMessage", json={"channel": "C1"}))
    assert error.response["error"] == "no_text"


@pytest.mark.parametrize(
    ("token", "expected"),
    [(None, "not_authed"), ("xoxb-wrong", "invalid_auth"), ("xapp-test", "not_allowed_token_type")],
)
async def test_bad_tokens(slack, token, expected):
    client = AsyncWebClient(token=token, base_url=slack.url)
    error = await error_of(client.auth_test())
    assert error.response["error"] == expected


def test_token_as_an_argument_is_accepted(slack):
    sync = WebClient(base_url=slack.url)
    assert sync.api_call("auth.test", params={"token": TOKEN})["ok"] is True
    assert "token" not in slack.calls_to("auth.test")[0].args


@pytest.mark.parametrize(
    ("blocks", "pointer"),
    [
        ([section(f"line {i}") for i in range(51)], "/blocks"),
        ([{"type": "actions", "elements": [button("x" * 76)]}], "/blocks/0/elements/0/text/text"),
        ([section("x" * 3001)], "/blocks/0/text/text"),
        ([{"type": "context", "elements": [{"type": "mrkdwn", "text": "y" * 3001}]}], "/blocks/0"),
        ([{"type": "actions", "elements": [button("ok", "a" * 256)]}], "/action_id"),
        ([{"type": "section", "block_id": "b" * 256, "text": {"type": "mrkdwn", "text": "t"}}],
         "/block_id"),
        ([{"type": "carousel"}], "/blocks/0/type"),
    ],
    ids=["51-blocks", "76-char-label", "3001-char-text", "3001-char-context", "action_id-256",
         "block_id-256", "unknown-type"],
)  # fmt: skip
async def test_block_kit_violations_are_refused_and_recorded(slack, client, blocks, pointer):
    error = await error_of(client.chat_postMessage(channel="C1", text="t", blocks=blocks))

    assert error.response["error"] == "invalid_blocks"
    assert any(pointer in e for e in error.response["errors"]), error.response["errors"]
    assert slack.messages == []
    [invalid] = slack.invalid_calls
    assert invalid.error == "invalid_blocks"
    assert invalid.args["blocks"] == blocks


async def test_block_kit_limits_themselves_are_allowed(slack, client):
    at_the_limits = [section("x" * 3000) for _ in range(49)] + [
        {"type": "actions", "elements": [button("y" * 75, "z" * 255)]}
    ]

    await client.chat_postMessage(channel="C1", text="t", blocks=at_the_limits)

    assert slack.invalid_calls == []


async def test_invalid_blocks_in_an_update(slack, client):
    posted = await client.chat_postMessage(channel="C1", text="t")
    error = await error_of(
        client.chat_update(channel="C1", ts=posted["ts"], text="t", blocks=[section("x" * 3001)])
    )
    assert error.response["error"] == "invalid_blocks"
    assert slack.messages[0]["text"] == "t"


def test_block_kit_errors_is_usable_without_a_server():
    assert block_kit_errors([section("ok")]) == []
    duplicate = [
        {"type": "actions", "block_id": "b", "elements": [button("A"), button("B")]},
        {"type": "divider", "block_id": "b"},
    ]
    problems = block_kit_errors(duplicate)
    assert any("duplicate action_id" in p for p in problems)
    assert any("duplicate block_id" in p for p in problems)
    assert block_kit_errors([section("x")] * 60, surface="modal") == []


async def test_modal_and_home_views(slack, client):
    modal = {
        "type": "modal",
        "callback_id": "reject",
        "title": {"type": "plain_text", "text": "Reject production"},
        "submit": {"type": "plain_text", "text": "Reject"},
        "blocks": [
            {
                "type": "input",
                "block_id": "reason",
                "label": {"type": "plain_text", "text": "Reason"},
                "element": {"type": "plain_text_input", "action_id": "reason"},
            }
        ],
    }
    opened = await client.views_open(trigger_id="123.456", view=modal)
    updated = await client.views_update(
        view_id=opened["view"]["id"], view={**modal, "private_metadata": "rollout-1"}
    )
    home = await client.views_publish(
        user_id="U0ALICE", view={"type": "home", "blocks": [section("x")] * 100}
    )

    assert updated["view"]["id"] == opened["view"]["id"]
    assert slack.views[opened["view"]["id"]]["private_metadata"] == "rollout-1"
    assert home["view"]["type"] == "home"
    assert len(slack.home_views["U0ALICE"]["blocks"]) == 100

    too_many = await error_of(
        client.views_publish(
            user_id="U0ALICE", view={"type": "home", "blocks": [section("x")] * 101}
        )
    )
    assert too_many.response["error"] == "invalid_blocks"
    long_title = await error_of(
        client.views_open(
            trigger_id="1", view={**modal, "title": {"type": "plain_text", "text": "t" * 25}}
        )
    )
    assert long_title.response["error"] == "invalid_arguments"
    assert len(slack.invalid_calls) == 2


async def test_reactions_permalinks_and_lookups(slack, client):
    posted = await client.chat_postMessage(channel="C1", text="t")

    await client.reactions_add(channel="C1", name="eyes", timestamp=posted["ts"])
    again = await error_of(client.reactions_add(channel="C1", name="eyes", timestamp=posted["ts"]))
    link = await client.chat_getPermalink(channel="C1", message_ts=posted["ts"])
    channel = await client.conversations_info(channel="C1")
    user = await client.users_info(user="U0ALICE")

    assert slack.messages[0]["reactions"] == [
        {"name": "eyes", "users": ["U0DEPLOYBOT"], "count": 1}
    ]
    assert again.response["error"] == "already_reacted"
    assert link["permalink"].endswith("/archives/C1/p" + posted["ts"].replace(".", ""))
    assert channel["channel"]["id"] == "C1"
    assert user["user"]["id"] == "U0ALICE"
    # A state error is not a contract violation.
    assert slack.invalid_calls == []


async def test_socket_mode_connection_url_needs_the_app_token(slack):
    app_client = AsyncWebClient(token="xapp-test", base_url=slack.url)
    opened = await app_client.apps_connections_open(app_token="xapp-test")
    assert opened["url"].startswith(f"ws://127.0.0.1:{slack.port}/link/?ticket=")

    bot_client = AsyncWebClient(token=TOKEN, base_url=slack.url)
    error = await error_of(bot_client.apps_connections_open(app_token=TOKEN))
    assert error.response["error"] == "not_allowed_token_type"
    error = await error_of(bot_client.apps_connections_open(app_token="xapp-someone-else"))
    assert error.response["error"] == "invalid_auth"


async def test_other_documented_methods_answer_their_example(client):
    response = await client.api_call("team.info")
    assert response["ok"] is True
    assert "team" in response


async def test_rate_limit_is_retried_by_slack_sdk(slack, no_jitter):
    slack.fail("chat.postMessage", status=429, headers={"Retry-After": "0"}, times=2)
    client = AsyncWebClient(
        token=TOKEN,
        base_url=slack.url,
        retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
    )

    response = await client.chat_postMessage(channel="C1", text="after the storm")

    assert response["ok"] is True
    calls = slack.calls_to("chat.postMessage")
    assert [c.status for c in calls] == [429, 429, 200]
    assert calls[0].response == {"ok": False, "error": "ratelimited"}
    assert [m["text"] for m in slack.messages] == ["after the storm"]
    assert slack.invalid_calls == []


async def test_rate_limit_without_a_retry_handler_surfaces(slack, client):
    slack.fail("chat.postMessage", status=429)

    error = await error_of(client.chat_postMessage(channel="C1", text="t"))

    assert error.response.status_code == 429
    assert error.response.headers["Retry-After"] == "1"


async def test_server_errors(slack, client):
    slack.fail("chat.update", status=503)
    posted = await client.chat_postMessage(channel="C1", text="t")

    error = await error_of(client.chat_update(channel="C1", ts=posted["ts"], text="u"))
    assert error.response.status_code == 503
    # The fault is used up: the next call goes through.
    assert (await client.chat_update(channel="C1", ts=posted["ts"], text="u"))["ok"] is True

    slack.fail("*", status=500)
    retrying = AsyncWebClient(
        token=TOKEN,
        base_url=slack.url,
        retry_handlers=[
            AsyncServerErrorRetryHandler(interval_calculator=FixedValueRetryIntervalCalculator(0))
        ],
    )
    assert (await retrying.auth_test())["ok"] is True
    assert [c.status for c in slack.calls_to("auth.test")] == [500, 200]


async def test_injected_ok_false_error(slack, client):
    slack.fail("chat.postMessage", error="channel_not_found")

    error = await error_of(client.chat_postMessage(channel="C1", text="t"))

    assert error.response["error"] == "channel_not_found"
    assert slack.calls_to("chat.postMessage")[0].injected
    assert slack.invalid_calls == []


def test_form_encoded_blocks_are_decoded_and_checked(slack):
    body = {"channel": "C1", "blocks": json.dumps([section("x" * 3001)])}
    request = urllib.request.Request(
        slack.url + "chat.postMessage",
        data=urllib.parse.urlencode(body).encode(),
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.load(response)

    assert answer["error"] == "invalid_blocks"
    assert slack.invalid_calls[0].args["blocks"] == [section("x" * 3001)]


def test_malformed_json_body(slack):
    request = urllib.request.Request(
        slack.url + "chat.postMessage",
        data=b"{not json",
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.load(response)["error"] == "invalid_json"


async def test_async_context_manager():
    async with SlackEmulator() as emulator:
        client = AsyncWebClient(token="xoxb-test", base_url=emulator.url)
        assert (await client.auth_test())["ok"] is True
    with pytest.raises(RuntimeError):
        emulator.url


def test_reset_forgets_everything(slack):
    WebClient(token=TOKEN, base_url=slack.url).chat_postMessage(channel="C1", text="t")
    slack.fail("auth.test", status=500)
    slack.reset()
    assert slack.calls == [] and slack.messages == []
    assert WebClient(token=TOKEN, base_url=slack.url).auth_test()["ok"] is True


def test_corpora_overrides(tmp_path, monkeypatch):
    spec = find_slack_spec()
    assert spec is not None
    corpora = spec.parents[1]

    assert find_slack_spec(corpora) == spec
    assert find_slack_spec(spec) == spec
    monkeypatch.setenv(CORPORA_ENV, str(corpora))
    assert find_slack_spec() == spec
    monkeypatch.setenv(CORPORA_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError):
        find_slack_spec()


def test_standalone_entry_point():
    process = subprocess.Popen(
        [sys.executable, "-m", "integrations.emulators.slack", "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = process.stdout.readline()
        url = line.strip().split("SLACK_API_URL=", 1)[1]
        assert WebClient(token="xoxb-test", base_url=url).auth_test()["ok"] is True
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        process.stdout.close()


def test_without_the_description_the_built_in_methods_still_answer(monkeypatch):
    # An installed deploybot has no corpora beside it; the demo must still run.
    monkeypatch.setattr("integrations.emulators.slack.find_slack_spec", lambda corpora: None)
    with SlackEmulator() as emulator:
        sync = WebClient(token="xoxb-test", base_url=emulator.url)
        assert emulator.spec_path is None
        assert sync.chat_postMessage(channel="C1", text="t")["ok"] is True
        with pytest.raises(SlackApiError) as caught:
            sync.api_call("team.info")
        assert caught.value.response["error"] == "unknown_method"


# --------------------------------------------------------------------------- Socket Mode

APP_TOKEN = "xapp-test"  # the emulator's default app-level token


@pytest.fixture
async def socket(slack):
    """A bare websocket client, connected the documented way (apps.connections.open first);
    closed afterwards, and waited for, so the next test starts without it."""
    opened = await AsyncWebClient(base_url=slack.url).apps_connections_open(app_token=APP_TOKEN)
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(opened["url"], autoping=False)
        try:
            yield ws
        finally:
            await ws.close()
            await slack.wait_for_socket_closed()


async def receive_json(ws) -> dict:
    message = await asyncio.wait_for(ws.receive(), 2)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def eventually(condition) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never held")


async def test_socket_mode_greets_with_hello_and_records_the_connection(slack, socket):
    hello = await receive_json(socket)

    assert hello["type"] == "hello"
    assert hello["num_connections"] == 1
    assert hello["connection_info"]["app_id"]
    assert {"host", "build_number", "approximate_connection_time"} <= set(hello["debug_info"])
    (connection,) = slack.socket_connections
    assert connection.token == APP_TOKEN
    assert connection.open and connection.hello == hello
    assert (await slack.wait_for_socket_connection()).id == connection.id


async def test_socket_mode_answers_pings_with_their_data(socket):
    await receive_json(socket)  # hello
    await socket.ping(b"sdk-ping-pong:1700000000.5")  # what slack-sdk's client sends

    pong = await asyncio.wait_for(socket.receive(), 2)
    assert pong.type == aiohttp.WSMsgType.PONG
    assert pong.data == b"sdk-ping-pong:1700000000.5"


async def test_a_websocket_url_not_from_apps_connections_open_is_refused(slack):
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await session.ws_connect(f"ws://127.0.0.1:{slack.port}/link/?ticket=made-up")

    assert caught.value.status == 403
    assert [(c.method, c.error) for c in slack.invalid_calls] == [("socket_mode", "invalid_ticket")]
    assert slack.socket_connections == []


async def test_envelopes_carry_slacks_fields_and_the_ack_comes_back(slack, socket):
    await receive_json(socket)

    async def app_side() -> list[dict]:
        envelopes = []
        for _ in range(3):
            envelope = await receive_json(socket)
            envelopes.append(envelope)
            ack = {"envelope_id": envelope["envelope_id"]}
            if envelope["accepts_response_payload"]:
                ack["payload"] = {"response_type": "ephemeral", "text": "usage"}
            await socket.send_json(ack)
        return envelopes

    app = asyncio.create_task(app_side())
    command_ack = await slack.socket_send("slash_commands", {"command": "/deploy", "text": "help"})
    click_ack = await slack.socket_send("interactive", {"type": "block_actions", "actions": []})
    event_ack = await slack.socket_send(
        "events_api",
        {"event": {"type": "app_home_opened"}},
        retry_attempt=1,
        retry_reason="timeout",
    )
    command, click, event = await app

    assert command["type"] == "slash_commands"
    assert command["payload"] == {"command": "/deploy", "text": "help"}
    assert command["accepts_response_payload"] is True
    assert command_ack == {
        "envelope_id": command["envelope_id"],
        "payload": {"response_type": "ephemeral", "text": "usage"},
    }
    assert click["type"] == "interactive" and click["accepts_response_payload"] is False
    assert click_ack == {"envelope_id": click["envelope_id"]}
    assert (event["retry_attempt"], event["retry_reason"]) == (1, "timeout")
    assert "retry_attempt" not in command
    assert event_ack == {"envelope_id": event["envelope_id"]}
    assert len({command["envelope_id"], click["envelope_id"], event["envelope_id"]}) == 3
    assert [r["ack"] for r in slack.socket_envelopes] == [command_ack, click_ack, event_ack]
    assert slack.invalid_calls == []


async def test_an_envelope_nobody_acks_times_out(slack, socket):
    await receive_json(socket)
    started = time.monotonic()

    with pytest.raises(TimeoutError, match="no ack for events_api envelope"):
        await slack.socket_send("events_api", {"event": {"type": "app_home_opened"}}, seconds=0.2)

    assert time.monotonic() - started < 1
    # A late ack is still recorded (real Slack would be retrying by then); no violation.
    envelope = await receive_json(socket)
    await socket.send_json({"envelope_id": envelope["envelope_id"]})
    await eventually(lambda: slack.socket_envelopes[0]["ack"] is not None)
    assert slack.invalid_calls == []


async def test_no_ack_without_a_connection_or_when_it_drops(slack, socket):
    await receive_json(socket)
    pending = asyncio.create_task(slack.socket_send("slash_commands", {"command": "/deploy"}))
    await receive_json(socket)  # the envelope came; the app goes away instead of acking
    await socket.close()

    with pytest.raises(ConnectionError, match="closed before the ack"):
        await pending
    (connection,) = await slack.wait_for_socket_closed()
    assert not connection.open and connection.close_code == 1000
    with pytest.raises(ConnectionError, match="no Socket Mode connection"):
        await slack.socket_send("events_api", {"event": {}}, seconds=0.05)
    with pytest.raises(ValueError, match="envelope type"):
        await slack.socket_send("hello", {})


async def test_what_the_app_sends_back_is_checked(slack, socket):
    await receive_json(socket)
    pending = asyncio.create_task(slack.socket_send("slash_commands", {"command": "/deploy"}))
    envelope = await receive_json(socket)
    await socket.send_str("ack!")
    await socket.send_json({"envelope_id": "never-sent"})
    await socket.send_json(
        {"envelope_id": envelope["envelope_id"], "payload": {"blocks": [{"type": "section"}]}}
    )

    ack = await pending
    assert ack["payload"] == {"blocks": [{"type": "section"}]}
    assert [(c.method, c.error) for c in slack.invalid_calls] == [
        ("socket_mode", "invalid_json"),
        ("socket_mode", "unknown_envelope_id"),
        ("socket_mode.ack", "invalid_ack"),
    ]
    assert slack.invalid_calls[2].errors == [
        "must have text or fields [json-pointer:/payload/blocks/0]"
    ]


async def test_slack_sdks_socket_mode_client_round_trip_and_refresh(slack):
    client = SocketModeClient(app_token=APP_TOKEN, web_client=AsyncWebClient(base_url=slack.url))

    async def on_request(client, request: SocketModeRequest) -> None:
        answer = {"text": f"got {request.payload['text']}"}
        await client.send_socket_mode_response(
            SocketModeResponse(envelope_id=request.envelope_id, payload=answer)
        )

    client.socket_mode_request_listeners.append(on_request)
    try:
        await client.connect()
        ack = await slack.socket_send("slash_commands", {"command": "/deploy", "text": "help"})
        assert ack["payload"] == {"text": "got help"}
        first = await slack.wait_for_socket_connection()

        # Slack asks for a refresh: the client opens a new URL and drops the old socket.
        assert await slack.socket_disconnect("refresh_requested") == 1
        await eventually(lambda: [c.open for c in slack.socket_connections] == [False, True])
        second = slack.socket_connections[1]
        assert second.token == APP_TOKEN and second.id != first.id
        ack = await slack.socket_send("slash_commands", {"command": "/deploy", "text": "again"})
        assert ack["payload"] == {"text": "got again"}
        assert slack.socket_envelopes[-1]["connection"] == second.id
    finally:
        await client.close()
    await slack.wait_for_socket_closed()
    assert len(slack.calls_to("apps.connections.open")) == 2
    assert slack.invalid_calls == []


async def test_reset_keeps_open_socket_connections(slack, socket):
    await receive_json(socket)
    url = slack.response_url(channel="C1", user="U0ALICE")
    slack.reset()

    assert len(slack.socket_connections) == 1
    pending = asyncio.create_task(slack.socket_send("events_api", {"event": {}}))
    envelope = await receive_json(socket)
    await socket.send_json({"envelope_id": envelope["envelope_id"]})
    assert (await pending)["envelope_id"] == envelope["envelope_id"]
    # Minted response URLs are forgotten, though.
    assert (await AsyncWebhookClient(url).send(text="late")).status_code == 404


# --------------------------------------------------------------------------- response_url


async def test_response_url_answers_are_ephemeral_by_default_or_in_channel(slack):
    url = slack.response_url(channel="C0DEPLOY", user="U0ALICE")
    assert url.startswith(f"{slack.base_url}/responses/")
    hook = AsyncWebhookClient(url)

    private = await hook.send(text="only alice sees this")
    public = await hook.send(
        text="acme/api: deploying", response_type="in_channel", blocks=[section("*acme/api*")]
    )

    assert (private.status_code, json.loads(private.body)) == (200, {"ok": True})
    assert public.status_code == 200
    [ephemeral] = slack.ephemerals
    assert ephemeral["channel"] == "C0DEPLOY" and ephemeral["user"] == "U0ALICE"
    assert ephemeral["text"] == "only alice sees this" and ephemeral["message_ts"]
    assert ephemeral["via"] == "response_url"
    [message] = slack.messages
    assert message["channel"] == "C0DEPLOY" and message["user"] == "U0DEPLOYBOT"
    assert message["invoked_by"] == "U0ALICE" and message["via"] == "response_url"
    assert message["blocks"] == [section("*acme/api*")]
    assert slack.transcript() == "#C0DEPLOY *acme/api*"
    history = await AsyncWebClient(token=TOKEN, base_url=slack.url).conversations_history(
        channel="C0DEPLOY"
    )
    assert history["messages"][0]["ts"] == message["ts"]
    assert not {"channel", "via", "invoked_by"} & set(history["messages"][0])
    assert [call.status for call in slack.calls_to("response_url")] == [200, 200]
    assert slack.invalid_calls == []


async def test_an_in_channel_answer_can_go_to_a_thread(slack, client):
    parent = await client.chat_postMessage(channel="C1", text="acme/api #12")
    hook = AsyncWebhookClient(slack.response_url(channel="C1", user="U0ALICE"))

    # As Bolt's respond() sends it (AsyncWebhookClient.send has no thread_ts).
    await hook.send_dict(
        {"text": "status: deploying", "response_type": "in_channel", "thread_ts": parent["ts"]}
    )

    assert slack.transcript() == "#C1 acme/api #12\n    ↳ status: deploying"


async def test_response_url_replaces_or_deletes_the_clicked_message(slack, client):
    posted = await client.chat_postMessage(
        channel="C1",
        text="approve?",
        blocks=[section("approve?"), {"type": "actions", "elements": [button("Approve")]}],
    )
    hook = AsyncWebhookClient(
        slack.response_url(channel="C1", user="U0ALICE", message_ts=posted["ts"])
    )

    assert (await hook.send(text="approved by alice", replace_original=True)).status_code == 200
    [message] = slack.messages
    assert (message["ts"], message["text"]) == (posted["ts"], "approved by alice")
    assert "blocks" not in message and message["edited"]

    # A body that fails the checks changes nothing, the delete included.
    bad = await hook.send_dict({"delete_original": True, "blocks": [{"type": "section"}]})
    assert bad.status_code == 400 and len(slack.messages) == 1
    assert (await hook.send_dict({"delete_original": True})).status_code == 200
    assert slack.messages == []
    gone = await hook.send_dict({"delete_original": True})
    assert (gone.status_code, json.loads(gone.body)["error"]) == (404, "message_not_found")
    assert [c.error for c in slack.invalid_calls] == ["invalid_blocks"]


async def test_a_command_response_url_replaces_its_own_last_answer(slack):
    hook = AsyncWebhookClient(slack.response_url(channel="C1", user="U0ALICE"))
    await hook.send(text="working on it")
    await hook.send(text="done", replace_original=True)

    [ephemeral] = slack.ephemerals
    assert ephemeral["text"] == "done"
    await hook.send(delete_original=True, text="posted instead", response_type="in_channel")
    assert slack.ephemerals == []
    assert [m["text"] for m in slack.messages] == ["posted instead"]


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"text": "", "response_type": "ephemeral"}, "no_text"),
        ({"text": "x", "response_type": "channel"}, "invalid_payload"),
        ({"blocks": [{"type": "section"}]}, "invalid_blocks"),
        ({"text": "x" * 40_001}, "msg_too_long"),
    ],
)
async def test_response_url_bodies_are_checked_like_messages(slack, body, error):
    hook = AsyncWebhookClient(slack.response_url(channel="C1", user="U0ALICE"))
    response = await hook.send_dict(body)

    assert response.status_code == 400
    assert json.loads(response.body)["error"] == error
    [invalid] = slack.invalid_calls
    assert (invalid.method, invalid.error) == ("response_url", error)
    assert slack.ephemerals == [] and slack.messages == []


def test_response_url_takes_json_only(slack):
    request = urllib.request.Request(
        slack.response_url(channel="C1", user="U0ALICE"),
        data=b"text=hello",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 400
    assert json.load(caught.value)["error"] == "invalid_payload"


async def test_unknown_and_used_up_response_urls_are_404(slack):
    unknown = await AsyncWebhookClient(f"{slack.base_url}/responses/never-minted").send(text="x")
    assert (unknown.status_code, json.loads(unknown.body)["error"]) == (404, "expired_url")

    hook = AsyncWebhookClient(slack.response_url(channel="C1", user="U0ALICE"))
    for i in range(MAX_RESPONSE_URL_USES):
        assert (await hook.send(text=f"answer {i}")).status_code == 200
    used = await hook.send(text="one too many")

    assert (used.status_code, json.loads(used.body)["error"]) == (404, "used_url")
    assert len(slack.ephemerals) == MAX_RESPONSE_URL_USES
    assert [c.error for c in slack.invalid_calls] == ["expired_url", "used_url"]
