"""Faults the emulators inject, through the real app in process on both databases (issue 6,
item 3): GitHub server errors and rate limits (secondary with `retry-after`, primary with
`x-ratelimit-reset`), Slack rate limits and server errors, and a Slack refusal no retry can
change. Expected: bounded retries, each effect sent once and in order, and a dead letter
with its reason, visible in `/metrics` and in `deploybot outbox dead`.
"""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from bot.cli import cli
from storage.models import OutboxEffect, OutboxStatus
from tests.story import (
    CHANNEL,
    NAME,
    OWNER,
    Story,
    comment,
    deployment_status,
    installation_created,
    pipeline_file,
    pull_request,
)

HEAD = "fa017" + "0" * 35


@pytest.fixture
async def story(app, client, github, slack) -> Story:
    github.set_file(
        OWNER,
        NAME,
        ".github/deploybot.yml",
        pipeline_file(channel=CHANNEL, health_url="http://127.0.0.1:9/h").replace(
            '    health: {url: "http://127.0.0.1:9/h", interval: 1s, soak: 2s, failures: 2}\n',
            "",
            1,
        ),
    )
    github.set_permission(OWNER, NAME, "alice", "write")
    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    pr = pull_request("opened", number=7, sha=HEAD, title="Faults", author="alice")
    github.respond("pulls/get", body=pr["pull_request"])
    await story.deliver("pull_request", pr)
    return story


async def deploy_stage(story: Story, *, allow_dead: bool = False) -> None:
    await story.deliver(
        "issue_comment",
        comment("/deploy stage", number=7, login="alice", comment_id=1),
        allow_dead=allow_dead,
    )


async def outbox_rows(story: Story) -> list[OutboxEffect]:
    async with story.sessions() as session:
        return list((await session.execute(sa.select(OutboxEffect))).scalars())


async def test_github_errors_and_rate_limits_delay_a_deployment_but_never_double_it(
    story: Story,
) -> None:
    story.github.fail("repos/create-deployment", status=502, times=1)
    story.github.rate_limit("repos/create-deployment", kind="secondary", retry_after=1)
    story.github.rate_limit("repos/create-deployment", kind="primary", retry_after=1)
    await deploy_stage(story)
    (deployment,) = story.deployments("stage")
    assert deployment["sha"] == HEAD
    # Three refusals, then the one deployment: no more calls, no second deployment.
    assert len(story.github.calls_to("repos/create-deployment")) == 4
    (row,) = [r for r in await outbox_rows(story) if r.kind == "CreateDeployment"]
    # The server error counts toward giving up; waiting out a rate limit does not.
    assert (row.status, row.attempts) == (OutboxStatus.SENT.value, 1)
    await story.deliver("deployment_status", deployment_status(deployment["id"], "success"))
    assert "`stage` is running fa01700" in story.thread()


async def test_slack_rate_limits_and_errors_keep_the_thread_in_order(story: Story) -> None:
    story.slack.fail("chat.postMessage", status=429, times=1)
    story.slack.fail("chat.postMessage", status=503, times=1)
    await deploy_stage(story)
    deployment = story.deployments("stage")[0]
    await story.deliver("deployment_status", deployment_status(deployment["id"], "success"))
    replies = [line.strip() for line in story.thread().splitlines()[1:]]
    assert replies == [
        "↳ alice is deploying fa01700 to `stage`.",
        "↳ `stage` is running fa01700.",
    ]


async def test_a_refusal_no_retry_changes_is_a_dead_letter_everyone_can_see(
    story: Story, client, monkeypatch, database_url: str
) -> None:
    story.slack.fail("chat.postMessage", error="invalid_blocks", times=1)
    await deploy_stage(story, allow_dead=True)
    (dead,) = [r for r in await outbox_rows(story) if r.status == OutboxStatus.DEAD.value]
    assert (
        dead.kind == "ThreadReply" and dead.last_error == "Permanent: Slack refused: invalid_blocks"
    )
    # The next reply of the thread is not held back by the dead one.
    deployment = story.deployments("stage")[0]
    await story.deliver(
        "deployment_status", deployment_status(deployment["id"], "success"), allow_dead=True
    )
    assert "`stage` is running fa01700." in story.thread()

    metrics = (await client.get("/metrics")).text
    assert 'deploybot_queue_dead_letters{queue="outbox"} 1.0' in metrics
    monkeypatch.setenv("DATABASE_URL", database_url)
    # The CLI runs its own event loop: in a thread, as it would in its own process.
    listed = await asyncio.to_thread(CliRunner().invoke, cli, ["outbox", "dead"])
    assert listed.exit_code == 0, listed.output
    assert "ThreadReply" in listed.output and "invalid_blocks" in listed.output
