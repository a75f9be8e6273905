"""The release story through the real app (in process): GitHub and Slack emulators over HTTP,
a health endpoint, the inbox, the core, the outbox and the scheduler, on both databases."""

from __future__ import annotations

import json

import pytest

from bot.slack import modals
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

HEAD = "c0ffee" + "0" * 34


@pytest.fixture
def health():
    with HealthEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def story(app, client, github, slack, health) -> Story:

    github.set_file(
        OWNER, NAME, ".github/deploybot.yml", pipeline_file(channel=CHANNEL, health_url=health.url)
    )
    for login, permission in [("alice", "write"), ("bob", "write"), ("mallory", "read")]:
        github.set_permission(OWNER, NAME, login, permission)
    return Story.in_process(app, client, github, slack)


async def test_pull_request_to_production_with_approval(story: Story, health) -> None:
    await story.deliver("installation", installation_created())
    pr = pull_request(
        "opened", number=7, sha=HEAD, title="Faster <!channel> checkout & pay", author="alice"
    )
    story.github.respond("pulls/get", body=pr["pull_request"])
    await story.deliver("pull_request", pr)

    (board,) = [m for m in story.slack.messages if not m.get("thread_ts")]
    assert board["channel"] == CHANNEL
    mrkdwn = [
        b["text"]["text"] for b in board["blocks"] if b.get("text", {}).get("type") == "mrkdwn"
    ]
    for text in [board["text"], *mrkdwn]:
        assert "<!channel>" not in text  # plain_text (the header) cannot mention anyone

    await story.deliver(
        "issue_comment", comment("/deploy stage", number=7, login="alice", comment_id=501)
    )
    assert story.github.calls_to("reactions/create-for-issue-comment")
    (stage,) = story.deployments("stage")
    assert stage["sha"] == HEAD and stage["payload"]["rollout"]
    assert story.github.invalid_requests == []

    await story.deliver("deployment_status", deployment_status(stage["id"], "in_progress"))
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))
    await story.tick_until(lambda: "is running" in story.thread())
    assert health.hits >= 2

    await story.deliver(
        "issue_comment", comment("/deploy production", number=7, login="alice", comment_id=502)
    )
    assert story.deployments("production") == []
    assert "waiting for 1 approval" in story.thread()

    # The requester cannot approve; someone not listed cannot either; bob can.
    request = story.button_value("approve")
    (request_ts,) = [
        m["ts"]
        for m in story.slack.messages
        if any(
            e.get("value") == request for b in m.get("blocks") or [] for e in b.get("elements", [])
        )
    ]
    await story.click("approve", request, "U0ALICE")
    await story.click("approve", request, "U0MALLORY")
    await story.eventually(lambda: len(story.slack.ephemerals) == 2)
    assert story.deployments("production") == []
    ephemerals = " ".join(e["text"] for e in story.slack.ephemerals)
    assert "You asked for this deploy" in ephemerals and "not an approver" in ephemerals
    response = await story.click("approve", request, "U0BOB")
    assert response.status_code == 200
    await story.eventually(lambda: len(story.deployments("production")) == 1)
    (production,) = story.deployments("production")
    assert production["sha"] == HEAD

    def request_message() -> dict:
        return next(m for m in story.slack.messages if m["ts"] == request_ts)

    await story.eventually(lambda: "Approved" in json.dumps(request_message()["blocks"]))
    actions = [
        e.get("action_id") for b in request_message()["blocks"] for e in b.get("elements", [])
    ]
    assert "approve" not in actions, "a decided request keeps no buttons"
    await story.click("approve", request, "U0BOB")  # a second click changes nothing
    await story.eventually(lambda: len(story.slack.ephemerals) == 3)
    assert "Already decided: approved by bob" in story.slack.ephemerals[-1]["text"]
    assert len(story.deployments("production")) == 1
    assert story.slack.invalid_calls == []


async def ship(story: Story, *, number: int, sha: str, comment_base: int) -> None:
    """A pull request through stage and an approved production deploy, both verified."""
    pr = pull_request("opened", number=number, sha=sha, title=f"Change {number}", author="alice")
    story.github.respond("pulls/get", body=pr["pull_request"])
    await story.deliver("pull_request", pr)
    for offset, environment in enumerate(["stage", "production"]):
        await story.deliver(
            "issue_comment",
            comment(
                f"/deploy {environment}",
                number=number,
                login="alice",
                comment_id=comment_base + offset,
            ),
        )
        if environment == "production":
            await story.click("approve", story.button_value("approve"), "U0BOB")
            await story.eventually(
                lambda: any(d["sha"] == sha for d in story.deployments("production"))
            )
        (deployment,) = [d for d in story.deployments(environment) if d["sha"] == sha]
        await story.deliver("deployment_status", deployment_status(deployment["id"], "success"))
        if environment == "stage":
            await story.tick_until(lambda: f"`stage` is running {sha[:7]}" in story.thread())


