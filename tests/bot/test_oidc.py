"""The REST API with GitHub Actions OIDC tokens, through the real app (in process) on both
databases, with the OIDC issuer emulator standing in for token.actions.githubusercontent.com:
an OIDC caller sees and acts on its own repository only; bad tokens get 401 with a reason;
an issuer whose keys cannot be fetched gets 503."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI

from bot.app import create_app
from integrations.emulators.github import GitHubEmulator
from integrations.emulators.oidc import OIDCEmulator, SigningKey
from integrations.emulators.slack import SlackEmulator
from integrations.oidc import OIDCVerifier
from tests.bot.test_api import CHANNEL, PIPELINE, TOKEN, A, B, C, Releases
from tests.story import NAME, OWNER, REPOSITORY, installation_created

OTHER = "acme/web"  # a repository of the same owner, with a workflow of its own


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def issuer() -> Iterator[OIDCEmulator]:
    with OIDCEmulator() as emulator:
        yield emulator


@pytest.fixture
def settings_for(make_settings, database_url: str, slack: SlackEmulator, github: GitHubEmulator):
    def settings(**env: str):
        return make_settings(
            DATABASE_URL=database_url,
            SLACK_API_URL=slack.url,
            GITHUB_API_URL=github.url,
            **env,
        )

    return settings


@contextlib.asynccontextmanager
async def running(settings: Any, oidc: OIDCVerifier | None = None) -> AsyncIterator[FastAPI]:
    app = create_app(settings, oidc=oidc)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def oidc_app(settings_for, issuer: OIDCEmulator) -> AsyncIterator[FastAPI]:
    """The app with a static token too, trusting the emulator as its OIDC issuer (through
    the settings, as an operator would configure it)."""
    settings = settings_for(DEPLOYBOT_API_TOKEN=TOKEN, DEPLOYBOT_OIDC_ISSUER=issuer.url)
    async with running(settings) as app:
        yield app


def client_of(app: FastAPI, bearer: str | None = None) -> httpx.AsyncClient:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://deploybot", headers=headers
    )


@pytest.fixture
async def shipped(oidc_app: FastAPI, github: GitHubEmulator) -> AsyncIterator[Releases]:
    """acme/api: A and B everywhere, C done in dev and deploying to stage."""
    github.set_file(OWNER, NAME, ".github/deploybot.yml", PIPELINE)
    github.set_permission(OWNER, NAME, "alice", "write")
    async with client_of(oidc_app) as client:
        releases = Releases(oidc_app, client, github)
        await releases.deliver("installation", installation_created())
        for number, sha in [(1, A), (2, B)]:
            await releases.open(number, sha)
            for environment in ["dev", "stage", "production"]:
                await releases.deploy(number, environment, "success")
        await releases.open(3, C)
        await releases.deploy(3, "dev", "success")
        await releases.deploy(3, "stage", "in_progress")
        yield releases


async def status_of(client: httpx.AsyncClient, repository: str, commit: str) -> httpx.Response:
    return await client.get(
        "/api/v1/deploy/status", params={"repository": repository, "commit": commit}
    )


# --- an OIDC caller and its repository -----------------------------------------------------


async def test_a_workflow_sees_its_own_repository(
    oidc_app: FastAPI, shipped: Releases, issuer: OIDCEmulator
) -> None:
    async with client_of(oidc_app, issuer.mint(repository=REPOSITORY, actor="carol")) as own:
        status = await status_of(own, REPOSITORY, C)
        assert status.status_code == 200, status.text
        assert status.json()["status"] == "in_progress"
        # GitHub's names are case-insensitive, and so is the check.
        assert (await status_of(own, REPOSITORY.upper(), A)).status_code == 200

        listed = (await own.get("/api/v1/deployments")).json()
        assert len(listed) == 8 and {d["repository"] for d in listed} == {REPOSITORY}
        filtered = await own.get("/api/v1/deployments", params={"repository": "ACME/API"})
        assert len(filtered.json()) == 8

        audit = await own.get("/api/v1/audit")
        entries = [json.loads(line) for line in audit.text.splitlines()]
        assert entries and {e["repository"] for e in entries} == {REPOSITORY}


async def test_a_workflow_rolls_back_its_own_repository_as_its_actor(
    oidc_app: FastAPI, shipped: Releases, issuer: OIDCEmulator, slack: SlackEmulator
) -> None:
    async with client_of(oidc_app, issuer.mint(repository=REPOSITORY, actor="carol")) as own:
        response = await own.post(
            "/api/v1/rollback", json={"repository": REPOSITORY, "environment": "production"}
        )
        assert response.status_code == 202, response.text
        rollback = response.json()
        assert rollback["kind"] == "rollback" and rollback["commit_sha"] == A
        assert rollback["requested_by"] == {"github": "carol", "slack": None}
        await shipped.settle()
        assert shipped.deployment("production", A)["payload"]["rollout"] == rollback["id"]
        assert "carol is rolling `production` back from bbbbbbb to aaaaaaa" in slack.transcript(
            CHANNEL
        )
        audit = [json.loads(line) for line in (await own.get("/api/v1/audit")).text.splitlines()]
        (entry,) = [e for e in audit if e["source"] == "api"]
        assert (entry["actor"], entry["action"]) == ("carol", "rollback")


async def test_a_workflow_of_another_repository_is_refused(
    oidc_app: FastAPI, shipped: Releases, issuer: OIDCEmulator
) -> None:
    deployed = len(shipped.github.deployments(OWNER, NAME))
    async with client_of(oidc_app, issuer.mint(repository=OTHER, actor="mallory")) as other:
        refusals = [
            await status_of(other, REPOSITORY, A),
            await other.get("/api/v1/deployments", params={"repository": REPOSITORY}),
            await other.get("/api/v1/audit", params={"repository": REPOSITORY}),
            await other.post(
                "/api/v1/rollback", json={"repository": REPOSITORY, "environment": "production"}
            ),
            # The same answer for a repository deploybot has never heard of: no probing.
            await status_of(other, "acme/secret-project", A),
        ]
        for response in refusals:
            assert response.status_code == 403, response.text
            assert response.json()["detail"].startswith(
                f"This OIDC token is for {OTHER}: it may see and act on {OTHER} only, not "
            )
        assert refusals[0].json()["detail"].endswith(f"not {REPOSITORY}.")
        # Listings without a repository are its own: empty, though acme/api has plenty.
        assert (await other.get("/api/v1/deployments")).json() == []
        assert (await other.get("/api/v1/audit")).text == ""
        # Its own repository, unknown to deploybot, is a plain 404.
        assert (await status_of(other, OTHER, A)).status_code == 404
    await shipped.settle()
    assert len(shipped.github.deployments(OWNER, NAME)) == deployed, "nothing rolled back"


async def test_the_static_token_still_sees_everything(oidc_app: FastAPI, shipped: Releases) -> None:
    async with client_of(oidc_app, TOKEN) as api:
        assert len((await api.get("/api/v1/deployments")).json()) == 8
        assert (await status_of(api, REPOSITORY, A)).status_code == 200


async def test_oidc_alone_without_a_static_token(settings_for, issuer: OIDCEmulator) -> None:
    settings = settings_for(DEPLOYBOT_OIDC_ISSUER=issuer.url)
    async with running(settings) as app:
        async with client_of(app, issuer.mint(repository=OTHER)) as own:
            assert (await own.get("/api/v1/deployments")).json() == []
        async with client_of(app, "api-token-for-tests-0123456789") as stranger:
            response = await stranger.get("/api/v1/deployments")
            assert response.status_code == 401
            assert "DEPLOYBOT_API_TOKEN is not set" in response.json()["detail"]
        async with client_of(app) as nobody:
            detail = (await nobody.get("/api/v1/deployments")).json()["detail"]
            assert "id-token: write" in detail and "audience `deploybot`" in detail


# --- refused tokens --------------------------------------------------------------------------


def _segment(value: dict[str, Any] | bytes) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def forged(issuer: OIDCEmulator, alg: str) -> str:
    """A token whose header says `alg`: unsigned for `none`, else HMAC-signed with the
    issuer's public key as the secret (the classic algorithm confusion)."""
    header = _segment({"typ": "JWT", "alg": alg, "kid": issuer.signing_key.kid})
    signing_input = f"{header}.{_segment(issuer.claims())}"
    if alg == "none":
        return signing_input + "."
    secret = issuer.signing_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_segment(signature)}"


