"""Auto-promotion through the app: a merge deploys the first `auto` environment, each success
deploys the next `auto` one, a manual environment waits for people, and a lock holds the
chain back with a reason in the thread (GitHub and Slack emulators over HTTP, both databases).
"""

from __future__ import annotations

import pytest

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
    (dev,) = story.deployments("dev")
    assert dev["sha"] == MERGED and dev["payload"]["requested_by"] == "deploybot"
    assert story.deployments("stage") == []

    await succeed(story, "dev")
    (stage,) = story.deployments("stage")
    assert stage["sha"] == MERGED

    await succeed(story, "stage")
    assert story.deployments("production") == []  # manual: people decide
    thread = story.thread()
    assert "`dev` is running 3e6e000" in thread and "`stage` is running 3e6e000" in thread
    assert story.github.invalid_requests == [] and story.slack.invalid_calls == []


async def test_a_lock_holds_the_chain_back_and_says_why(story: Story) -> None:
    await story.deliver(
        "issue_comment", comment("/lock stage release freeze", number=5, login="bob", comment_id=1)
    )
    await story.deliver("pull_request", merged())
    await succeed(story, "dev")
    assert story.deployments("stage") == []
    assert "Not deploying 3e6e000 to `stage` on its own: `stage` is locked by bob" in (
        story.thread()
    )


async def test_closing_without_merging_deploys_nothing(story: Story) -> None:
    closed = pull_request("closed", number=5, sha=HEAD, title="Chain", author="alice")
    closed["pull_request"].update(state="closed", merged=False)
    await story.deliver("pull_request", closed)
    assert story.deployments("dev") == []