async def test_failing_health_rolls_back_exactly_once(story: Story, health) -> None:
    await story.deliver("installation", installation_created())
    good, bad = "a" * 40, "b" * 40
    await ship(story, number=1, sha=good, comment_base=100)
    await story.tick_until(lambda: "`production` is running aaaaaaa" in story.thread())

    await ship(story, number=2, sha=bad, comment_base=200)
    health.failing = True
    await story.tick_until(lambda: len(story.deployments("production")) == 3)

    rollback = story.deployments("production")[0]  # newest first
    assert rollback["sha"] == good and rollback["payload"]["kind"] == "rollback"
    thread = story.thread()
    assert "2 health checks in a row failed" in thread and "503" in thread
    assert "Rolling `production` back to aaaaaaa" in thread

    await story.deliver("deployment_status", deployment_status(rollback["id"], "success"))
    assert "Rolled back `production` to aaaaaaa" in story.thread()
    # Nothing more happens: one rollback only, even as the checks keep failing.
    for _ in range(3):
        await story.tick()
        await story.settle()
    assert len(story.deployments("production")) == 3

    boards = [m for m in story.slack.messages if m.get("thread_ts") in (None, m["ts"])]
    assert len(boards) == 2, "one thread per pull request"
    (board,) = [b for b in boards if "#2 Change 2" in json.dumps(b["blocks"])]
    assert "rolled back" in json.dumps(board["blocks"]).lower()


async def test_rollback_on_request_by_comment_and_by_button(story: Story, health) -> None:
    await story.deliver("installation", installation_created())
    first, second = "d" * 40, "e" * 40
    await ship(story, number=1, sha=first, comment_base=100)
    await story.tick_until(lambda: "`production` is running ddddddd" in story.thread())
    await ship(story, number=2, sha=second, comment_base=200)
    await story.tick_until(lambda: "`production` is running eeeeeee" in story.thread())

    # Someone without write permission is refused, and nothing is deployed.
    await story.deliver(
        "issue_comment", comment("/rollback production", number=2, login="mallory", comment_id=301)
    )
    assert len(story.deployments("production")) == 2
    refusals = story.github.calls_to("issues/create-comment")
    assert "need write permission" in refusals[-1].json["body"]

    await story.deliver(
        "issue_comment", comment("/rollback production", number=2, login="alice", comment_id=302)
    )
    rollback = story.deployments("production")[0]
    assert (rollback["sha"], rollback["payload"]["kind"]) == (first, "rollback")
    await story.deliver("deployment_status", deployment_status(rollback["id"], "success"))
    assert "Rolled back `production` to ddddddd" in story.thread()

    # The board's Rollback button on stage, clicked by bob (write permission, mapped in users:).
    values = [
        element["value"]
        for message in story.slack.messages
        for block in message.get("blocks") or []
        for element in block.get("elements", [])
        if element.get("action_id") == "rollback" and element["value"].endswith(":stage")
    ]
    # PR 1's board (the older thread) no longer governs stage: its button is refused.
    await story.click("rollback", values[0], "U0BOB")
    await story.eventually(
        lambda: (
            "from another pull request" in story.slack.ephemerals[-1]["text"]
            if story.slack.ephemerals
            else False
        )
    )
    value = values[-1]  # PR 2's board: a modal to pick the commit, the newest preselected
    await story.click("rollback", value, "U0BOB")
    await story.eventually(lambda: bool(story.slack.views))
    (view,) = story.slack.views.values()
    (picker,) = [b for b in view["blocks"] if b.get("block_id") == modals.TARGET_BLOCK]
    assert [o["value"] for o in picker["element"]["options"]] == [first]
    chosen = {"type": "radio_buttons", "selected_option": picker["element"]["initial_option"]}
    await story.submit(
        view, user="U0BOB", values={modals.TARGET_BLOCK: {modals.TARGET_ACTION: chosen}}
    )
    await story.eventually(lambda: len(story.deployments("stage")) == 3)
    assert story.deployments("stage")[0]["sha"] == first
    assert story.github.invalid_requests == [] and story.slack.invalid_calls == []
