"""Auto-promotion through the app: a merge deploys the first `auto` environment, each success
deploys the next `auto` one, a manual environment waits for people, a lock or red checks
hold the chain in the queue until they are gone, and a closed window cancels it with the
reason in the thread (GitHub and Slack emulators over HTTP, both databases).
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage.models import Rollout
from tests.story import (
    CHANNEL,
    NAME,
    OWNER,
    Story,
    comment,
    deployment_status,
    installation_created,
    pull_request,
)

HEAD, MERGED = "4ead" + "0" * 36, "3e6e" + "0" * 36
CHAIN = f"""
slack:
  channel: {CHANNEL}
users:
  alice: U0ALICE
environments:
  - {{name: dev, auto: true}}
  - {{name: stage, auto: true}}
  - {{name: production, approvals: 1, approvers: [bob]}}
"""


@pytest.fixture
async def story(app, client, github, slack) -> Story:

    github.set_file(OWNER, NAME, ".github/deploybot.yml", CHAIN)
    for login in ("alice", "bob"):
        github.set_permission(OWNER, NAME, login, "write")
    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    opened = pull_request("opened", number=5, sha=HEAD, title="Chain", author="alice")
    github.respond("pulls/get", body=opened["pull_request"])
    await story.deliver("pull_request", opened)
    return story


def merged() -> dict:
    payload = pull_request("closed", number=5, sha=HEAD, title="Chain", author="alice")
    payload["pull_request"].update(state="closed", merged=True, merge_commit_sha=MERGED)
    return payload


async def succeed(story: Story, environment: str) -> None:
    (deployment,) = story.deployments(environment)
    await story.deliver("deployment_status", deployment_status(deployment["id"], "success"))


async def test_a_merge_runs_the_chain_up_to_the_manual_environment(story: Story) -> None:
    await story.deliver("pull_request", merged())
    # Checks are required (the default): the scheduler looks at them before it deploys.
    await story.tick_until(lambda: len(story.deployments("dev")) == 1)
    (dev,) = story.deployments("dev")
    assert dev["sha"] == MERGED and dev["payload"]["requested_by"] == "deploybot"
    assert story.deployments("stage") == []

    await succeed(story, "dev")
    await story.tick_until(lambda: len(story.deployments("stage")) == 1)
    (stage,) = story.deployments("stage")
    assert stage["sha"] == MERGED

    await succeed(story, "stage")
    await story.tick()
    assert story.deployments("production") == []  # manual: people decide
    thread = story.thread()
    assert "`dev` is running 3e6e000" in thread and "`stage` is running 3e6e000" in thread
    assert story.github.invalid_requests == [] and story.slack.invalid_calls == []


async def test_a_lock_holds_the_chain_until_it_is_released(story: Story) -> None:
    await story.deliver(
        "issue_comment", comment("/lock stage release freeze", number=5, login="bob", comment_id=1)
    )
    await story.deliver("pull_request", merged())
    await story.tick_until(lambda: len(story.deployments("dev")) == 1)
    await succeed(story, "dev")
    for _ in range(3):
        await story.tick()
    assert story.deployments("stage") == []
    story.github.respond("pulls/get", body=merged()["pull_request"])
    await story.deliver(
        "issue_comment", comment("/unlock stage", number=5, login="bob", comment_id=2)
    )
    await story.tick_until(lambda: len(story.deployments("stage")) == 1)
    assert story.deployments("stage")[0]["sha"] == MERGED


async def test_red_checks_keep_an_automatic_deploy_waiting(story: Story) -> None:
    story.github.set_check_run(OWNER, NAME, MERGED, "ci", "in_progress")
    await story.deliver("pull_request", merged())
    for _ in range(3):
        await story.tick()
    assert story.deployments("dev") == []
    story.github.set_check_run(OWNER, NAME, MERGED, "ci", "completed", "success")
    # A request waiting for its checks is looked at again a minute later, not every tick.
    async with story.sessions.begin() as session:
        await session.execute(sa.update(Rollout).values(next_check_at=None))
    await story.tick_until(lambda: len(story.deployments("dev")) == 1)


async def test_a_window_refuses_an_automatic_deploy_with_the_reason(story: Story) -> None:
    closed = CHAIN.replace(
        "{name: dev, auto: true}",
        '{name: dev, auto: true, window: {days: sat, hours: "00:00-00:01", timezone: UTC}}',
    )
    story.github.set_file(OWNER, NAME, ".github/deploybot.yml", closed)
    await story.deliver("pull_request", merged())
    await story.tick_until(lambda: "Cancelled the queued deploy of 3e6e000" in story.thread())
    assert "outside its deploy window" in story.thread()
    assert story.deployments("dev") == []


async def test_closing_without_merging_deploys_nothing(story: Story) -> None:
    closed = pull_request("closed", number=5, sha=HEAD, title="Chain", author="alice")
    closed["pull_request"].update(state="closed", merged=False)
    await story.deliver("pull_request", closed)
    assert story.deployments("dev") == []
