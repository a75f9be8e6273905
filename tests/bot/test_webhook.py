"""`POST /github/webhook` against the real app (lifespan, database, worker) on both databases."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from pydantic import SecretStr

from bot.app import create_app
from bot.github.webhook import signature_valid, webhook_router
from storage import inbox
from storage.models import InboxItem, InboxStatus, Installation, Repository
from tests.conftest import CORPORA, WEBHOOK_SECRET
from tests.helpers import compact, github_headers, webhook_examples

EXAMPLES = webhook_examples(CORPORA)


async def _inbox(app: FastAPI) -> list[InboxItem]:
    async with app.state.services.sessions() as session:
        return list((await session.execute(sa.select(InboxItem).order_by(InboxItem.id))).scalars())


async def _drain(app: FastAPI) -> None:
    """Wait until the app's own worker has handled everything stored."""
    for _ in range(1000):
        async with app.state.services.sessions() as session:
            if await inbox.depth(session) == 0:
                return
        await asyncio.sleep(0.02)
    failing = [(i.event, i.delivery_id, i.last_error) for i in await _inbox(app) if i.last_error]
    raise AssertionError(f"the inbox worker did not drain the inbox; failures: {failing[:5]}")


def test_githubs_documented_signature_vector() -> None:
    secret = SecretStr("It's a Secret to Everybody")
    good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    assert signature_valid(secret, b"Hello, World!", good)
    assert not signature_valid(secret, b"Hello, World!\n", good)
    assert not signature_valid(secret, b"Hello, World!", "sha1=" + good.removeprefix("sha256="))
    assert not signature_valid(secret, b"Hello, World!", None)


def test_the_corpus_is_all_there() -> None:
    assert len(EXAMPLES) >= 270, "expected octokit's 273 example deliveries"


async def test_every_corpus_delivery_is_accepted_and_handled(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    """Each example, signed over its raw bytes, is stored (202) and then handled or ignored."""
    for event, path in EXAMPLES:
        body = path.read_bytes()
        response = await client.post(
            "/github/webhook",
            content=body,
            headers=github_headers(
                body, secret=WEBHOOK_SECRET, event=event, delivery=f"{event}/{path.name}"
            ),
        )
        assert response.status_code == 202, (path, response.text)
    await _drain(app)
    items = await _inbox(app)
    assert len(items) == len(EXAMPLES)
    unhandled = [
        (i.event, i.delivery_id, i.last_error) for i in items if i.status not in {"done", "ignored"}
    ]
    assert unhandled == []
    handled = {i.event for i in items if i.status == InboxStatus.DONE}
    assert {"installation", "installation_repositories", "ping"} <= handled
    async with app.state.services.sessions() as session:
        installations = (await session.execute(sa.select(Installation))).scalars().all()
        repositories = (await session.execute(sa.select(Repository))).scalars().all()
    assert installations and repositories


async def test_pretty_printed_and_compact_bodies_are_both_accepted_as_signed(
    client: httpx.AsyncClient,
) -> None:
    payload = {"zen": "Keep it logically awesome.", "hook_id": 1}
    for n, body in enumerate([compact(payload), json.dumps(payload, indent=2).encode()]):
        headers = github_headers(body, secret=WEBHOOK_SECRET, event="ping", delivery=f"p{n}")
        assert (
            await client.post("/github/webhook", content=body, headers=headers)
        ).status_code == 202


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda h: h.pop("X-Hub-Signature-256"), id="missing"),
        pytest.param(
            lambda h: h.update({"X-Hub-Signature-256": "sha256=" + "0" * 64}), id="forged"
        ),
        pytest.param(lambda h: h.update({"X-Hub-Signature-256": "garbage"}), id="malformed"),
        pytest.param(lambda h: h.update({"X-Hub-Signature-256": ""}), id="empty"),
    ],
)
async def test_bad_signatures_are_refused_and_nothing_is_stored(
    app: FastAPI, client: httpx.AsyncClient, mutate
) -> None:
    body = compact({"zen": "x"})
    headers = github_headers(body, secret=WEBHOOK_SECRET, event="ping")
    mutate(headers)
    response = await client.post("/github/webhook", content=body, headers=headers)
    assert response.status_code == 401
    assert await _inbox(app) == []


async def test_wrong_secret_is_refused(app: FastAPI, client: httpx.AsyncClient) -> None:
    body = compact({"zen": "x"})
    headers = github_headers(body, secret="not-the-secret", event="ping")
    assert (await client.post("/github/webhook", content=body, headers=headers)).status_code == 401
    assert await _inbox(app) == []


