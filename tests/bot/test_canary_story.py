"""A canary rollout end to end (issue 5, item 1), through the real app in process on both
databases: GitHub and Slack emulators over HTTP, a health endpoint, the scheduler ticking.

`stage` rolls out in steps 10 → 25 (manual) → 50 → 100 with a one-second pause: each step
is its own GitHub deployment (`deploy:canary` with the weight in its payload, the last a
plain `deploy`), the manual step waits for a Promote click, Pause holds everything until
Resume, and a second change whose health fails at 25 % is rolled back to the first.
"""

from __future__ import annotations

import asyncio
import html

import pytest

from bot.pipeline.effects import CreateDeployment
from storage import releases
from tests.story import (
    CHANNEL,
    NAME,
    OWNER,
    HealthEndpoint,
    Story,
    comment,
    deployment_status,
    installation_created,
    pull_request,
)

GOOD, BAD = "a" * 40, "b" * 40


def pipeline(health_url: str) -> str:
    return f"""
slack:
  channel: {CHANNEL}
users:
  alice: U0ALICE
  bob: U0BOB
environments:
  - name: stage
    health: {{url: "{health_url}", interval: 1s, soak: 1s, failures: 2}}
    canary: {{steps: [10, {{weight: 25, manual: true}}, 50, 100], pause: 1s}}
"""


@pytest.fixture
def health():
    with HealthEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
async def story(app, client, github, slack, health) -> Story:
    github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline(health.url))
    for login, permission in [("alice", "write"), ("bob", "write")]:
        github.set_permission(OWNER, NAME, login, permission)
    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    return story


def thread(story: Story) -> str:
    return html.unescape(story.thread())


def weights(story: Story) -> list[tuple[str, str, int | None]]:
    """Each stage deployment, oldest first: (commit, task, weight)."""
    return [
        (d["sha"][:7], d["task"], d["payload"].get("weight"))
        for d in reversed(story.deployments("stage"))
    ]


async def deploy(story: Story, *, number: int, sha: str) -> None:
    pr = pull_request("opened", number=number, sha=sha, title=f"Change {number}", author="alice")
    story.github.respond("pulls/get", body=pr["pull_request"])
    await story.deliver("pull_request", pr)
    await story.deliver(
        "issue_comment",
        comment("/deploy stage", number=number, login="alice", comment_id=100 + number),
    )


async def succeed_newest(story: Story) -> None:
    newest = story.deployments("stage")[0]
    await story.deliver("deployment_status", deployment_status(newest["id"], "success"))


