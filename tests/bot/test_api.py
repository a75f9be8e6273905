"""The REST API through the real app (in process), with releases driven the way GitHub sends
them: pull requests, `/deploy` comments and deployment statuses, on both databases."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from bot.api import github_web_url
from bot.app import create_app
from integrations.emulators.github import GitHubEmulator
from integrations.emulators.slack import SlackEmulator
from storage import inbox, outbox
from tests.conftest import WEBHOOK_SECRET
from tests.helpers import compact, github_headers
from tests.story import (
    NAME,
    OWNER,
    REPOSITORY,
    comment,
    deployment_status,
    installation_created,
    pull_request,
)

TOKEN = "api-token-for-tests-0123456789"
CHANNEL = "C0DEPLOYS"
A, B = "a" * 40, "b" * 40
# C and D share their first 7 digits: that abbreviation is ambiguous.
C, D = "cafe123" + "0" * 33, "cafe123" + "f" * 33
PIPELINE = f"""
slack: {{channel: {CHANNEL}}}
environments:
  - name: dev
  - name: stage
  - name: production
"""
ROUTES = {
    ("get", "/api/v1/deploy/status"),
    ("get", "/api/v1/deployments"),
    ("post", "/api/v1/rollback"),
    ("get", "/api/v1/audit"),
}


@pytest.fixture
async def api_app(
    make_settings, database_url: str, slack: SlackEmulator, github: GitHubEmulator
) -> AsyncIterator[FastAPI]:
    settings = make_settings(
        DATABASE_URL=database_url,
        SLACK_API_URL=slack.url,
        GITHUB_API_URL=github.url,
        DEPLOYBOT_API_TOKEN=TOKEN,
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def api(api_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app that sends the API token."""
    transport = httpx.ASGITransport(app=api_app)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://deploybot", headers=headers
    ) as client:
        yield client


class Releases:
    """Pull requests and deploys, delivered as GitHub sends them."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient, github: GitHubEmulator) -> None:
        self.services = app.state.services
        self.client, self.github = client, github
        self.pulls: dict[int, dict[str, Any]] = {}
        self.sent = 0

    async def deliver(self, event: str, payload: dict[str, Any]) -> None:
        self.sent += 1
        body = compact(payload)
        headers = github_headers(
            body, secret=WEBHOOK_SECRET, event=event, delivery=f"api-{self.sent}"
        )
        response = await self.client.post("/github/webhook", content=body, headers=headers)
        assert response.status_code == 202, response.text
        await self.settle()

    async def settle(self) -> None:
        """Wait until every delivery is handled and every effect sent."""
        for _ in range(500):
            async with self.services.sessions() as session:
                waiting = await inbox.depth(session) + await outbox.depth(session)
                dead = await inbox.dead_letters(session) + await outbox.dead_letters(session)
            assert not dead, [d.last_error for d in dead]
            if waiting == 0:
                return
            await asyncio.sleep(0.02)
        raise AssertionError("the app did not settle")

    async def open(self, number: int, sha: str) -> None:
        pr = pull_request(
            "opened", number=number, sha=sha, title=f"Change {number}", author="alice"
        )
        self.pulls[number] = pr
        await self.deliver("pull_request", pr)

    async def deploy(self, number: int, environment: str, *states: str) -> dict[str, Any]:
        """`/deploy <environment>` on the pull request, then the deploy system's reports."""
        pr = self.pulls[number]
        self.github.respond("pulls/get", body=pr["pull_request"])
        await self.deliver(
            "issue_comment",
            comment(
                f"/deploy {environment}", number=number, login="alice", comment_id=self.sent + 1
            ),
        )
        sha = pr["pull_request"]["head"]["sha"]
        deployment = self.deployment(environment, sha)
        for state in states:
            await self.deliver("deployment_status", deployment_status(deployment["id"], state))
        return deployment

    def deployment(self, environment: str, sha: str) -> dict[str, Any]:
        """The newest GitHub deployment of `sha` to `environment`."""
        return next(
            d
            for d in self.github.deployments(OWNER, NAME)
            if d["environment"] == environment and d["sha"] == sha
        )


@pytest.fixture
async def shipped(api_app: FastAPI, api: httpx.AsyncClient, github: GitHubEmulator) -> Releases:
    """A everywhere, then B everywhere; C done in dev and deploying to stage; D never deployed."""
    github.set_file(OWNER, NAME, ".github/deploybot.yml", PIPELINE)
    github.set_permission(OWNER, NAME, "alice", "write")
    releases = Releases(api_app, api, github)
    await releases.deliver("installation", installation_created())
    for number, sha in [(1, A), (2, B)]:
        await releases.open(number, sha)
        for environment in ["dev", "stage", "production"]:
            await releases.deploy(number, environment, "success")
    await releases.open(3, C)
    await releases.deploy(3, "dev", "success")
    await releases.deploy(3, "stage", "in_progress")
    await releases.open(4, D)
    return releases


