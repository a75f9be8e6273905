"""`/lock` and `/unlock` on a pull request: the same rules as in Slack, answered on the PR
and announced in the thread (in process, GitHub and Slack emulators over HTTP)."""

from __future__ import annotations

import pytest

from tests.story import (
    CHANNEL,
    NAME,
    OWNER,
    Story,
    comment,
    installation_created,
    pipeline_file,
    pull_request,
)

HEAD = "10c4ed" + "0" * 34


@pytest.fixture
async def story(app, client, github, slack) -> Story:

    github.set_file(
        OWNER,
        NAME,
        ".github/deploybot.yml",
        pipeline_file(channel=CHANNEL, health_url="http://127.0.0.1:9/h"),
    )
    for login, permission in [("alice", "write"), ("bob", "write"), ("carol", "admin")]:
        github.set_permission(OWNER, NAME, login, permission)
    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    pr = pull_request("opened", number=9, sha=HEAD, title="Locks", author="alice")
    github.respond("pulls/get", body=pr["pull_request"])
    await story.deliver("pull_request", pr)
    return story


def replies(story: Story) -> list[str]:
    return [call.json["body"] for call in story.github.calls_to("issues/create-comment")]


async def say(story: Story, text: str, login: str, number: int) -> None:
    await story.deliver("issue_comment", comment(text, number=9, login=login, comment_id=number))


async def test_a_lock_holds_others_off_until_its_holder_unlocks(story: Story) -> None:
    await say(story, "/lock stage load test until noon", "alice", 1)
    assert "alice locked `stage`" in story.thread() and "load test until noon" in story.thread()

    await say(story, "/deploy stage", "bob", 2)
    assert "`stage` is locked by alice (load test until noon)" in replies(story)[-1]
    assert story.deployments("stage") == []

    await say(story, "/unlock stage", "bob", 3)
    assert "Only they or a repository admin can unlock it" in replies(story)[-1]

    await say(story, "/deploy stage", "alice", 4)  # the holder may still deploy
    assert len(story.deployments("stage")) == 1

    await say(story, "/unlock stage", "alice", 5)
    assert "alice unlocked `stage`" in story.thread()


async def test_an_admin_may_take_a_lock_away(story: Story) -> None:
    await say(story, "/lock production", "alice", 1)
    await say(story, "/unlock production", "carol", 2)
    assert "carol unlocked `production` (held by alice)" in story.thread()


async def test_queue_waits_for_the_lock_and_the_holder_goes_first(story: Story) -> None:
    await say(story, "/lock stage", "alice", 1)
    await say(story, "/deploy stage --queue", "bob", 2)
    assert "bob queued 10c4ed0 for `stage`: it waits for the lock of alice" in story.thread()
    await story.tick()
    assert story.deployments("stage") == []
    # Waiting for someone's lock puts nobody ahead of the holder.
    await say(story, "/deploy stage", "alice", 3)
    assert len(story.deployments("stage")) == 1


async def test_commands_from_a_forks_author_without_write_are_refused(story: Story) -> None:
    forked = pull_request("opened", number=9, sha=HEAD, title="Locks", author="forker")
    forked["pull_request"]["head"]["repo"] = {
        **forked["pull_request"]["head"]["repo"],
        "full_name": "forker/api",
        "fork": True,
    }
    story.github.respond("pulls/get", body=forked["pull_request"])
    story.github.set_permission(OWNER, NAME, "forker", "read")
    for number, text in enumerate(["/deploy stage", "/lock stage", "/approve production"], 1):
        await say(story, text, "forker", 100 + number)
        assert "need write permission on acme/api; you have `read`" in replies(story)[-1]
    assert story.deployments("stage") == []
    assert "locked" not in story.thread()
