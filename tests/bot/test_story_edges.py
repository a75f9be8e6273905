"""The release story's bad input and edge cases, through the real app in process."""

from __future__ import annotations

import pytest

from tests.story import (
    CHANNEL,
    INSTALLATION_ID,
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

SHA, NEWER = "f" * 40, "9" * 40


@pytest.fixture
def health():
    with HealthEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
async def story(app, client, github, slack, health) -> Story:

    github.set_file(
        OWNER, NAME, ".github/deploybot.yml", pipeline_file(channel=CHANNEL, health_url=health.url)
    )
    for login in ("alice", "bob"):
        github.set_permission(OWNER, NAME, login, "write")
    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    return story


async def open_pr(story: Story, sha: str = SHA, action: str = "opened") -> dict:
    pr = pull_request(action, number=5, sha=sha, title="Edge", author="alice")
    story.github.respond("pulls/get", body=pr["pull_request"])
    await story.deliver("pull_request", pr)
    return pr


async def test_an_invalid_pipeline_file_blocks_deploys_and_says_where(story: Story) -> None:
    story.github.set_file(
        OWNER, NAME, ".github/deploybot.yml", "environments:\n  - name: stage\n    aprovals: 1\n"
    )
    await open_pr(story)
    await story.deliver(
        "issue_comment", comment("/deploy stage", number=5, login="alice", comment_id=1)
    )
    assert story.deployments("stage") == []
    bodies = [c.json["body"] for c in story.github.calls_to("issues/create-comment")]
    assert any("line 3" in b and "environments[0].aprovals" in b for b in bodies), bodies


async def test_approvals_bind_to_the_commit_they_were_asked_for(story: Story) -> None:
    await open_pr(story)
    await story.deliver(
        "issue_comment", comment("/deploy stage", number=5, login="alice", comment_id=1)
    )
    (stage,) = story.deployments("stage")
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))
    await story.tick_until(lambda: "`stage` is running" in story.thread())
    await story.deliver(
        "issue_comment", comment("/deploy production", number=5, login="alice", comment_id=2)
    )
    request = story.button_value("approve")
    await open_pr(story, sha=NEWER, action="synchronize")  # the head moves
    assert "is cancelled: the pull request's head is now 9999999" in story.thread()
    await story.click("approve", request, "U0BOB")
    await story.eventually(lambda: bool(story.slack.ephemerals))
    assert "Nothing to decide: the deploy is cancelled" in story.slack.ephemerals[-1]["text"]
    assert story.deployments("production") == []
    # The environment is free for the new head (once it has passed stage).


async def test_statuses_of_deployments_we_did_not_create_are_ignored(story: Story) -> None:
    await open_pr(story)
    before = len(story.slack.calls)
    await story.deliver("deployment_status", deployment_status(987654321, "failure"))
    assert len(story.slack.calls) == before
    assert story.deployments("stage") == []


async def test_github_and_slack_failures_are_retried_never_doubled(story: Story) -> None:
    story.slack.fail("chat.postMessage", status=500, times=1)
    story.github.fail("repos/create-deployment", status=502, times=1)
    await open_pr(story)
    await story.deliver(
        "issue_comment", comment("/deploy stage", number=5, login="alice", comment_id=1)
    )
    assert len(story.deployments("stage")) == 1
    assert [c.status for c in story.github.calls_to("repos/create-deployment")] == [502, 201]
    assert 500 in [c.status for c in story.slack.calls_to("chat.postMessage")]
    boards = [m for m in story.slack.messages if m.get("thread_ts") in (None, m["ts"])]
    assert len(boards) == 1


async def test_bots_and_prose_are_not_commands(story: Story) -> None:
    await open_pr(story)
    bot = comment("/deploy stage", number=5, login="deploybot[bot]", comment_id=1)
    bot["comment"]["user"]["type"] = "Bot"
    await story.deliver("issue_comment", bot)
    await story.deliver(
        "issue_comment",
        comment("I think we should /deploy stage later", number=5, login="alice", comment_id=2),
    )
    assert story.deployments("stage") == []
    assert story.github.calls_to("reactions/create-for-issue-comment") == []


async def test_the_promote_button_deploys_the_next_environment(story: Story) -> None:
    await open_pr(story)
    await story.deliver(
        "issue_comment", comment("/deploy stage", number=5, login="alice", comment_id=1)
    )
    (stage,) = story.deployments("stage")
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))
    await story.tick_until(lambda: "`stage` is running" in story.thread())
    await story.click("promote", story.button_value("promote"), "U0ALICE")
    await story.eventually(lambda: "waiting for 1 approval" in story.thread())
    assert story.deployments("production") == []  # production still needs its approval


async def test_without_records_the_rollback_target_comes_from_github(
    story: Story, app, health
) -> None:
    # A deploy made before deploybot was installed: GitHub knows it succeeded, we don't.
    client = app.state.services.github.installation(INSTALLATION_ID)
    earlier = await client.create_deployment(
        owner=OWNER, repo=NAME, ref="7" * 40, environment="stage", payload={}
    )
    await client.create_deployment_status(
        owner=OWNER, repo=NAME, deployment_id=earlier.id, state="success"
    )
    await open_pr(story)
    await story.deliver(
        "issue_comment", comment("/deploy stage", number=5, login="alice", comment_id=1)
    )
    (stage,) = [d for d in story.deployments("stage") if d["sha"] == SHA]
    health.failing = True
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))
    await story.tick_until(lambda: len(story.deployments("stage")) == 3)
    rollback = story.deployments("stage")[0]
    assert (rollback["sha"], rollback["payload"]["kind"]) == ("7" * 40, "rollback")


async def test_a_deployment_github_refuses_for_good_frees_the_environment(story: Story) -> None:
    story.github.fail(
        "repos/create-deployment",
        status=422,
        times=1,
        body={"message": "Validation Failed", "errors": []},
    )
    await open_pr(story)
    await story.deliver(
        "issue_comment",
        comment("/deploy stage", number=5, login="alice", comment_id=1),
        allow_dead=True,
    )
    await story.eventually(lambda: "could not start" in story.thread(), allow_dead=True)
    # The environment is free again: the same request can be made once the cause is fixed.
    await story.deliver(
        "issue_comment",
        comment("/deploy stage", number=5, login="alice", comment_id=2),
        allow_dead=True,
    )
    assert len(story.deployments("stage")) == 1


async def test_a_status_that_beats_the_recorded_deployment_id_is_adopted(story: Story, app) -> None:
    await open_pr(story)
    await story.deliver(
        "issue_comment", comment("/deploy stage", number=5, login="alice", comment_id=1)
    )
    (stage,) = story.deployments("stage")
    # As if the dispatcher had not yet written the id down when the status arrived.
    from storage import releases

    async with app.state.services.sessions.begin() as session:
        row, _ = await releases.get_rollout(session, rollout_id=stage["payload"]["rollout"])
        row.github_deployment_id = None
    status = deployment_status(stage["id"], "in_progress")
    status["deployment"].update(sha=stage["sha"], payload=stage["payload"])
    await story.deliver("deployment_status", status)
    assert "Deploying `stage`" in story.thread()