async def status_of(api: httpx.AsyncClient, commit: str, repository: str = REPOSITORY):
    return await api.get(
        "/api/v1/deploy/status", params={"repository": repository, "commit": commit}
    )


# --- authentication ----------------------------------------------------------------------


async def call_each_route(client: httpx.AsyncClient, **kwargs: Any) -> list[httpx.Response]:
    return [
        await client.get(
            "/api/v1/deploy/status", params={"repository": REPOSITORY, "commit": A}, **kwargs
        ),
        await client.get("/api/v1/deployments", **kwargs),
        await client.post(
            "/api/v1/rollback",
            json={"repository": REPOSITORY, "environment": "production"},
            **kwargs,
        ),
    ]


async def test_requests_without_the_right_bearer_token_get_401(api_app: FastAPI) -> None:
    transport = httpx.ASGITransport(app=api_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://deploybot") as client:
        cases = {
            "missing": {},
            "wrong": {"Authorization": "Bearer not-the-token"},
            "a prefix of the token": {"Authorization": f"Bearer {TOKEN[:-1]}"},
            "another scheme": {"Authorization": f"Basic {TOKEN}"},
        }
        for case, headers in cases.items():
            for response in await call_each_route(client, headers=headers):
                assert response.status_code == 401, (case, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert "DEPLOYBOT_API_TOKEN" in response.json()["detail"]
                assert TOKEN not in response.text and "not-the-token" not in response.text
        # Authentication comes before validation: strangers learn nothing about the API.
        response = await client.get("/api/v1/deploy/status", params={"commit": "nonsense"})
        assert response.status_code == 401


async def test_without_a_configured_token_every_request_gets_401(
    client: httpx.AsyncClient,
) -> None:
    for headers in [{}, {"Authorization": "Bearer anything"}, {"Authorization": "Bearer "}]:
        for response in await call_each_route(client, headers=headers):
            assert response.status_code == 401
            assert response.headers["www-authenticate"] == "Bearer"
            detail = response.json()["detail"]
            assert "DEPLOYBOT_API_TOKEN is not set" in detail and "OIDC" in detail


async def test_openapi_describes_the_routes(api: httpx.AsyncClient) -> None:
    response = await api.get("/api/v1/openapi.json")
    assert response.status_code == 200
    document = response.json()
    listed = {(method, path) for path, item in document["paths"].items() for method in item}
    assert listed >= ROUTES
    assert all(path.startswith("/api/v1/") for _, path in listed)
    rollback = document["paths"]["/api/v1/rollback"]["post"]
    created = rollback["responses"]["202"]["content"]["application/json"]["schema"]
    assert created == {"$ref": "#/components/schemas/RolloutPublic"}
    assert {"401", "404", "409", "422"} <= set(rollback["responses"])
    schemas = document["components"]["schemas"]
    assert {"DeployStatusPublic", "EnvironmentStatusPublic", "RollbackRequest"} <= set(schemas)
    assert "awaiting_approval" in schemas["Status"]["enum"]
    assert document["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


# --- GET /api/v1/deploy/status -----------------------------------------------------------


async def test_status_of_a_commit_in_every_environment(
    api: httpx.AsyncClient, shipped: Releases
) -> None:
    response = await status_of(api, C)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["repository"] == REPOSITORY and body["commit_sha"] == C
    assert body["status"] == "in_progress", "the furthest environment reached"
    dev, stage, production = body["environments"]
    assert (dev["name"], dev["status"]) == ("dev", "success")
    assert dev["deployment_id"] == shipped.deployment("dev", C)["id"]
    assert (stage["name"], stage["status"]) == ("stage", "in_progress")
    assert stage["deployment_id"] == shipped.deployment("stage", C)["id"]
    assert dev["updated_at"] <= stage["updated_at"]
    assert production == {
        "name": "production",
        "status": None,
        "deployment_id": None,
        "url": None,
        "updated_at": None,
    }
    # The emulator's address is no GitHub web address: no link is made up.
    assert dev["url"] is None

    everywhere = (await status_of(api, A)).json()
    assert everywhere["status"] == "success"
    assert [e["status"] for e in everywhere["environments"]] == ["success"] * 3

    never_deployed = (await status_of(api, D)).json()
    assert never_deployed["status"] is None
    assert [e["status"] for e in never_deployed["environments"]] == [None] * 3


async def test_status_by_abbreviation(api: httpx.AsyncClient, shipped: Releases) -> None:
    for commit in [A[:7], A[:12].upper(), "cafe1230"]:
        response = await status_of(api, commit)
        assert response.status_code == 200, (commit, response.text)
        assert response.json()["commit_sha"] == (A if commit[0] in "aA" else C)
    ambiguous = await status_of(api, "cafe123")
    assert ambiguous.status_code == 400
    assert C in ambiguous.json()["detail"] and D in ambiguous.json()["detail"]
    # GitHub's names are case-insensitive; the answer uses the stored spelling.
    shouted = await status_of(api, B, repository=REPOSITORY.upper())
    assert shouted.status_code == 200 and shouted.json()["repository"] == REPOSITORY


async def test_status_of_unknown_or_malformed_things(
    api: httpx.AsyncClient, shipped: Releases
) -> None:
    unknown_repository = await status_of(api, A, repository="acme/nothing")
    assert unknown_repository.status_code == 404
    assert "acme/nothing" in unknown_repository.json()["detail"]
    unknown_commit = await status_of(api, "0123456789")
    assert unknown_commit.status_code == 404
    assert "0123456789" in unknown_commit.json()["detail"]
    for repository, commit in [
        ("acme", A),
        ("acme/api/extra", A),
        ("acme/<script>", A),
        (REPOSITORY, "abc"),
        (REPOSITORY, "xyz1234"),
        (REPOSITORY, A + "0"),
    ]:
        response = await status_of(api, commit, repository=repository)
        assert response.status_code == 422, (repository, commit)
    missing = await api.get("/api/v1/deploy/status", params={"repository": REPOSITORY})
    assert missing.status_code == 422


# --- GET /api/v1/deployments -------------------------------------------------------------


async def test_deployments_newest_first_with_filters(
    api: httpx.AsyncClient, shipped: Releases
) -> None:
    everything = (await api.get("/api/v1/deployments")).json()
    assert len(everything) == 8
    ids = [d["id"] for d in everything]
    assert ids == sorted(ids, reverse=True)
    newest = everything[0]
    assert newest["commit_sha"] == C and newest["environment"] == "stage"
    assert newest["status"] == "in_progress" and newest["kind"] == "deploy"
    assert newest["deployment_id"] == shipped.deployment("stage", C)["id"]
    assert newest["requested_by"] == {"github": "alice", "slack": None}
    assert newest["repository"] == REPOSITORY and newest["replaces"] is None
    assert newest["created_at"] <= newest["updated_at"]

    async def listed(**params: Any) -> list[tuple[str, str, str]]:
        response = await api.get("/api/v1/deployments", params=params)
        assert response.status_code == 200, response.text
        return [(d["environment"], d["commit_sha"], d["status"]) for d in response.json()]

    assert await listed(environment="PRODUCTION") == [
        ("production", B, "success"),
        ("production", A, "success"),
    ]
    assert await listed(status="in_progress") == [("stage", C, "in_progress")]
    assert await listed(repository="ACME/API", environment="dev", limit=2) == [
        ("dev", C, "success"),
        ("dev", B, "success"),
    ]
    assert len(await listed(repository=REPOSITORY, limit=500)) == 8
    assert await listed(repository="acme/nothing") == []
    assert await listed(status="rolled_back") == []
    for params in [{"limit": 0}, {"limit": 501}, {"status": "done"}, {"repository": "acme"}]:
        response = await api.get("/api/v1/deployments", params=params)
        assert response.status_code == 422, params


# --- POST /api/v1/rollback ---------------------------------------------------------------


async def test_rollback_deploys_the_previous_good_commit(
    api: httpx.AsyncClient, shipped: Releases, slack: SlackEmulator
) -> None:
    replaced = (await api.get("/api/v1/deployments", params={"environment": "production"})).json()
    response = await api.post(
        "/api/v1/rollback", json={"repository": REPOSITORY, "environment": "production"}
    )
    assert response.status_code == 202, response.text
    rollback = response.json()
    assert rollback["kind"] == "rollback" and rollback["environment"] == "production"
    assert rollback["commit_sha"] == A and rollback["status"] == "pending"
    assert rollback["deployment_id"] is None, "the dispatcher creates it after the answer"
    assert rollback["replaces"] == replaced[0]["id"]
    assert rollback["requested_by"] == {"github": "api", "slack": None}

    await shipped.settle()
    deployment = shipped.deployment("production", A)
    assert deployment["payload"]["rollout"] == rollback["id"]
    assert deployment["payload"]["kind"] == "rollback"
    assert shipped.github.invalid_requests == []
    assert "api is rolling `production` back from bbbbbbb to aaaaaaa" in slack.transcript(CHANNEL)
    (listed, *_) = (
        await api.get("/api/v1/deployments", params={"environment": "production"})
    ).json()
    assert listed["id"] == rollback["id"] and listed["deployment_id"] == deployment["id"]

    await shipped.deliver("deployment_status", deployment_status(deployment["id"], "success"))
    undone = (await status_of(api, B)).json()
    assert undone["status"] == "rolled_back"
    assert [e["status"] for e in undone["environments"]] == ["success", "success", "rolled_back"]
    assert (await status_of(api, A)).json()["environments"][2]["deployment_id"] == deployment["id"]


async def test_rollback_to_the_expected_target(api: httpx.AsyncClient, shipped: Releases) -> None:
    response = await api.post(
        "/api/v1/rollback",
        json={"repository": REPOSITORY, "environment": "dev", "target_commit": "BBBBBBB"},
    )
    assert response.status_code == 202, response.text
    assert response.json()["commit_sha"] == B
    await shipped.settle()
    assert shipped.deployment("dev", B)["payload"]["kind"] == "rollback"


async def test_rollback_refusals(api: httpx.AsyncClient, shipped: Releases) -> None:
    async def refused(body: dict[str, Any], status: int = 409) -> str:
        response = await api.post("/api/v1/rollback", json=body)
        assert response.status_code == status, response.text
        return response.json()["detail"] if status != 422 else ""

    production = {"repository": REPOSITORY, "environment": "production"}
    assert "goes to aaaaaaa" in await refused({**production, "target_commit": B})
    assert "never succeeded" in await refused({**production, "target_commit": C})
    assert "no record of acme/nothing" in await refused(
        {**production, "repository": "acme/nothing"}, 404
    )
    assert "Nothing has been deployed to `qa`" in await refused({**production, "environment": "qa"})
    stage = {**production, "environment": "stage"}
    assert "`stage` is in_progress" in await refused({**stage, "target_commit": A})
    await refused({**production, "target_commit": "not-a-sha"}, 422)
    await refused({**production, "force": True}, 422)
    await refused({"repository": REPOSITORY}, 422)
    assert len([d for d in shipped.github.deployments(OWNER, NAME)]) == 8, "nothing deployed"

    first = await api.post("/api/v1/rollback", json=production)
    assert first.status_code == 202
    assert "already being rolled back" in await refused(production)
    await shipped.settle()
    assert len(shipped.github.deployments(OWNER, NAME)) == 9, "exactly one rollback"


async def test_the_audit_log_says_who_did_what_from_where(
    api: httpx.AsyncClient, shipped: Releases
) -> None:
    refused = await api.post(
        "/api/v1/rollback", json={"repository": REPOSITORY, "environment": "qa"}
    )
    assert refused.status_code == 409
    response = await api.get("/api/v1/audit", params={"repository": REPOSITORY})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    asked = [e for e in lines if e["action"] == "deploy"]
    assert len(asked) == 8 and {e["source"] for e in asked} == {"github"}
    assert asked[0]["actor"] == "alice" and asked[0]["commit_sha"] == A
    assert asked[0]["detail"]["rollouts"][0]["status"] == "pending"
    reported = [e for e in lines if e["action"] == "deployment success"]
    assert len(reported) == 7 and reported[0]["environment"] == "dev"
    # A refusal that saved nothing is still on record, with its reason.
    (api_refusal,) = [e for e in lines if e["source"] == "api"]
    assert api_refusal["action"] == "rollback" and api_refusal["actor"] == "api"
    assert "Nothing has been deployed to `qa`" in api_refusal["detail"]["refused"]
    ids = [e["id"] for e in lines]
    assert ids == sorted(ids)

    page = await api.get("/api/v1/audit", params={"after": ids[-3], "limit": 2})
    assert [json.loads(line)["id"] for line in page.text.splitlines()] == ids[-2:]
    later = await api.get("/api/v1/audit", params={"since": "2999-01-01T00:00:00"})
    assert later.status_code == 200 and later.text == ""
    assert (await api.get("/api/v1/audit", params={"repository": "acme/other"})).text == ""
    assert (await api.get("/api/v1/audit", params={"since": "soon"})).status_code == 422


def test_github_web_addresses() -> None:
    assert github_web_url("https://api.github.com") == "https://github.com"
    assert github_web_url("https://api.github.com/") == "https://github.com"
    assert github_web_url("https://ghe.example.com/api/v3") == "https://ghe.example.com"
    assert github_web_url("http://127.0.0.1:8123") is None