async def test_bad_tokens_get_401_with_the_reason(oidc_app: FastAPI, issuer: OIDCEmulator) -> None:
    now = time.time()
    cases = {
        "it has expired": issuer.mint(issued_at=now - 900),
        "its audience is not `deploybot`": issuer.mint(aud="https://github.com/acme"),
        f"it was not issued by {issuer.url}": issuer.mint(
            iss="https://token.actions.githubusercontent.com"
        ),
        "its signature does not verify": issuer.mint(
            key=SigningKey(issuer.signing_key.kid, SigningKey.generate().private_key)
        ),
        f"it is signed with a key {issuer.url} does not publish": issuer.mint(
            key=SigningKey.generate()
        ),
        "it has no `repository` claim": issuer.mint(repository=None),
        "it has no `repository_owner` claim": issuer.mint(repository_owner=None),
        "it has no `sub` claim": issuer.mint(sub=None),
        "it is signed with `none`; only RS256 is": forged(issuer, "none"),
        "it is signed with `HS256`; only RS256 is": forged(issuer, "HS256"),
    }
    for reason, token in cases.items():
        async with client_of(oidc_app, token) as client:
            for response in [
                await client.get("/api/v1/deployments"),
                await client.post(
                    "/api/v1/rollback", json={"repository": REPOSITORY, "environment": "dev"}
                ),
            ]:
                assert response.status_code == 401, (reason, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["detail"] == f"The OIDC token was refused: {reason}."
                assert token not in response.text


async def test_a_bearer_that_is_neither_token_nor_jwt(oidc_app: FastAPI) -> None:
    async with client_of(oidc_app, "not-the-token") as client:
        response = await client.get("/api/v1/deployments")
    assert response.status_code == 401
    assert response.json()["detail"] == (
        "The bearer token is neither the one in DEPLOYBOT_API_TOKEN nor an OIDC token (a JWT)."
    )


# --- the issuer's keys ---------------------------------------------------------------------


async def test_keys_are_cached_and_a_rotated_key_is_fetched(
    settings_for, issuer: OIDCEmulator
) -> None:
    clock = Clock()
    verifier = OIDCVerifier(issuer=issuer.url, audience="deploybot", clock=clock)
    async with running(settings_for(), oidc=verifier) as app:
        for _ in range(3):
            async with client_of(app, issuer.mint(repository=OTHER)) as client:
                assert (await client.get("/api/v1/deployments")).status_code == 200
        assert issuer.requests_to("jwks") == 1, "cached"

        clock.now += 60
        issuer.rotate(keep_old=False)
        rotated = issuer.mint(repository=OTHER)
        async with client_of(app, rotated) as client:
            assert (await client.get("/api/v1/deployments")).status_code == 200
            assert (await client.get("/api/v1/audit")).status_code == 200
        assert issuer.requests_to("jwks") == 2, "one refetch for the new key, then cached"


async def test_an_issuer_whose_keys_cannot_be_fetched_gives_503(
    settings_for, issuer: OIDCEmulator
) -> None:
    issuer.fail("jwks", status=502, times=100)
    settings = settings_for(DEPLOYBOT_API_TOKEN=TOKEN, DEPLOYBOT_OIDC_ISSUER=issuer.url)
    async with running(settings) as app:
        token = issuer.mint()
        async with client_of(app, token) as client:
            response = await client.post(
                "/api/v1/rollback", json={"repository": REPOSITORY, "environment": "dev"}
            )
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "30"
        detail = response.json()["detail"]
        assert detail.startswith("deploybot cannot check OIDC tokens right now (the keys of ")
        assert f"{issuer.url}/.well-known/jwks answered 502" in detail
        assert "use DEPLOYBOT_API_TOKEN" in detail and token not in detail
        # The static token does not depend on the issuer.
        async with client_of(app, TOKEN) as api:
            assert (await api.get("/api/v1/deployments")).status_code == 200
