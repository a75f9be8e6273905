"""The deploy queue through the app (issue 5, items 4, 5 and 7), in process on both
databases against the GitHub and Slack emulators over HTTP, the scheduler ticking:

- `--queue` waits behind a busy environment and starts when it is free;
- `--wait` waits for pending checks and starts when they are green;
- a request waiting for its checks lets a ready one behind it go, and is skipped when that
  newer commit, which contains it (GitHub's compare), succeeds;
- a pull request that moves on cancels its queued request.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot.pipeline.freezes import Freeze
from bot.pipeline.models import Person
from storage import freezes
from storage.models import AuditEvent, Rollout, utcnow
from tests.story import (
    CHANNEL,
    NAME,
    OWNER,
    Story,
    check_suite_completed,
    comment,
    commit_status,
    deployment_status,
    installation_created,
    pull_request,
)

PIPELINE = f"""
slack:
  channel: {CHANNEL}
users:
  alice: U0ALICE
  bob: U0BOB
environments:
  - name: stage
  - name: production
    approvals: 1
    approvers: [bob]
"""
RUNNING, OLDER, NEWER = "7" * 40, "0a" * 20, "0b" * 20


@pytest.fixture
async def story(app, client, github, slack) -> Story:
    github.set_file(OWNER, NAME, ".github/deploybot.yml", PIPELINE)
    for login in ("alice", "bob"):
        github.set_permission(OWNER, NAME, login, "write")
    github.set_permission(OWNER, NAME, "carol", "admin")
    github.set_parent(OWNER, NAME, NEWER, OLDER)  # the newer change is stacked on the older
    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    return story


async def say(story: Story, number: int, sha: str, text: str, login: str = "alice") -> str:
    """Comment on pull request `number` (head `sha`), opening it first; the bot's answer."""
    pr = pull_request("opened", number=number, sha=sha, title=f"Change {number}", author=login)
    story.github.respond("pulls/get", body=pr["pull_request"])
    before = len(answers(story))
    await story.deliver(
        "issue_comment",
        comment(text, number=number, login=login, comment_id=1000 + story.deliveries),
    )
    return "\n".join(answers(story)[before:])


def answers(story: Story) -> list[str]:
    return [call.json["body"] for call in story.github.calls_to("issues/create-comment")]


def shas(story: Story) -> list[str]:
    return [d["sha"] for d in reversed(story.deployments("stage"))]


async def succeed(story: Story, sha: str) -> None:
    deployment = next(d for d in story.deployments("stage") if d["sha"] == sha)
    await story.deliver("deployment_status", deployment_status(deployment["id"], "success"))


async def look_again(story: Story) -> None:
    """A request waiting for checks is looked at again a minute later; not in a test."""
    async with story.sessions.begin() as session:
        await session.execute(sa.update(Rollout).values(next_check_at=None))


async def test_queue_waits_behind_a_busy_environment(story: Story) -> None:
    await say(story, 1, RUNNING, "/deploy stage")
    refused = await say(story, 2, NEWER, "/deploy stage", login="bob")
    assert "`stage` is busy" in refused and "add `--queue`" in refused
    assert await say(story, 2, NEWER, "/deploy stage --queue", login="bob") == ""
    assert "bob queued 0b0b0b0 for `stage`: it waits for 7777777 (pending) to finish" in (
        story.thread()
    )
    await story.tick()
    assert shas(story) == [RUNNING]
    await succeed(story, RUNNING)
    await story.tick_until(lambda: shas(story) == [RUNNING, NEWER])
    assert "bob is deploying 0b0b0b0 to `stage`." in story.thread()


async def test_wait_starts_when_the_checks_turn_green(story: Story) -> None:
    story.github.set_check_run(OWNER, NAME, OLDER, "ci", "in_progress")
    refused = await say(story, 1, OLDER, "/deploy stage")
    assert "needs green checks" in refused
    assert await say(story, 1, OLDER, "/deploy stage --wait") == ""
    assert "it waits for its checks to finish (pending: `ci`)" in story.thread()
    await story.tick()
    assert shas(story) == []
    story.github.set_check_run(OWNER, NAME, OLDER, "ci", "completed", "success")
    # GitHub says a check of that commit finished: it is looked at on the next tick, not
    # after its one-minute wait (the verdict itself is read from GitHub, not the delivery).
    await story.deliver("check_suite", check_suite_completed(OLDER))
    await story.tick_until(lambda: shas(story) == [OLDER])


