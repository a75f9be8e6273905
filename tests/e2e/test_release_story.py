"""The release story against a real `deploybot serve` process: signed webhooks and Slack
clicks over HTTP, the GitHub and Slack emulators and a health endpoint on loopback, the
scheduler ticking on its own. On SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from integrations.emulators.github import GitHubEmulator
from integrations.emulators.slack import SlackEmulator
from storage import db
from tests.conftest import BOT_TOKEN
from tests.e2e.server import ServeProcess
from tests.story import (
    CHANNEL,
    NAME,
    OWNER,
    HealthEndpoint,
    Story,
    comment,
    deployment_status,
    installation_created,
    pipeline_file,
    pull_request,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def emulators(
    app_private_key: rsa.RSAPrivateKey,
) -> Iterator[tuple[GitHubEmulator, SlackEmulator, HealthEndpoint]]:
    public = app_private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with (
        GitHubEmulator(app_id=4242, app_public_key=public) as github,
        SlackEmulator(bot_token=BOT_TOKEN) as slack,
        HealthEndpoint() as health,
    ):
        yield github, slack, health


@pytest.fixture
async def story(
    emulators, settings_env: dict[str, str], database_url: str, tmp_path: Path
) -> AsyncIterator[Story]:
    github, slack, health = emulators
    github.set_file(
        OWNER, NAME, ".github/deploybot.yml", pipeline_file(channel=CHANNEL, health_url=health.url)
    )
    for login, permission in [("alice", "write"), ("bob", "write")]:
        github.set_permission(OWNER, NAME, login, permission)
    env = {
        **settings_env,
        "DATABASE_URL": database_url,
        "GITHUB_API_URL": github.url,
        "SLACK_API_URL": slack.url,
        "DEPLOYBOT_TICK_SECONDS": "0.3",
    }
    server = ServeProcess(env, tmp_path / "serve.log").start()
    engine = db.create_engine(database_url)

    async def wait_for_the_scheduler() -> None:
        await asyncio.sleep(0.3)

    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            yield Story(
                client,
                github,
                slack,
                sessions=db.read_sessions(engine),
                tick=wait_for_the_scheduler,
            )
    finally:
        await engine.dispose()
        server.stop()
        assert "Traceback" not in server.output(), server.output()[-3000:]
        assert_no_secret_in(server.output(), env, github.issued_tokens)


def assert_no_secret_in(output: str, env: dict[str, str], tokens: list[str]) -> None:
    """Everything the server logged during a whole story: no configured secret, no
    installation token it was given, no JWT it signed, no line of its private key."""
    secrets = [env[k] for k in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "GITHUB_WEBHOOK_SECRET")]
    pem_lines = [line for line in env["GITHUB_APP_PRIVATE_KEY"].splitlines() if len(line) > 20]
    assert tokens, "the story used installation tokens"
    for secret in [*secrets, *pem_lines, *tokens]:
        assert secret not in output
    assert "PRIVATE KEY" not in output
    assert re.search(r"eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.", output) is None, "a JWT was logged"


async def test_the_release_story_on_a_running_server(story: Story, emulators) -> None:
    _, _, health = emulators
    await story.deliver("installation", installation_created())
    shas = {1: "1" * 40, 2: "2" * 40}
    for number, sha in shas.items():
        pr = pull_request(
            "opened", number=number, sha=sha, title=f"Change {number}", author="alice"
        )
        story.github.respond("pulls/get", body=pr["pull_request"])
        await story.deliver("pull_request", pr)
        await story.deliver(
            "issue_comment",
            comment("/deploy stage", number=number, login="alice", comment_id=number * 10),
        )
        (stage,) = [d for d in story.deployments("stage") if d["sha"] == sha]
        await story.deliver("deployment_status", deployment_status(stage["id"], "success"))
        await story.tick_until(lambda sha=sha: f"`stage` is running {sha[:7]}" in story.thread())

        await story.deliver(
            "issue_comment",
            comment("/deploy production", number=number, login="alice", comment_id=number * 10 + 1),
        )
        await story.click("approve", story.button_value("approve"), "U0BOB")
        await story.eventually(
            lambda sha=sha: any(d["sha"] == sha for d in story.deployments("production"))
        )
        (production,) = [d for d in story.deployments("production") if d["sha"] == sha]
        await story.deliver("deployment_status", deployment_status(production["id"], "success"))
        if number == 1:
            await story.tick_until(lambda: "`production` is running 1111111" in story.thread())

    health.failing = True
    await story.tick_until(lambda: len(story.deployments("production")) == 3, seconds=30)
    rollback = story.deployments("production")[0]
    assert rollback["sha"] == shas[1] and rollback["payload"]["kind"] == "rollback"
    await story.deliver("deployment_status", deployment_status(rollback["id"], "success"))
    assert "Rolled back `production` to 1111111" in story.thread()
    assert story.github.invalid_requests == [] and story.slack.invalid_calls == []


async def test_slack_commands_on_a_running_server(story: Story) -> None:
    """`/deploy` subcommands, signed, against the real server: each answered after its ack
    through the response_url, refusals only to the person who typed them."""
    main = "3" * 40
    story.github.set_ref(OWNER, NAME, "main", main, message="Main")
    story.github.set_default_branch(OWNER, NAME, "main")
    await story.deliver("installation", installation_created())

    async def said(text: str, user: str) -> str:
        private, public = len(story.slack.ephemerals), len(story.slack.messages)
        response = await story.slash(text, user=user)
        assert response.status_code == 200
        if response.content and response.json().get("text"):
            return response.json()["text"]
        await story.eventually(
            lambda: len(story.slack.ephemerals) > private or len(story.slack.messages) > public
        )
        fresh = story.slack.ephemerals[private:] + story.slack.messages[public:]
        return "\n".join(m.get("text", "") for m in fresh)

    assert "/deploy subscribe" in await said("help", "U0ALICE")
    assert "needs an environment" in await said("acme/api to", "U0ALICE")
    assert "is not a branch, tag or commit" in await said("acme/api@nope to stage", "U0ALICE")
    assert "bob locked `stage`" in await said("lock acme/api stage release prep", "U0BOB")
    assert "locked by bob (release prep)" in await said("acme/api to stage", "U0ALICE")
    assert "bob unlocked `stage`" in await said("unlock acme/api stage", "U0BOB")
    assert "asked to deploy acme/api@main (3333333)" in await said("acme/api to stage", "U0ALICE")
    await story.eventually(lambda: len(story.deployments("stage")) == 1)
    assert story.deployments("stage")[0]["sha"] == main
    await said("status acme/api", "U0ALICE")
    (status,) = [m for m in story.slack.ephemerals if m.get("blocks")]
    assert "*stage*" in str(status["blocks"])
    assert story.github.invalid_requests == [] and story.slack.invalid_calls == []
