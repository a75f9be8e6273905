"""`POST /slack/events` through slack-bolt, with the Slack emulator answering `auth.test`."""

from __future__ import annotations

import asyncio
import json
import time
from urllib.parse import urlencode

import httpx
import pytest
from slack_sdk.signature import SignatureVerifier

from bot.app import create_app
from integrations.emulators.slack import SlackEmulator
from tests.conftest import CORPORA, SIGNING_SECRET
from tests.helpers import slack_headers

SLACK_DOC_BODY = (
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
    "&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
    "&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlf"
    "mibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
)


class _At:
    def __init__(self, now: float) -> None:
        self._now = now

    def now(self) -> float:
        return self._now


def test_slacks_documented_signing_vector() -> None:
    verifier = SignatureVerifier(SIGNING_SECRET, clock=_At(1531420618 + 60))
    signature = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert verifier.is_valid(SLACK_DOC_BODY, "1531420618", signature)
    # Our own signer (used by every other test) computes the same signature.
    assert (
        slack_headers(SLACK_DOC_BODY.encode(), secret=SIGNING_SECRET, timestamp=1531420618)[
            "X-Slack-Signature"
        ]
        == signature
    )
    assert not verifier.is_valid(SLACK_DOC_BODY + "x", "1531420618", signature)


def slash_command(text: str) -> bytes:
    """A `/deploy` command shaped like the corpus sample, blanks filled in."""
    shape = json.loads(
        (CORPORA / "slack-payload-shapes/slash-commands/SlashCommandPayload.json").read_text()
    )
    filled = {
        **{k: v for k, v in shape.items() if not isinstance(v, bool)},
        "team_id": "T0001",
        "team_domain": "acme",
        "channel_id": "C0001",
        "channel_name": "deploys",
        "user_id": "U0ALICE",
        "user_name": "alice",
        "command": "/deploy",
        "text": text,
        "api_app_id": "A0001",
        "response_url": "https://hooks.slack.com/commands/T0001/1/x",
        "trigger_id": "1.2.3",
        "is_enterprise_install": "false",
    }
    return urlencode(filled).encode()


@pytest.mark.parametrize("text", ["help", "", "  HELP me please ", "--help"])
async def test_deploy_help_is_acknowledged_with_usage(
    client: httpx.AsyncClient, slack: SlackEmulator, text: str
) -> None:
    body = slash_command(text)
    started = time.monotonic()
    response = await client.post(
        "/slack/events", content=body, headers=slack_headers(body, secret=SIGNING_SECRET)
    )
    assert time.monotonic() - started < 3
    assert response.status_code == 200
    answer = response.json()
    assert answer["response_type"] == "ephemeral"
    assert "/deploy subscribe &lt;owner/repo&gt;" in answer["text"]  # escaped for mrkdwn
    assert slack.calls_to("auth.test"), "Bolt authorizes through SLACK_API_URL"


async def test_unknown_subcommand_is_explained_with_usage(client: httpx.AsyncClient) -> None:
    body = slash_command("<!channel> teleport")
    response = await client.post(
        "/slack/events", content=body, headers=slack_headers(body, secret=SIGNING_SECRET)
    )
    text = response.json()["text"]
    assert "is not a subcommand" in text and "Usage" in text
    assert "<!channel>" not in text


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda body: slack_headers(body, secret="someone-elses-secret"), id="forged"),
        pytest.param(
            lambda body: slack_headers(
                body, secret=SIGNING_SECRET, timestamp=int(time.time()) - 360
            ),
            id="stale",
        ),
        pytest.param(
            lambda body: {"Content-Type": "application/x-www-form-urlencoded"}, id="unsigned"
        ),
    ],
)
async def test_forged_stale_or_unsigned_requests_get_401(
    client: httpx.AsyncClient, slack: SlackEmulator, headers
) -> None:
    body = slash_command("help")
    response = await client.post("/slack/events", content=body, headers=headers(body))
    assert response.status_code == 401
    assert slack.calls == []


async def test_ack_stays_fast_under_concurrent_commands(client: httpx.AsyncClient) -> None:
    body = slash_command("help")

    async def one() -> float:
        started = time.monotonic()
        response = await client.post(
            "/slack/events", content=body, headers=slack_headers(body, secret=SIGNING_SECRET)
        )
        assert response.status_code == 200
        return time.monotonic() - started

    durations = await asyncio.gather(*(one() for _ in range(20)))
    assert max(durations) < 3


