"""The bot's GitHub client against the GitHub emulator over real HTTP (no mocks)."""

from __future__ import annotations

import socket
import time
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integrations.emulators.github import GitHubEmulator
from integrations.github_app import (
    AppInfo,
    Deployment,
    GitHubApp,
    GitHubError,
    GitHubNotFound,
    GitHubPermissionDenied,
    GitHubRateLimited,
    GitHubServerError,
    GitHubUnavailable,
    GitHubValidationFailed,
    InstallationClient,
    IssueComment,
    IssueCommentPage,
    PullRequest,
)

APP_ID = 4242
INSTALLATION = 77
SHA = "0123456789abcdef0123456789abcdef01234567"


def _private_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()


def _public_pem(private_pem: str) -> str:
    key = serialization.load_pem_private_key(private_pem.encode(), password=None)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


@pytest.fixture(scope="module")
def private_key() -> str:
    return _private_pem()


@pytest.fixture
def gh(private_key: str) -> Iterator[GitHubEmulator]:
    with GitHubEmulator(app_id=APP_ID, app_public_key=_public_pem(private_key)) as emulator:
        yield emulator
        assert emulator.invalid_requests == [], "the client sent a body GitHub would refuse"


def _app(gh: GitHubEmulator, private_key: str, **options: Any) -> GitHubApp:
    options = {"timeout": 5.0, "retry_scale": 0.001, "max_retry_wait": 1.0, **options}
    return GitHubApp(app_id=APP_ID, private_key=private_key, base_url=gh.url, **options)


@pytest.fixture
def app(gh: GitHubEmulator, private_key: str) -> GitHubApp:
    return _app(gh, private_key)


@pytest.fixture
def github(app: GitHubApp) -> InstallationClient:
    return app.installation(INSTALLATION)


# --- the calls ---------------------------------------------------------------------------


async def test_get_app(app: GitHubApp, gh: GitHubEmulator) -> None:
    info = await app.get_app()
    assert isinstance(info, AppInfo)
    assert info.slug == "octoapp"
    assert gh.calls_to("apps/get-authenticated")[0].headers["authorization"].startswith("Bearer ")
    assert gh.tokens_issued == 0


async def test_get_repository(github: InstallationClient) -> None:
    repository = await github.get_repository(owner="acme", repo="api")
    assert (repository.full_name, repository.default_branch) == ("acme/api", "master")


async def test_get_file(github: InstallationClient, gh: GitHubEmulator) -> None:
    text = "environments:\n  - name: stage\n" + "# padding\n" * 20
    gh.set_file("acme", "api", ".github/deploybot.yml", text)
    assert await github.get_file(owner="acme", repo="api", path=".github/deploybot.yml") == text
    assert await github.get_file(owner="acme", repo="api", path="missing.yml") is None
    await github.get_file(owner="acme", repo="api", path=".github/deploybot.yml", ref="main")
    assert gh.calls_to("repos/get-content")[-1].query == {"ref": "main"}


async def test_get_permission(github: InstallationClient, gh: GitHubEmulator) -> None:
    gh.set_permission("acme", "api", "alice", "maintain")
    assert await github.get_permission(owner="acme", repo="api", username="alice") == "write"
    assert await github.get_permission(owner="acme", repo="api", username="bob") == "none"


