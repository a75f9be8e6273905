"""The GitHub emulator, over real HTTP: routing, validation, auth, state, faults.

Its answers are checked with githubkit itself, the client the bot uses.
"""

from __future__ import annotations

import base64
import inspect
import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from githubkit import AppAuthStrategy, AppInstallationAuthStrategy, GitHub
from githubkit.cache import MemCacheStrategy
from githubkit.exception import RequestFailed

from integrations.emulators.github import (
    APP_JWT_OPERATIONS,
    GitHubEmulator,
    Spec,
    default_spec_path,
    load_spec,
)

APP_ID = 123
ROOT = Path(__file__).resolve().parents[2]


def _pem_pair() -> tuple[str, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


SSL_CONTEXT = httpx.create_ssl_context()  # built once: loading the CA bundle is slow


def _github(auth: Any, url: str) -> GitHub[Any]:
    # A cache of its own: githubkit's default one is process-wide, so a JWT or token from
    # another test (another key, another emulator) would be reused.
    return GitHub(
        auth,
        base_url=url,
        auto_retry=False,
        cache_strategy=MemCacheStrategy(),
        ssl_verify=SSL_CONTEXT,
    )


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return _pem_pair()


@pytest.fixture
def gh(keys: tuple[str, str]) -> Any:
    with GitHubEmulator(app_id=APP_ID, app_public_key=keys[1]) as emulator:
        yield emulator


@pytest.fixture
def token(gh: GitHubEmulator, keys: tuple[str, str]) -> str:
    """An installation token obtained the way the bot does (githubkit's App auth)."""
    app = _github(AppAuthStrategy(APP_ID, keys[0]), gh.url)
    return app.rest.apps.create_installation_access_token(7).parsed_data.token


@pytest.fixture
def http(gh: GitHubEmulator, token: str) -> Any:
    with httpx.Client(base_url=gh.url, headers={"Authorization": f"token {token}"}) as client:
        yield client


def test_the_spec_is_found_beside_the_project() -> None:
    assert default_spec_path() == (
        ROOT.parent / "shared" / "corpora" / "github-rest" / "openapi-subset.json"
    )


@pytest.fixture(scope="module")
def spec() -> Spec:
    return load_spec(default_spec_path().resolve())


def test_every_operation_routes_by_its_template(spec: Spec) -> None:
    values = {"path": "docs/deep/file.yml", "ref": "heads/feature/x", "branch": "release/1"}
    assert len(spec.operations) == 34
    for operation in spec.operations:
        path = re.sub(
            r"\{([^}]+)\}",
            lambda m: values.get(m[1], "42" if m[1].endswith(("_id", "_number")) else "word"),
            operation.template,
        )
        routed = spec.match(operation.method, path)
        assert routed is not None, path
        assert routed[0].operation_id == operation.operation_id, path


def test_templates_with_special_segments(spec: Spec) -> None:
    compare = spec.match("GET", "/repos/o/r/compare/main...feature")
    assert compare is not None
    assert compare[0].operation_id == "repos/compare-commits"
    assert compare[1] == {"owner": "o", "repo": "r", "base": "main", "head": "feature"}
    content = spec.match("GET", "/repos/o/r/contents/.github/deploybot.yml")
    assert content is not None
    assert content[1]["path"] == ".github/deploybot.yml"
    status = spec.match("GET", "/repos/o/r/commits/abc/status")
    assert status is not None
    assert status[0].operation_id == "repos/get-combined-status-for-ref"
    assert spec.match("GET", "/repos/o/r/deployments/not-a-number") is None


def _githubkit_method(github: GitHub[Any], operation_id: str) -> Any:
    """githubkit's method for an operation: its docstring starts with the operationId."""
    namespace = getattr(github.rest, operation_id.split("/")[0])
    for name in dir(type(namespace)):
        method = getattr(namespace, name)
        if name.startswith("async_") and (method.__doc__ or "").strip().startswith(
            operation_id + "\n"
        ):
            return method
    raise LookupError(operation_id)


def _request_example(spec: Spec, template: str, method: str) -> Any:
    body = spec.resolve(spec.document["paths"][template][method.lower()]["requestBody"])
    examples = body["content"]["application/json"]["examples"]
    return spec.resolve(next(iter(examples.values())))["value"]


async def test_every_documented_example_is_served_and_parses_with_githubkit(
    gh: GitHubEmulator, keys: tuple[str, str]
) -> None:
    gh.set_file("octocat", "Hello-World", "README.md", "Hello\n")
    gh.set_permission("octocat", "Hello-World", "octocat", "admin")
    as_app = _github(AppAuthStrategy(APP_ID, keys[0]), gh.url)
    as_installation = _github(AppInstallationAuthStrategy(APP_ID, keys[0], 7), gh.url)
    values: dict[str, Any] = {
        "owner": "octocat",
        "repo": "Hello-World",
        "path": "README.md",
        "ref": "main",
        "branch": "main",
        "basehead": "main...topic",
        "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
        "org": "acme",
        "team_slug": "sre",
        "username": "octocat",
    }
    # Created first, so the reads of deployments find one.
    operations = sorted(
        gh.spec.operations, key=lambda op: op.operation_id != "repos/create-deployment"
    )
    for operation in operations:
        client = as_app if operation.operation_id in APP_JWT_OPERATIONS else as_installation
        method = _githubkit_method(client, operation.operation_id)
        args = [
            values.get(p.name, 1)
            for p in inspect.signature(method).parameters.values()
            if p.kind is p.POSITIONAL_OR_KEYWORD
        ]
        kwargs = {}
        if operation.validator is not None:
            kwargs["data"] = _request_example(gh.spec, operation.template, operation.method)
        response = await method(*args, **kwargs)
        assert response.status_code == operation.status, operation.operation_id
        if operation.example is not None:
            assert response.parsed_data is not None, operation.operation_id
        if operation.operation_id == "repos/create-deployment":
            values["deployment_id"] = response.parsed_data.id
    assert gh.invalid_requests == []
    assert {call.operation_id for call in gh.calls} >= {op.operation_id for op in operations}


def test_unknown_route_is_githubs_404(http: httpx.Client) -> None:
    response = http.get("/repos/o/r/nothing-here")
    assert response.status_code == 404
    assert response.json()["message"] == "Not Found"
    assert "documentation_url" in response.json()


def test_a_wrong_body_is_rejected_and_recorded(gh: GitHubEmulator, http: httpx.Client) -> None:
    response = http.post("/repos/o/r/deployments", json={"environment": 5})
    assert response.status_code == 422
    error = response.json()
    assert error["message"].startswith("Invalid request.")
    assert "'ref' is a required property" in error["message"]
    assert error["errors"]
    assert [bad.call.operation_id for bad in gh.invalid_requests] == ["repos/create-deployment"]
    assert any("environment" in problem for problem in gh.invalid_requests[0].errors)
    assert gh.calls_to("repos/create-deployment")[0].status == 422


def test_schemas_behind_refs_are_checked(gh: GitHubEmulator, http: httpx.Client) -> None:
    # The body is `anyOf` two `$ref`s; both need `environment_name`.
    response = http.post(
        "/repos/o/r/actions/runs/1/deployment_protection_rule", json={"state": "approved"}
    )
    assert response.status_code == 422
    assert len(gh.invalid_requests) == 1


def test_unparsable_json_is_a_400(http: httpx.Client) -> None:
    response = http.post(
        "/repos/o/r/deployments", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400


def test_nullable_fields_accept_null(gh: GitHubEmulator, http: httpx.Client) -> None:
    response = http.post("/repos/o/r/deployments", json={"ref": "main", "description": None})
    assert response.status_code == 201
    assert gh.invalid_requests == []


def test_app_jwt_signed_by_another_key_is_refused(gh: GitHubEmulator) -> None:
    intruder, _ = _pem_pair()
    github = _github(AppAuthStrategy(APP_ID, intruder), gh.url)
    with pytest.raises(RequestFailed) as refused:
        github.rest.apps.get_authenticated()
    assert refused.value.response.status_code == 401


def test_app_jwt_for_another_app_is_refused(gh: GitHubEmulator, keys: tuple[str, str]) -> None:
    other = _github(AppAuthStrategy(999, keys[0]), gh.url)
    with pytest.raises(RequestFailed) as refused:
        other.rest.apps.get_authenticated()
    assert refused.value.response.status_code == 401
    own = _github(AppAuthStrategy(str(APP_ID), keys[0]), gh.url)
    assert own.rest.apps.get_authenticated().status_code == 200


def test_app_jwt_issuer_may_be_a_number(gh: GitHubEmulator, keys: tuple[str, str]) -> None:
    now = int(time.time())
    claims = {"iss": APP_ID, "iat": now - 60, "exp": now + 540}
    # PyJWT's encode insists on a string `iss`; GitHub also takes the App id as a number.
    token = jwt.api_jws.encode(json.dumps(claims).encode(), keys[0], algorithm="RS256")
    response = httpx.get(f"{gh.url}/app", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_app_jwt_must_be_short_lived(gh: GitHubEmulator, keys: tuple[str, str]) -> None:
    now = int(time.time())
    token = jwt.encode({"iss": str(APP_ID), "iat": now, "exp": now + 3600}, keys[0], "RS256")
    response = httpx.get(f"{gh.url}/app", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_app_routes_want_a_jwt_not_a_token(http: httpx.Client) -> None:
    assert http.get("/app").status_code == 401


def test_other_routes_want_an_issued_token(gh: GitHubEmulator, token: str) -> None:
    with httpx.Client(base_url=gh.url) as client:
        assert client.get("/repos/o/r").status_code == 401
        made_up = {"Authorization": "token ghs_madeup"}
        response = client.get("/repos/o/r", headers=made_up)
        assert (response.status_code, response.json()["message"]) == (401, "Bad credentials")
        assert client.get("/repos/o/r", headers={"Authorization": f"token {token}"}).is_success
        assert client.get("/repos/o/r", headers={"Authorization": f"Bearer {token}"}).is_success


def test_access_tokens_are_fresh_and_counted(gh: GitHubEmulator, keys: tuple[str, str]) -> None:
    app = _github(AppAuthStrategy(APP_ID, keys[0]), gh.url)
    first = app.rest.apps.create_installation_access_token(7).parsed_data
    second = app.rest.apps.create_installation_access_token(7).parsed_data
    assert first.token != second.token
    assert first.token.startswith("ghs_")
    expires = datetime.strptime(first.expires_at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert 3590 < (expires - datetime.now(UTC)).total_seconds() <= 3600
    assert gh.tokens_issued == 2
    assert gh.issued_tokens == [first.token, second.token]


def test_expired_tokens_are_refused(keys: tuple[str, str]) -> None:
    with GitHubEmulator(app_id=APP_ID, app_public_key=keys[1], token_ttl=0) as gh:
        app = _github(AppAuthStrategy(APP_ID, keys[0]), gh.url)
        token = app.rest.apps.create_installation_access_token(7).parsed_data.token
        time.sleep(0.01)
        response = httpx.get(f"{gh.url}/repos/o/r", headers={"Authorization": f"token {token}"})
        assert response.status_code == 401


def test_deployments_are_remembered(gh: GitHubEmulator, http: httpx.Client) -> None:
    sha = "a" * 40
    stage = http.post(
        "/repos/Acme/api/deployments",
        json={"ref": sha, "environment": "stage", "payload": {"rollout": 7}, "task": "deploy"},
    ).json()
    prod = http.post(
        "/repos/acme/api/deployments", json={"ref": "main", "environment": "production"}
    ).json()
    assert stage["sha"] == sha
    assert stage["payload"] == {"rollout": 7}
    assert stage["environment"] == "stage"
    assert re.fullmatch(r"[0-9a-f]{40}", prod["sha"])
    assert prod["id"] > stage["id"]

    listed = http.get("/repos/acme/api/deployments").json()
    assert [d["id"] for d in listed] == [prod["id"], stage["id"]]
    assert [d["id"] for d in http.get("/repos/acme/api/deployments?environment=stage").json()] == [
        stage["id"]
    ]
    assert [d["id"] for d in http.get(f"/repos/acme/api/deployments?sha={sha}").json()] == [
        stage["id"]
    ]
    assert http.get("/repos/acme/api/deployments?ref=main").json()[0]["id"] == prod["id"]
    assert http.get("/repos/acme/other/deployments").json() == []
    assert http.get(f"/repos/acme/api/deployments/{stage['id']}").json() == stage
    assert http.get("/repos/acme/api/deployments/99999").status_code == 404
    assert [d["id"] for d in gh.deployments("acme", "api")] == [prod["id"], stage["id"]]


def test_deployment_statuses_are_remembered(http: httpx.Client) -> None:
    deployment = http.post("/repos/o/r/deployments", json={"ref": "main", "environment": "qa"})
    url = f"/repos/o/r/deployments/{deployment.json()['id']}/statuses"
    first = http.post(url, json={"state": "in_progress", "log_url": "https://ci/1"})
    second = http.post(url, json={"state": "success", "description": "done"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["environment"] == "qa"
    assert first.json()["log_url"] == "https://ci/1"
    assert [s["state"] for s in http.get(url).json()] == ["success", "in_progress"]
    assert http.post(url, json={"state": "sideways"}).status_code == 422
    assert http.get("/repos/o/r/deployments/99999/statuses").status_code == 404
    assert (
        http.post("/repos/o/r/deployments/99999/statuses", json={"state": "success"}).status_code
        == 404
    )


def test_files_are_served_with_their_blob_sha(gh: GitHubEmulator, http: httpx.Client) -> None:
    gh.set_file("o", "r", ".github/deploybot.yml", "hello\n")
    gh.set_file("o", "r", ".github/deploybot.yml", "from a branch\n", ref="feature")
    body = http.get("/repos/o/r/contents/.github/deploybot.yml").json()
    assert base64.b64decode(body["content"]) == b"hello\n"
    # `git hash-object` of "hello\n"
    assert body["sha"] == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert (body["name"], body["path"], body["size"]) == (
        "deploybot.yml",
        ".github/deploybot.yml",
        6,
    )
    branch = http.get("/repos/o/r/contents/.github/deploybot.yml?ref=feature").json()
    assert base64.b64decode(branch["content"]) == b"from a branch\n"
    other = http.get("/repos/o/r/contents/.github/deploybot.yml?ref=main").json()
    assert base64.b64decode(other["content"]) == b"hello\n"
    assert http.get("/repos/o/r/contents/missing.yml").status_code == 404


def test_permissions_are_served(gh: GitHubEmulator, http: httpx.Client) -> None:
    gh.set_permission("o", "r", "alice", "write")
    gh.set_permission("o", "r", "carol", "maintain")
    alice = http.get("/repos/o/r/collaborators/alice/permission").json()
    assert (alice["permission"], alice["user"]["login"]) == ("write", "alice")
    assert http.get("/repos/o/r/collaborators/carol/permission").json()["permission"] == "write"
    assert http.get("/repos/o/r/collaborators/mallory/permission").json()["permission"] == "none"
    with pytest.raises(ValueError):
        gh.set_permission("o", "r", "x", "owner")


def _next_link(response: httpx.Response) -> str | None:
    return response.links.get("next", {}).get("url")


def test_comments_are_remembered_and_listed_oldest_first_page_by_page(
    gh: GitHubEmulator, http: httpx.Client, keys: tuple[str, str]
) -> None:
    posted = [
        http.post("/repos/Acme/api/issues/5/comments", json={"body": f"c{n}"}).json()
        for n in range(5)
    ]
    http.post("/repos/acme/api/issues/6/comments", json={"body": "another pull request"})
    assert [c["id"] for c in gh.comments("acme", "api", 5)] == [c["id"] for c in posted]

    pages, url = [], "/repos/acme/api/issues/5/comments?per_page=2"
    while url is not None:
        response = http.get(url)
        assert response.status_code == 200
        pages.append([c["body"] for c in response.json()])
        url = _next_link(response)
    assert pages == [["c0", "c1"], ["c2", "c3"], ["c4"]]
    first = http.get("/repos/acme/api/issues/5/comments?per_page=2")
    assert (
        first.links["next"]["url"] == f"{gh.url}/repos/acme/api/issues/5/comments?per_page=2&page=2"
    )
    assert first.links["last"]["url"].endswith("per_page=2&page=3")
    assert first.json() == posted[:2]  # what `issues/create-comment` answered, as it was
    assert http.get("/repos/acme/api/issues/5/comments?per_page=2&page=9").json() == []
    assert "link" not in http.get("/repos/acme/api/issues/5/comments").headers
    assert http.get("/repos/acme/api/issues/7/comments").json() == []

    # githubkit, the bot's client, reads the list as GitHub's.
    github = _github(AppInstallationAuthStrategy(APP_ID, keys[0], 7), gh.url)
    listed = github.rest.issues.list_comments("acme", "api", 6).parsed_data
    assert [c.body for c in listed] == ["another pull request"]


def test_listed_comments_are_those_updated_since(gh: GitHubEmulator, http: httpx.Client) -> None:
    now = datetime.now(UTC)
    old = gh.add_comment("o", "r", 5, "two hours ago", at=now - timedelta(hours=2))
    gh.add_comment("o", "r", 5, "half an hour ago", at=now - timedelta(minutes=30))
    http.post("/repos/o/r/issues/5/comments", json={"body": "now"})

    def since(moment: datetime) -> list[str]:
        stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
        response = http.get("/repos/o/r/issues/5/comments", params={"since": stamp})
        assert response.status_code == 200
        return [c["body"] for c in response.json()]

    assert since(now - timedelta(hours=1)) == ["half an hour ago", "now"]
    assert since(now - timedelta(minutes=30)) == ["half an hour ago", "now"]  # at or after
    assert since(now + timedelta(hours=1)) == []
    # An edit counts as an update: the old comment is listed again, in its place.
    http.patch(f"/repos/o/r/issues/comments/{old['id']}", json={"body": "edited"})
    assert since(now - timedelta(hours=1)) == ["edited", "half an hour ago", "now"]
    # Paging keeps `since`.
    first = http.get(
        "/repos/o/r/issues/5/comments",
        params={"since": (now - timedelta(hours=3)).strftime("%Y-%m-%dT%H:%M:%SZ"), "per_page": 1},
    )
    assert "since=" in (_next_link(first) or "")

    refused = http.get("/repos/o/r/issues/5/comments", params={"since": "2026-01-01 10:00:00"})
    assert refused.status_code == 422
    assert "ISO 8601" in refused.json()["message"]


def test_fail_answers_the_next_calls_then_recovers(gh: GitHubEmulator, http: httpx.Client) -> None:
    gh.fail("repos/get", status=502, times=2)
    assert [http.get("/repos/o/r").status_code for _ in range(3)] == [502, 502, 200]
    gh.fail("*", status=500, body={"message": "boom"}, headers={"x-extra": "1"})
    response = http.get("/repos/o/r/pulls/1")
    assert (response.status_code, response.json(), response.headers["x-extra"]) == (
        500,
        {"message": "boom"},
        "1",
    )


def test_rate_limits_look_like_githubs(gh: GitHubEmulator, http: httpx.Client) -> None:
    gh.rate_limit("repos/get", kind="secondary", retry_after=7)
    secondary = http.get("/repos/o/r")
    assert (secondary.status_code, secondary.headers["retry-after"]) == (403, "7")
    assert "secondary rate limit" in secondary.json()["message"]

    gh.rate_limit("repos/get", kind="429", retry_after=0)
    too_many = http.get("/repos/o/r")
    assert (too_many.status_code, too_many.headers["retry-after"]) == (429, "0")

    gh.rate_limit("repos/get", kind="primary", retry_after=60)
    primary = http.get("/repos/o/r")
    assert primary.status_code == 403
    assert primary.headers["x-ratelimit-remaining"] == "0"
    assert 55 <= int(primary.headers["x-ratelimit-reset"]) - time.time() <= 61
    assert http.get("/repos/o/r").status_code == 200


def test_delay_holds_the_answer(gh: GitHubEmulator, http: httpx.Client) -> None:
    gh.delay("repos/get", 0.3)
    started = time.monotonic()
    assert http.get("/repos/o/r").status_code == 200
    assert time.monotonic() - started >= 0.29
    gh.delay("repos/get", 5)
    with pytest.raises(httpx.ReadTimeout):
        http.get("/repos/o/r", timeout=0.2)


def test_a_fault_can_come_after_the_call_took_effect(
    gh: GitHubEmulator, http: httpx.Client
) -> None:
    gh.fail("issues/create-comment", status=502, taken=True)
    assert http.post("/repos/o/r/issues/5/comments", json={"body": "a"}).status_code == 502
    assert [c["body"] for c in gh.comments("o", "r", 5)] == ["a"]  # GitHub has it all the same
    gh.delay("issues/create-comment", 5, taken=True)
    with pytest.raises(httpx.ReadTimeout):
        http.post("/repos/o/r/issues/5/comments", json={"body": "b"}, timeout=0.2)
    assert [c["body"] for c in gh.comments("o", "r", 5)] == ["a", "b"]
    # Without `taken`, a fault answers instead of the call: nothing is posted.
    gh.fail("issues/create-comment", status=502)
    assert http.post("/repos/o/r/issues/5/comments", json={"body": "c"}).status_code == 502
    assert [c["body"] for c in gh.comments("o", "r", 5)] == ["a", "b"]


def test_respond_overrides_state_until_reset(gh: GitHubEmulator, http: httpx.Client) -> None:
    gh.set_file("o", "r", "a.txt", "a")
    gh.respond("repos/get-content", status=404, body={"message": "Not Found"})
    assert http.get("/repos/o/r/contents/a.txt").status_code == 404
    gh.reset()
    assert gh.calls == []
    assert http.get("/repos/o/r/contents/a.txt").status_code == 200


def test_calls_are_recorded(gh: GitHubEmulator, http: httpx.Client) -> None:
    http.post("/repos/o/r/issues/5/comments?x=1", json={"body": "hi"})
    (call,) = gh.calls_to("issues/create-comment")
    assert (call.method, call.path, call.query, call.json, call.status) == (
        "POST",
        "/repos/o/r/issues/5/comments",
        {"x": "1"},
        {"body": "hi"},
        201,
    )
    assert call.headers["authorization"].startswith("token ghs_")


def test_enterprise_server_prefix(keys: tuple[str, str]) -> None:
    with GitHubEmulator(app_id=APP_ID, app_public_key=keys[1], base_path="/api/v3") as gh:
        assert gh.url.endswith("/api/v3")
        github = _github(AppInstallationAuthStrategy(APP_ID, keys[0], 7), gh.url)
        assert github.rest.repos.get("o", "r").parsed_data.full_name == "o/r"
        assert gh.tokens_issued == 1
        root = gh.url.removesuffix("/api/v3")
        assert httpx.get(f"{root}/repos/o/r").status_code == 404


def test_runs_standalone() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "integrations.emulators.github", "--port", "0", "--app-id", "5"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:")
        # The socket listens before the URL is printed, so no waiting is needed.
        assert httpx.get(f"{url}/nothing").status_code == 404
    finally:
        process.terminate()
        process.wait(timeout=10)