async def test_socket_mode_without_signing_secret_closes_the_http_route(
    make_settings, settings_env, database_url: str, slack: SlackEmulator
) -> None:
    settings_env.pop("SLACK_SIGNING_SECRET")
    settings = make_settings(
        DATABASE_URL=database_url, SLACK_API_URL=slack.url, SLACK_APP_TOKEN="xapp-1-A0001-1-abcdef"
    )
    # No lifespan: the emulator has no Socket Mode websocket yet, so only HTTP is checked here.
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://deploybot") as client:
        body = slash_command("help")
        response = await client.post(
            "/slack/events", content=body, headers=slack_headers(body, secret=SIGNING_SECRET)
        )
        assert response.status_code == 404


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"payload=%7Bbad", "application/x-www-form-urlencoded"),
        (b"payload=%5B1%5D", "application/x-www-form-urlencoded"),
        (b"{bad", "application/json"),
    ],
)
async def test_malformed_bodies_are_401_unsigned_and_400_signed(
    client: httpx.AsyncClient, body: bytes, content_type: str
) -> None:
    unsigned = {"Content-Type": content_type}
    assert (await client.post("/slack/events", content=body, headers=unsigned)).status_code == 401
    signed = {**slack_headers(body, secret=SIGNING_SECRET), "Content-Type": content_type}
    response = await client.post("/slack/events", content=body, headers=signed)
    assert 400 <= response.status_code < 500


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Slack-Request-Timestamp": "soon", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=é".encode()},
    ],
)
async def test_garbage_signature_headers_are_401(client: httpx.AsyncClient, headers) -> None:
    body = slash_command("help")
    response = await client.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 401


async def test_oversized_slack_bodies_are_413_even_when_chunked(client: httpx.AsyncClient) -> None:
    async def chunks():
        for _ in range(5):
            yield b"x" * 300_000

    response = await client.post("/slack/events", content=chunks())
    assert response.status_code == 413


async def test_opening_app_home_publishes_the_home_tab(
    client: httpx.AsyncClient, slack: SlackEmulator
) -> None:
    body = json.dumps(
        {
            "type": "event_callback",
            "team_id": "T0001",
            "api_app_id": "A0001",
            "event_id": "Ev0001",
            "event_time": int(time.time()),
            "event": {
                "type": "app_home_opened",
                "user": "U0ALICE",
                "channel": "D0001",
                "tab": "home",
                "event_ts": f"{time.time():.6f}",
            },
        }
    ).encode()
    headers = {**slack_headers(body, secret=SIGNING_SECRET), "Content-Type": "application/json"}
    response = await client.post("/slack/events", content=body, headers=headers)
    assert response.status_code == 200
    for _ in range(200):  # the view is published after the ack
        if slack.calls_to("views.publish"):
            break
        await asyncio.sleep(0.01)
    (call,) = slack.calls_to("views.publish")
    assert call.ok and call.args["user_id"] == "U0ALICE"
    assert slack.invalid_calls == []


SHAPES = sorted((CORPORA / "slack-payload-shapes").glob("*/*.json"))


@pytest.mark.parametrize("path", SHAPES, ids=[p.stem for p in SHAPES])
async def test_every_corpus_shape_as_sent_blank_gets_an_answer_not_an_error(
    client: httpx.AsyncClient, path
) -> None:
    """java-slack-sdk's shapes carry every field ever seen, values blank: whatever Slack
    leaves empty must be answered (2xx, or 404 for no listener), never a 5xx."""
    shape = json.loads(path.read_text())
    if path.parent.name == "slash-commands":
        body = urlencode(
            {k: str(v).lower() if isinstance(v, bool) else v for k, v in shape.items()}
        )
    else:
        body = urlencode({"payload": json.dumps(shape)})
    raw = body.encode()
    response = await client.post(
        "/slack/events", content=raw, headers=slack_headers(raw, secret=SIGNING_SECRET)
    )
    assert response.status_code < 500, response.text


@pytest.mark.parametrize("action_id", ["approve", "reject", "promote", "rollback"])
async def test_the_block_action_shape_filled_in_reaches_our_buttons(
    client: httpx.AsyncClient, slack: SlackEmulator, action_id: str
) -> None:
    shape = json.loads(
        (
            CORPORA / "slack-payload-shapes/interactive-components/BlockActionPayload.json"
        ).read_text()
    )
    shape["user"].update(id="U0ALICE", username="alice", team_id="T0001")
    shape["channel"].update(id="C0001", name="deploys")
    shape["container"].update(type="message", channel_id="C0001", message_ts="1.2")
    shape["actions"] = [{**shape["actions"][0], "action_id": action_id, "value": "unknown:1"}]
    raw = urlencode({"payload": json.dumps(shape)}).encode()
    response = await client.post(
        "/slack/events", content=raw, headers=slack_headers(raw, secret=SIGNING_SECRET)
    )
    assert response.status_code == 200
    for _ in range(200):  # refused after the ack: the value is not one of ours
        if slack.ephemerals:
            break
        await asyncio.sleep(0.01)
    assert "not one of deploybot's" in slack.ephemerals[-1]["text"]