async def test_get_commit_resolves_branches_tags_and_shas(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    sha = "0123456789abcdef" * 2 + "01234567"
    gh.set_ref("acme", "api", "feature/login", sha, message="Log in faster\n\nDetails", author="al")
    commit = await github.get_commit(owner="acme", repo="api", ref="feature/login")
    assert (commit.sha, commit.title, commit.author_login) == (sha, "Log in faster", "al")
    assert commit.html_url.endswith(f"/acme/api/commit/{sha}")
    assert (await github.get_commit(owner="acme", repo="api", ref=sha[:7])).sha == sha
    with pytest.raises(GitHubValidationFailed, match="No commit found"):
        await github.get_commit(owner="acme", repo="api", ref="no-such-branch")
    assert gh.invalid_requests == []


async def test_create_and_list_deployments(github: InstallationClient, gh: GitHubEmulator) -> None:
    stage = await github.create_deployment(
        owner="acme", repo="api", ref=SHA, environment="stage", payload={"rollout_id": 9}
    )
    assert stage == Deployment(
        id=stage.id,
        sha=SHA,
        ref=SHA,
        environment="stage",
        payload={"rollout_id": 9},
        task="deploy",
        description=None,
        created_at=stage.created_at,
    )
    sent = gh.calls_to("repos/create-deployment")[0].json
    assert sent["auto_merge"] is False
    assert sent["required_contexts"] == []
    assert "description" not in sent

    prod = await github.create_deployment(
        owner="acme",
        repo="api",
        ref=SHA,
        environment="production",
        payload={"weight": 10},
        description="canary 10%",
    )
    everything = await github.list_deployments(owner="acme", repo="api")
    assert [d.id for d in everything] == [prod.id, stage.id]
    only_stage = await github.list_deployments(owner="acme", repo="api", environment="stage")
    assert [d.id for d in only_stage] == [stage.id]
    assert await github.list_deployments(owner="acme", repo="api", sha="f" * 40) == []
    assert gh.calls_to("repos/list-deployments")[-1].query["sha"] == "f" * 40


async def test_a_merge_instead_of_a_deployment_is_an_error(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    gh.respond("repos/create-deployment", status=202, body={"message": "Auto-merged master"})
    with pytest.raises(GitHubError, match="Auto-merged master") as refused:
        await github.create_deployment(
            owner="acme", repo="api", ref="topic", environment="stage", payload={}
        )
    assert refused.value.status == 202


async def test_deployment_statuses(github: InstallationClient) -> None:
    deployment = await github.create_deployment(
        owner="acme", repo="api", ref=SHA, environment="stage", payload={}
    )
    await github.create_deployment_status(
        owner="acme",
        repo="api",
        deployment_id=deployment.id,
        state="in_progress",
        log_url="https://ci.example/1",
    )
    done = await github.create_deployment_status(
        owner="acme",
        repo="api",
        deployment_id=deployment.id,
        state="success",
        description="x" * 300,
        environment_url="https://stage.example",
    )
    assert done.state == "success"
    assert len(done.description) == 140
    assert done.environment == "stage"
    statuses = await github.list_deployment_statuses(
        owner="acme", repo="api", deployment_id=deployment.id
    )
    assert [s.state for s in statuses] == ["success", "in_progress"]
    assert statuses[1].log_url == "https://ci.example/1"


async def test_comment_and_reaction(github: InstallationClient, gh: GitHubEmulator) -> None:
    first = await github.create_issue_comment(owner="acme", repo="api", issue_number=5, body="hi")
    second = await github.create_issue_comment(owner="acme", repo="api", issue_number=5, body="2")
    assert first != second
    await github.add_reaction(owner="acme", repo="api", comment_id=first)
    (reaction,) = gh.calls_to("reactions/create-for-issue-comment")
    assert reaction.json == {"content": "eyes"}
    assert reaction.path == f"/repos/acme/api/issues/comments/{first}/reactions"


async def test_list_issue_comments(github: InstallationClient, gh: GitHubEmulator) -> None:
    now = datetime.now(UTC)
    gh.add_comment("acme", "api", 5, "long ago", at=now - timedelta(hours=2))
    posted = [
        await github.create_issue_comment(owner="acme", repo="api", issue_number=5, body=f"c{n}")
        for n in range(3)
    ]
    await github.create_issue_comment(owner="acme", repo="api", issue_number=6, body="elsewhere")
    # Any timezone: GitHub is sent UTC, in the one format it reads.
    since = (now - timedelta(hours=1)).astimezone(timezone(timedelta(hours=-5)))

    first = await github.list_issue_comments(
        owner="acme", repo="api", issue_number=5, since=since, per_page=2
    )
    assert [c.id for c in first.comments] == posted[:2] and first.next_page == 2
    second = await github.list_issue_comments(
        owner="acme", repo="api", issue_number=5, since=since, per_page=2, page=first.next_page
    )
    assert [c.body for c in second.comments] == ["c2"] and second.next_page is None
    everything = await github.list_issue_comments(owner="acme", repo="api", issue_number=5)
    assert [c.body for c in everything.comments] == ["long ago", "c0", "c1", "c2"]

    assert first.comments[0] == IssueComment(id=posted[0], body="c0")
    stamp = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [call.query for call in gh.calls_to("issues/list-comments")] == [
        {"since": stamp, "per_page": "2", "page": "1"},
        {"since": stamp, "per_page": "2", "page": "2"},
        {"per_page": "100", "page": "1"},
    ]


async def test_listing_comments_is_retried_and_its_errors_are_ours(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    gh.fail("issues/list-comments", status=502)  # a GET: safe to repeat
    assert await github.list_issue_comments(owner="acme", repo="api", issue_number=5) == (
        IssueCommentPage(comments=(), next_page=None)
    )
    gh.fail("issues/list-comments", status=404)
    with pytest.raises(GitHubNotFound):
        await github.list_issue_comments(owner="acme", repo="api", issue_number=404)


async def test_get_pull(github: InstallationClient) -> None:
    pull = await github.get_pull(owner="acme", repo="api", number=1347)
    assert pull == PullRequest(
        number=1347,
        title="Amazing new feature",
        state="open",
        merged=False,
        head_sha="6dcb09b5b57875f334f61aebed695e2e4193db5e",
        head_ref="new-topic",
        base_ref="master",
        user_login="octocat",
        html_url="https://github.com/octocat/Hello-World/pull/1347",
    )


async def test_review_protection_rule(github: InstallationClient, gh: GitHubEmulator) -> None:
    await github.review_protection_rule(
        owner="acme",
        repo="api",
        run_id=31,
        environment_name="production",
        state="approved",
        comment="approved by @bob in Slack",
    )
    (call,) = gh.calls_to("actions/review-custom-gates-for-run")
    assert call.status == 204
    assert call.json["state"] == "approved"


async def test_compare_tells_whether_a_commit_contains_another(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    one, two, three, other = "1" * 40, "2" * 40, "3" * 40, "4" * 40
    gh.set_parent("acme", "api", two, one)
    gh.set_parent("acme", "api", three, two)
    assert await github.compare(owner="acme", repo="api", base=one, head=three) == "ahead"
    assert await github.compare(owner="acme", repo="api", base=three, head=one) == "behind"
    assert await github.compare(owner="acme", repo="api", base=two, head=two) == "identical"
    assert await github.compare(owner="acme", repo="api", base=other, head=three) == "diverged"
    assert gh.invalid_requests == []


async def test_a_commit_without_statuses_or_check_runs(github: InstallationClient) -> None:
    combined = await github.get_combined_status(owner="acme", repo="api", ref=SHA)
    # GitHub's combined state is `pending` when nothing reported: the statuses tell.
    assert (combined.sha, combined.state, combined.statuses) == (SHA, "pending", ())
    assert await github.list_check_runs(owner="acme", repo="api", ref=SHA) == []


async def test_combined_status_of_a_commit(github: InstallationClient, gh: GitHubEmulator) -> None:
    gh.set_status("acme", "api", SHA, "ci/build", "pending")
    gh.set_status("acme", "api", SHA, "ci/build", "failure")  # the latest per context counts
    gh.set_status("acme", "api", SHA, "security/scan", "success")
    gh.set_status("acme", "api", "f" * 40, "ci/build", "success")  # another commit
    combined = await github.get_combined_status(owner="acme", repo="api", ref=SHA)
    assert combined.state == "failure"
    assert [(s.context, s.state) for s in combined.statuses] == [
        ("ci/build", "failure"),
        ("security/scan", "success"),
    ]
    (call,) = gh.calls_to("repos/get-combined-status-for-ref")
    assert call.path == f"/repos/acme/api/commits/{SHA}/status"
    assert call.query["per_page"] == "100"


async def test_check_runs_of_a_commit(github: InstallationClient, gh: GitHubEmulator) -> None:
    gh.set_check_run("acme", "api", SHA, "lint", "completed", "success")
    gh.set_check_run("acme", "api", SHA, "e2e", "in_progress")
    gh.set_check_run("acme", "api", SHA, "build", "completed", "timed_out")
    runs = await github.list_check_runs(owner="acme", repo="api", ref=SHA)
    assert [(r.name, r.status, r.conclusion) for r in runs] == [
        ("lint", "completed", "success"),
        ("e2e", "in_progress", None),
        ("build", "completed", "timed_out"),
    ]
    assert all(r.id and r.html_url for r in runs)
    (call,) = gh.calls_to("checks/list-for-ref")
    assert call.path == f"/repos/acme/api/commits/{SHA}/check-runs"
    assert call.query == {"filter": "latest", "per_page": "100", "page": "1"}


async def test_every_page_of_statuses_and_check_runs_is_read(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    for n in range(130):
        gh.set_status("acme", "api", SHA, f"status-{n:03}", "success")
        gh.set_check_run("acme", "api", SHA, f"run-{n:03}", "completed", "success")
    gh.set_status("acme", "api", SHA, "status-129", "error")
    gh.set_check_run("acme", "api", SHA, "run-129", "queued")
    combined = await github.get_combined_status(owner="acme", repo="api", ref=SHA)
    runs = await github.list_check_runs(owner="acme", repo="api", ref=SHA)
    assert len(combined.statuses) == len(runs) == 130
    assert combined.statuses[-1].state == "error" and runs[-1].status == "queued"
    assert [c.query["page"] for c in gh.calls_to("repos/get-combined-status-for-ref")] == ["1", "2"]
    assert [c.query["page"] for c in gh.calls_to("checks/list-for-ref")] == ["1", "2"]


async def test_checks_of_a_branch_are_those_of_its_commit(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    gh.set_ref("acme", "api", "main", SHA)
    gh.set_status("acme", "api", SHA, "ci/build", "success")
    gh.set_check_run("acme", "api", SHA, "lint", "completed", "neutral")
    combined = await github.get_combined_status(owner="acme", repo="api", ref="main")
    assert (combined.sha, combined.state, len(combined.statuses)) == (SHA, "success", 1)
    assert [r.name for r in await github.list_check_runs(owner="acme", repo="api", ref="main")] == [
        "lint"
    ]


def test_the_emulator_refuses_states_github_has_not(gh: GitHubEmulator) -> None:
    with pytest.raises(ValueError, match="unknown commit status state"):
        gh.set_status("acme", "api", SHA, "ci", "green")
    with pytest.raises(ValueError, match="needs a conclusion"):
        gh.set_check_run("acme", "api", SHA, "lint", "completed")


# --- installation tokens -----------------------------------------------------------------


async def test_tokens_are_cached_per_installation(app: GitHubApp, gh: GitHubEmulator) -> None:
    assert app.installation(INSTALLATION) is app.installation(INSTALLATION)
    github = app.installation(INSTALLATION)
    await github.get_repository(owner="acme", repo="api")
    await github.get_pull(owner="acme", repo="api", number=1)
    assert gh.tokens_issued == 1
    await app.installation(INSTALLATION + 1).get_repository(owner="acme", repo="api")
    assert gh.tokens_issued == 2
    tokens = {call.headers["authorization"] for call in gh.calls_to("repos/get")}
    assert tokens == {f"token {t}" for t in gh.issued_tokens}


async def test_a_token_is_renewed_once_it_nears_expiry(private_key: str) -> None:
    # githubkit keeps a token until a minute before it expires: one that lives 60 s is
    # stale as soon as it arrives.
    public = _public_pem(private_key)
    with GitHubEmulator(app_id=APP_ID, app_public_key=public, token_ttl=60) as gh:
        github = _app(gh, private_key).installation(INSTALLATION)
        await github.get_repository(owner="acme", repo="api")
        await github.get_repository(owner="acme", repo="api")
        assert gh.tokens_issued == 2


async def test_apps_do_not_share_tokens(gh: GitHubEmulator, private_key: str) -> None:
    await _app(gh, private_key).installation(1).get_repository(owner="acme", repo="api")
    await _app(gh, private_key).installation(1).get_repository(owner="acme", repo="api")
    assert gh.tokens_issued == 2


# --- retries -----------------------------------------------------------------------------


async def test_server_errors_are_retried(github: InstallationClient, gh: GitHubEmulator) -> None:
    gh.fail("repos/get", status=502, times=2)
    repository = await github.get_repository(owner="acme", repo="api")
    assert [c.status for c in gh.calls_to("repos/get")] == [502, 502, 200]
    assert repository.full_name


async def test_a_server_error_to_a_post_is_not_repeated(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    # GitHub may have created the deployment before answering 502: sending it again could
    # deploy twice, so the caller (who can list deployments first) gets the error.
    gh.fail("repos/create-deployment", status=502)
    with pytest.raises(GitHubServerError):
        await github.create_deployment(
            owner="acme", repo="api", ref=SHA, environment="stage", payload={}
        )
    assert [c.status for c in gh.calls_to("repos/create-deployment")] == [502]


async def test_a_rate_limited_post_is_retried(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    gh.rate_limit("repos/create-deployment", kind="secondary", retry_after=0)
    deployment = await github.create_deployment(
        owner="acme", repo="api", ref=SHA, environment="stage", payload={}
    )
    assert [c.status for c in gh.calls_to("repos/create-deployment")] == [403, 201]
    assert deployment.sha == SHA


async def test_a_failing_token_exchange_is_retried(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    gh.fail("apps/create-installation-access-token", status=503)
    await github.get_repository(owner="acme", repo="api")
    assert gh.tokens_issued == 1


async def test_429_with_retry_after_is_retried(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    gh.rate_limit("repos/get", kind="429", retry_after=0)
    started = time.monotonic()
    await github.get_repository(owner="acme", repo="api")
    assert time.monotonic() - started < 2  # githubkit alone would sleep 60 s on a zero wait
    assert [c.status for c in gh.calls_to("repos/get")] == [429, 200]


async def test_secondary_rate_limit_is_retried(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    gh.rate_limit("pulls/get", kind="secondary", retry_after=1)
    await github.get_pull(owner="acme", repo="api", number=2)
    assert [c.status for c in gh.calls_to("pulls/get")] == [403, 200]


async def test_a_long_rate_limit_is_raised_not_slept(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    gh.rate_limit("repos/get", kind="primary", retry_after=3600)
    with pytest.raises(GitHubRateLimited) as limited:
        await github.get_repository(owner="acme", repo="api")
    assert 3500 < limited.value.retry_after <= 3600
    assert limited.value.status == 403
    assert len(gh.calls_to("repos/get")) == 1


async def test_persistent_server_errors_give_up(gh: GitHubEmulator, private_key: str) -> None:
    github = _app(gh, private_key, max_retries=2).installation(INSTALLATION)
    gh.fail("repos/get", status=500, times=10)
    with pytest.raises(GitHubServerError) as failed:
        await github.get_repository(owner="acme", repo="api")
    assert failed.value.status == 500
    assert len(gh.calls_to("repos/get")) == 3


# --- errors ------------------------------------------------------------------------------


async def test_not_found(github: InstallationClient) -> None:
    with pytest.raises(GitHubNotFound) as missing:
        await github.list_deployment_statuses(owner="acme", repo="api", deployment_id=999)
    assert missing.value.status == 404
    assert "/repos/acme/api/deployments/999/statuses" in str(missing.value)


async def test_a_jwt_from_another_key_is_denied(gh: GitHubEmulator) -> None:
    impostor = GitHubApp(app_id=APP_ID, private_key=_private_pem(), base_url=gh.url)
    with pytest.raises(GitHubPermissionDenied) as denied:
        await impostor.get_app()
    assert denied.value.status == 401
    with pytest.raises(GitHubPermissionDenied):
        await impostor.installation(1).get_repository(owner="acme", repo="api")
    assert gh.tokens_issued == 0


async def test_forbidden_is_denied(github: InstallationClient, gh: GitHubEmulator) -> None:
    gh.respond(
        "issues/create-comment",
        status=403,
        body={"message": "Resource not accessible by integration"},
    )
    with pytest.raises(GitHubPermissionDenied, match="Resource not accessible by integration"):
        await github.create_issue_comment(owner="acme", repo="api", issue_number=1, body="x")


async def test_validation_failed(github: InstallationClient, gh: GitHubEmulator) -> None:
    gh.respond("repos/create-deployment", status=422, body={"message": "Validation Failed"})
    with pytest.raises(GitHubValidationFailed) as invalid:
        await github.create_deployment(
            owner="acme", repo="api", ref="nope", environment="stage", payload={}
        )
    assert invalid.value.status == 422


async def test_a_body_githubkit_refuses_is_never_sent(
    github: InstallationClient, gh: GitHubEmulator
) -> None:
    with pytest.raises(GitHubValidationFailed, match="state"):
        await github.create_deployment_status(
            owner="acme",
            repo="api",
            deployment_id=1,
            state="sideways",  # type: ignore[arg-type]
        )
    assert gh.calls == []


async def test_timeout_is_unavailable(gh: GitHubEmulator, private_key: str) -> None:
    github = _app(gh, private_key, timeout=0.2).installation(INSTALLATION)
    await github.get_repository(owner="acme", repo="api")
    gh.delay("repos/get", 2)
    started = time.monotonic()
    with pytest.raises(GitHubUnavailable, match="in time"):
        await github.get_repository(owner="acme", repo="api")
    assert time.monotonic() - started < 1.5


async def test_unreachable_is_unavailable(private_key: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = GitHubApp(app_id=APP_ID, private_key=private_key, base_url=f"http://127.0.0.1:{port}")
    with pytest.raises(GitHubUnavailable):
        await app.get_app()


async def test_enterprise_server_base_url(private_key: str) -> None:
    public = _public_pem(private_key)
    with GitHubEmulator(app_id=APP_ID, app_public_key=public, base_path="/api/v3") as gh:
        github = _app(gh, private_key).installation(INSTALLATION)
        repository = await github.get_repository(owner="acme", repo="api")
        assert repository.full_name == "acme/api"
        assert gh.tokens_issued == 1


async def test_no_secret_in_errors(gh: GitHubEmulator, private_key: str) -> None:
    app = _app(gh, private_key, max_retries=0)
    github = app.installation(INSTALLATION)
    await github.get_repository(owner="acme", repo="api")
    errors: list[BaseException] = []

    async def collect(call: Any) -> None:
        try:
            await call
        except GitHubError as exc:
            errors.append(exc)

    gh.fail("repos/get", status=500)
    await collect(github.get_repository(owner="acme", repo="api"))
    gh.fail("repos/get", status=401, body={"message": "Bad credentials"})
    await collect(github.get_repository(owner="acme", repo="api"))
    await collect(github.list_deployment_statuses(owner="acme", repo="api", deployment_id=5))
    await collect(GitHubApp(app_id=APP_ID, private_key=_private_pem(), base_url=gh.url).get_app())
    await collect(GitHubApp(app_id=APP_ID, private_key="not a key", base_url=gh.url).get_app())
    gh.delay("repos/get", 1)
    await collect(
        _app(gh, private_key, timeout=0.1).installation(1).get_repository(owner="acme", repo="api")
    )
    assert len(errors) == 6
    assert isinstance(errors[4], GitHubPermissionDenied)  # the key that is no key

    key_lines = [line for line in private_key.splitlines() if "-----" not in line]
    secrets = [*gh.issued_tokens, *key_lines, "not a key"]
    for error in errors:
        shown = str(error) + repr(error) + "".join(traceback.format_exception(error))
        for secret in secrets:
            assert secret not in shown, type(error).__name__
    for shown in (repr(app), repr(github)):
        assert not any(secret in shown for secret in secrets)