async def test_a_canary_walks_its_steps_pauses_is_promoted_and_a_failure_rolls_back(
    story: Story, health: HealthEndpoint
) -> None:
    await deploy(story, number=1, sha=GOOD)
    (first,) = story.deployments("stage")
    assert (first["task"], first["payload"]["weight"], first["payload"]["step"]) == (
        "deploy:canary",
        10,
        0,
    )
    assert first["payload"]["rollout"] > 0

    # 10 % is verified for its pause, then 25 % starts on its own.
    await succeed_newest(story)
    assert "canary `▓░░░░░░░░░ 10%`" in story.thread()
    await story.tick_until(lambda: len(story.deployments("stage")) == 2)
    await succeed_newest(story)
    # 25 % is manual: it holds, and the board offers Promote.
    await story.tick_until(lambda: "holds at 25%" in story.thread())
    promote = story.button_value("promote")
    assert promote.startswith("step:")

    # Pause: nothing moves, not even a promote, until Resume.
    await story.click("pause", story.button_value("pause"), "U0BOB")
    paused = "bob paused the rollout of aaaaaaa in `stage` at 25% (canary)"
    await story.eventually(lambda: paused in thread(story))
    assert story.button_value("resume") == f"rollout:{promote.split(':')[1]}"
    await story.click("promote", promote, "U0BOB")
    await story.eventually(
        lambda: "is paused; resume it before promoting" in str(story.slack.ephemerals)
    )
    for _ in range(3):
        await story.tick()
    assert len(story.deployments("stage")) == 2
    await story.click("resume", story.button_value("resume"), "U0BOB")
    await story.eventually(lambda: "bob resumed the rollout" in thread(story))

    await story.click("promote", promote, "U0BOB")
    await story.eventually(lambda: "was promoted by bob; going to 50%" in thread(story))
    assert "(step 3 of 4)" in thread(story)
    await succeed_newest(story)
    await story.tick_until(lambda: len(story.deployments("stage")) == 4)
    await succeed_newest(story)
    await story.tick_until(lambda: "`stage` is running aaaaaaa" in story.thread())
    assert weights(story) == [
        ("aaaaaaa", "deploy:canary", 10),
        ("aaaaaaa", "deploy:canary", 25),
        ("aaaaaaa", "deploy:canary", 50),
        ("aaaaaaa", "deploy", 100),
    ]

    # The second change fails its health at 25 %: rolled back to the first, once.
    await deploy(story, number=2, sha=BAD)
    await succeed_newest(story)
    await story.tick_until(lambda: len(story.deployments("stage")) == 6)
    health.failing = True
    await succeed_newest(story)
    await story.tick_until(lambda: len(story.deployments("stage")) == 7)
    await story.settle()  # the deployment may be out before the reply that announces it
    rollback = story.deployments("stage")[0]
    assert (rollback["sha"], rollback["task"], rollback["payload"]["kind"]) == (
        GOOD,
        "deploy",
        "rollback",
    )
    assert "Rolling `stage` back to aaaaaaa because 2 health checks in a row failed" in thread(
        story
    )
    health.failing = False
    await story.deliver("deployment_status", deployment_status(rollback["id"], "success"))
    assert "Rolled back `stage` to aaaaaaa." in story.thread()
    for _ in range(3):
        await story.tick()
    assert len(story.deployments("stage")) == 7

    # A step's deployment that reaches the outbox after its rollout was rolled back (a
    # retry that outlived it) is not created: it would put traffic back on the bad commit.
    bad = next(d for d in story.deployments("stage") if d["sha"] == BAD)["payload"]["rollout"]
    late = CreateDeployment(
        rollout_id=bad,
        repository=f"{OWNER}/{NAME}",
        environment="stage",
        commit_sha=BAD,
        task="deploy:canary",
        payload={
            "rollout": bad,
            "kind": "deploy",
            "requested_by": "alice",
            "weight": 50,
            "step": 2,
        },
        step=2,
    )
    async with story.sessions.begin() as session:
        assert await releases.enqueue(session, late)
    await story.tick()
    await story.settle()
    assert len(story.deployments("stage")) == 7


async def test_a_refused_step_takes_the_canary_back_to_zero(story: Story) -> None:
    await deploy(story, number=4, sha=BAD)
    await succeed_newest(story)
    story.github.fail("repos/create-deployment", status=422, times=1)
    for _ in range(50):
        await story.tick()
        await story.settle(allow_dead=True)
        if "back to 0%" in story.thread():
            break
        await asyncio.sleep(0.2)
    assert "its next step could not start: GitHub refused it" in thread(story)
    assert weights(story) == [("bbbbbbb", "deploy:canary", 10), ("bbbbbbb", "deploy:canary", 0)]


async def test_pause_and_resume_from_slash_command_and_pr_comment(story: Story) -> None:
    await deploy(story, number=3, sha=GOOD)
    response = await story.slash("pause acme/api stage", user="U0BOB")
    assert response.status_code == 200
    await story.eventually(lambda: "bob paused the rollout" in thread(story))
    await story.deliver(
        "issue_comment", comment("/deploy resume stage", number=3, login="alice", comment_id=7)
    )
    assert "alice resumed the rollout of aaaaaaa in `stage` at 10% (canary)" in thread(story)
    await story.deliver(
        "issue_comment", comment("/deploy resume stage", number=3, login="alice", comment_id=8)
    )
    said = [c.json["body"] for c in story.github.calls_to("issues/create-comment")]
    assert any("`stage` is not paused." in body for body in said)