async def test_a_status_delivery_wakes_only_the_requests_waiting_for_that_commit(
    story: Story,
) -> None:
    for number, sha in [(1, OLDER), (2, NEWER)]:
        story.github.set_status(OWNER, NAME, sha, "ci/build", "pending")
        await say(story, number, sha, "/deploy stage --wait")
    await story.tick()
    async with story.sessions() as session:
        waiting = (await session.execute(sa.select(Rollout.next_check_at))).scalars().all()
    assert all(at is not None for at in waiting)  # both wait their minute
    await story.deliver("status", commit_status(NEWER, "ci/build", "success"))
    async with story.sessions() as session:
        rows = (await session.execute(sa.select(Rollout))).scalars().all()
    woken = {row.commit_sha: row.next_check_at is None for row in rows}
    assert woken == {OLDER: False, NEWER: True}


async def test_a_newer_commit_goes_first_and_the_older_one_is_skipped(story: Story) -> None:
    await say(story, 1, RUNNING, "/deploy stage")
    story.github.set_check_run(OWNER, NAME, OLDER, "ci", "in_progress")
    await say(story, 2, OLDER, "/deploy stage --queue --wait")
    await say(story, 3, NEWER, "/deploy stage --queue", login="bob")
    await succeed(story, RUNNING)
    # The older one still waits for its checks: the newer one behind it goes first.
    await story.tick_until(lambda: shas(story) == [RUNNING, NEWER])
    await succeed(story, NEWER)
    await look_again(story)
    await story.tick_until(
        lambda: (
            "Skipped the queued deploy of 0a0a0a0 to `stage`: 0b0b0b0, which contains "
            "it, succeeded there since." in story.thread()
        )
    )
    story.github.set_check_run(OWNER, NAME, OLDER, "ci", "completed", "success")
    await look_again(story)
    for _ in range(2):
        await story.tick()
    assert shas(story) == [RUNNING, NEWER]
    compared = story.github.calls_to("repos/compare-commits")
    assert compared and compared[-1].path.endswith(f"/compare/{OLDER}...{NEWER}")


async def test_a_commit_the_newer_one_does_not_contain_still_goes(story: Story) -> None:
    await say(story, 1, RUNNING, "/deploy stage")
    story.github.set_check_run(OWNER, NAME, RUNNING[:-1] + "8", "ci", "in_progress")
    unrelated = RUNNING[:-1] + "8"
    await say(story, 2, unrelated, "/deploy stage --queue --wait")
    await say(story, 3, NEWER, "/deploy stage --queue", login="bob")
    await succeed(story, RUNNING)
    await story.tick_until(lambda: shas(story) == [RUNNING, NEWER])
    await succeed(story, NEWER)
    story.github.set_check_run(OWNER, NAME, unrelated, "ci", "completed", "success")
    await look_again(story)
    await story.tick_until(lambda: shas(story) == [RUNNING, NEWER, unrelated])


async def test_a_pull_request_that_moves_on_cancels_its_queued_request(story: Story) -> None:
    await say(story, 1, RUNNING, "/deploy stage")
    await say(story, 2, OLDER, "/deploy stage --queue")
    moved = pull_request("synchronize", number=2, sha=NEWER, title="Change 2", author="alice")
    await story.deliver("pull_request", moved)
    assert (
        "Cancelled the queued deploy of 0a0a0a0 to `stage`: the pull request moved on to "
        "0b0b0b0." in story.thread()
    )
    await succeed(story, RUNNING)
    for _ in range(2):
        await story.tick()
    assert shas(story) == [RUNNING]


async def test_a_forced_request_past_a_freeze_is_audited_when_it_starts(story: Story) -> None:
    await say(story, 1, RUNNING, "/deploy stage")
    async with story.sessions.begin() as session:
        await freezes.put(
            session,
            Freeze(
                repository=f"{OWNER}/{NAME}",
                by=Person(github="carol"),
                reason="end of quarter",
                until=utcnow() + timedelta(hours=1),
                since=utcnow(),
            ),
        )
    assert await say(story, 2, NEWER, "/deploy stage --force --queue", login="carol") == ""
    assert await forced_past_freeze(story) == 0  # queued: nothing went past it yet
    await succeed(story, RUNNING)
    await story.tick_until(lambda: shas(story) == [RUNNING, NEWER])
    assert await forced_past_freeze(story) == 1


async def forced_past_freeze(story: Story) -> int:
    async with story.sessions() as session:
        found = await session.execute(
            sa.select(sa.func.count())
            .select_from(AuditEvent)
            .where(AuditEvent.action == "force-past-freeze")
        )
        return int(found.scalar_one())


async def test_a_request_github_cannot_answer_for_is_cancelled_not_left_waiting(
    story: Story,
) -> None:
    await say(story, 1, RUNNING, "/deploy stage")
    await say(story, 2, NEWER, "/deploy stage --queue", login="bob")
    await succeed(story, RUNNING)
    story.github.fail("repos/get-combined-status-for-ref", status=404, times=5)
    await story.tick_until(lambda: "Cancelled the queued deploy of 0b0b0b0" in story.thread())
    assert "GitHub cannot say whether its checks are green" in story.thread()
    assert shas(story) == [RUNNING]
