"""The Slack emulator, driven over real HTTP by slack-sdk's own clients."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry import builtin_async_handlers
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import FixedValueRetryIntervalCalculator
from slack_sdk.web.async_client import AsyncWebClient

from integrations.emulators.slack import (
    CORPORA_ENV,
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
    assert opened["url"].startswith("ws://127.0.0.1:")

    bot_client = AsyncWebClient(token=TOKEN, base_url=slack.url)
    error = await error_of(bot_client.apps_connections_open(app_token=TOKEN))
    assert error.response["error"] == "not_allowed_token_type"


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