@pytest.mark.parametrize(
    ("body", "drop", "message"),
    [
        (b"{not json", None, "body is not JSON"),
        (b'{"zen": "x"} trailing', None, "body is not JSON"),
        (b"[1, 2]", None, "body must be a JSON object"),
        (b'"zen"', None, "body must be a JSON object"),
        (b"\xff\xfe\x00garbage", None, "body is not UTF-8 JSON"),
        (b'{"zen": "x"}', "X-GitHub-Delivery", "X-GitHub-Delivery and X-GitHub-Event"),
        (b'{"zen": "x"}', "X-GitHub-Event", "X-GitHub-Delivery and X-GitHub-Event"),
    ],
)
async def test_malformed_deliveries_get_400(
    app: FastAPI, client: httpx.AsyncClient, body: bytes, drop: str | None, message: str
) -> None:
    headers = github_headers(body, secret=WEBHOOK_SECRET, event="ping")
    if drop:
        headers.pop(drop)
    response = await client.post("/github/webhook", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert message in response.json()["message"]
    assert await _inbox(app) == []


async def test_oversized_body_is_refused_before_it_is_read(engine) -> None:
    from storage import db

    # The route on its own, with a small cap to keep the test light.
    app = FastAPI()
    sessions = db.session_factory(engine)
    app.include_router(
        webhook_router(
            secret=SecretStr(WEBHOOK_SECRET),
            sessions=sessions,
            on_stored=lambda: None,
            max_body=1024,
        )
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://deploybot") as client:
        body = compact({"pad": "x" * 2048})
        headers = github_headers(body, secret=WEBHOOK_SECRET, event="ping")
        response = await client.post("/github/webhook", content=body, headers=headers)
        assert response.status_code == 413

        async def chunks():
            for _ in range(4):
                yield b"x" * 512

        headers.pop("Content-Length", None)
        response = await client.post("/github/webhook", content=chunks(), headers=headers)
        assert response.status_code == 413
        small = compact({"zen": "fits"})
        headers = github_headers(small, secret=WEBHOOK_SECRET, event="ping")
        assert (
            await client.post("/github/webhook", content=small, headers=headers)
        ).status_code == 202
    async with sessions() as session:
        count = (
            await session.execute(sa.select(sa.func.count()).select_from(InboxItem))
        ).scalar_one()
    assert count == 1


async def test_same_delivery_four_times_at_once_is_one_row(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    body = CORPORA / "github-webhooks/payload-examples/api.github.com/ping/payload.json"
    data = body.read_bytes() if body.exists() else compact({"zen": "x"})
    headers = github_headers(data, secret=WEBHOOK_SECRET, event="ping", delivery="dup-1")
    responses = await asyncio.gather(
        *(client.post("/github/webhook", content=data, headers=headers) for _ in range(4))
    )
    assert sorted(r.status_code for r in responses) == [200, 200, 200, 202]
    assert len(await _inbox(app)) == 1


async def test_unknown_events_are_recorded_and_ignored(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    body = compact({"action": "teleported", "whatever": {"nested": True}})
    headers = github_headers(body, secret=WEBHOOK_SECRET, event="quantum_event")
    assert (await client.post("/github/webhook", content=body, headers=headers)).status_code == 202
    await _drain(app)
    (item,) = await _inbox(app)
    assert (item.event, item.action, item.status) == ("quantum_event", "teleported", "ignored")


async def test_an_action_that_is_not_text_is_stored_without_one(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    body = compact({"action": {"odd": 1}, "zen": "x"})
    headers = github_headers(body, secret=WEBHOOK_SECRET, event="quantum_event")
    assert (await client.post("/github/webhook", content=body, headers=headers)).status_code == 202
    (item,) = await _inbox(app)
    assert item.action is None
    async with app.state.services.sessions() as session:
        assert await inbox.bodies(session, [item.id]) == {item.id: body.decode()}


async def test_probes_and_metrics(app: FastAPI, client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert (await client.get("/readyz")).status_code == 200
    body = compact({"zen": "x"})
    await client.post(
        "/github/webhook",
        content=body,
        headers=github_headers(body, secret=WEBHOOK_SECRET, event="ping"),
    )
    text = (await client.get("/metrics")).text
    assert (
        'deploybot_http_requests_total{method="POST",route="/github/webhook",status="202"} 1.0'
        in text
    )
    assert "deploybot_inbox_depth" in text and "deploybot_outbox_depth" in text
    assert "# TYPE deploybot_dispatch_failures_total counter" in text


async def test_readyz_is_503_when_the_database_is_down(make_settings) -> None:
    # Nothing listens on port 1: the database is "down" from the start, so no lifespan here.
    app = create_app(make_settings(DATABASE_URL="postgresql://nobody@127.0.0.1:1/none"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://deploybot") as client:
        assert (await client.get("/healthz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 503
        body = compact({"zen": "x"})
        headers = github_headers(body, secret=WEBHOOK_SECRET, event="ping")
        response = await client.post("/github/webhook", content=body, headers=headers)
        assert response.status_code == 503  # GitHub shows a failed delivery to redeliver
        assert (await client.get("/metrics")).status_code == 200


async def test_a_non_ascii_signature_header_is_a_401_not_a_crash(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    body = compact({"zen": "x"})
    headers = github_headers(body, secret=WEBHOOK_SECRET, event="ping")
    headers["X-Hub-Signature-256"] = "sha256=é".encode()  # type: ignore[assignment]
    response = await client.post("/github/webhook", content=body, headers=headers)
    assert response.status_code == 401
    assert await _inbox(app) == []


async def test_a_signed_but_absurdly_nested_body_is_a_400(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    headers = github_headers(body, secret=WEBHOOK_SECRET, event="ping")
    response = await client.post("/github/webhook", content=body, headers=headers)
    assert response.status_code == 400
    assert await _inbox(app) == []


async def test_ingress_routes_stay_out_of_the_rest_api_schema(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/api/v1/openapi.json")).json()["paths"]
    assert "/github/webhook" not in paths and "/slack/events" not in paths
