"""Button clicks, acked at once and worked out after the ack (issue #7 item 2): GitHub asked
between the click's writes only when its approvers need it, reads that never queue behind a
write, one board drawing for a burst of stale clicks, and an ack that waits for neither the
database nor GitHub. Through signed requests to the app in process, with the GitHub and
Slack emulators over real HTTP, on both databases."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable

import pytest
import sqlalchemy as sa

from bot.slack import actions
from storage.models import AuditEvent, OutboxEffect
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

HEAD = "c1" * 20
MEMBERSHIP = "teams/get-membership-for-user-in-org"


def pipeline(approvers: str) -> str:
    return f"""
slack:
  channel: {CHANNEL}
users:
  alice: U0ALICE
  bob: U0BOB
  mallory: U0MALLORY
environments:
  - name: stage
  - name: production
    approvals: 1
{approvers}"""


async def waiting_for_approval(story: Story, approvers: str) -> str:
    """alice's pull request deployed to stage and asked for production: the Approve
    button's value."""
    story.github.set_file(OWNER, NAME, ".github/deploybot.yml", pipeline(approvers))
    for login, permission in [("alice", "write"), ("bob", "admin"), ("mallory", "write")]:
        story.github.set_permission(OWNER, NAME, login, permission)
    await story.deliver("installation", installation_created())
    pr = pull_request("opened", number=7, sha=HEAD, title="Checkout", author="alice")
    story.github.respond("pulls/get", body=pr["pull_request"])
    await story.deliver("pull_request", pr)
    await story.deliver(
        "issue_comment", comment("/deploy stage", number=7, login="alice", comment_id=1)
    )
    (stage,) = story.deployments("stage")
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))
    await story.deliver(
        "issue_comment", comment("/deploy production", number=7, login="alice", comment_id=2)
    )
    return story.button_value("approve")


@pytest.fixture
def story(app, client, github, slack) -> Story:
    return Story.in_process(app, client, github, slack)


def said_to(story: Story, user: str) -> list[str]:
    return [m["text"] for m in story.slack.ephemerals if m.get("user") == user]


async def stale_click_redraws(story: Story) -> int:
    """Board drawings queued for clicks whose moment had passed."""
    async with story.sessions() as session:
        keys = (await session.execute(sa.select(OutboxEffect.idempotency_key))).scalars()
        return len([key for key in keys if ":stale-click:" in key])


async def until(predicate: Callable[[], bool], seconds: float = 10) -> None:
    """Wait for what the emulators show, without touching the database."""
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "it did not happen in time"
        await asyncio.sleep(0.02)


async def test_a_team_approver_is_asked_of_github_between_the_clicks_writes(
    story: Story,
) -> None:
    request = await waiting_for_approval(story, '    approvers: ["@acme/sre"]\n')
    story.github.fail(MEMBERSHIP, status=404)  # mallory is not in the team
    await story.click("approve", request, "U0MALLORY")
    await story.eventually(lambda: bool(said_to(story, "U0MALLORY")))
    assert story.deployments("production") == []
    assert len(story.github.calls_to(MEMBERSHIP)) == 1

    await story.click("approve", request, "U0BOB")  # GitHub's example: an active member
    await story.eventually(lambda: len(story.deployments("production")) == 1)
    assert len(story.github.calls_to(MEMBERSHIP)) == 2
    assert story.slack.invalid_calls == [] and story.github.invalid_requests == []


async def test_without_approvers_the_repository_admins_approve(story: Story) -> None:
    request = await waiting_for_approval(story, "")
    await story.click("approve", request, "U0MALLORY")  # may write, does not administer
    await story.eventually(lambda: bool(said_to(story, "U0MALLORY")))
    assert story.deployments("production") == []

    await story.click("approve", request, "U0BOB")  # an admin
    await story.eventually(lambda: len(story.deployments("production")) == 1)


async def test_approvers_whom_github_cannot_confirm_are_told_and_the_board_is_redrawn(
    story: Story,
) -> None:
    request = await waiting_for_approval(story, '    approvers: ["@acme/sre"]\n')
    story.github.fail(MEMBERSHIP, status=401)  # not retried, unlike a 5xx
    await story.click("approve", request, "U0BOB")
    await story.eventually(lambda: bool(said_to(story, "U0BOB")))
    assert "GitHub could not confirm who may approve" in said_to(story, "U0BOB")[0]
    assert story.deployments("production") == []
    deadline = time.monotonic() + 10
    while not await stale_click_redraws(story):  # queued after the answer
        assert time.monotonic() < deadline, "the board was not drawn again"
        await asyncio.sleep(0.05)


async def test_a_burst_of_stale_clicks_on_one_board_draws_it_once(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(actions, "REDRAW_SECONDS", 600)  # however slow the machine
    request = await waiting_for_approval(story, "    approvers: [bob]\n")
    await asyncio.gather(*(story.click("approve", request, "U0ALICE") for _ in range(3)))
    await story.click("approve", request, "U0ALICE")
    await story.eventually(lambda: len(said_to(story, "U0ALICE")) == 4)
    assert all("You asked for this deploy" in text for text in said_to(story, "U0ALICE"))
    assert await stale_click_redraws(story) == 1
    async with story.sessions() as session:
        refusals = sa.select(sa.func.count()).where(
            AuditEvent.source == "slack", AuditEvent.action == "approve"
        )
        assert (await session.execute(refusals)).scalar_one() == 4  # each click is audited


@contextlib.asynccontextmanager
async def writes_held(app) -> AsyncIterator[None]:
    """Another transaction holds what a click's writes need: SQLite's one write lock, or
    PostgreSQL's audit log table (reads go on beside it)."""
    engine = app.state.services.engine
    async with engine.begin() as connection:  # BEGIN IMMEDIATE on SQLite
        if engine.dialect.name == "postgresql":
            await connection.execute(sa.text("LOCK TABLE auditevent IN EXCLUSIVE MODE"))
        else:
            await connection.execute(sa.text("SELECT 1"))
        yield


async def test_a_click_is_acked_while_its_work_waits_for_the_database(app, story: Story) -> None:
    async with writes_held(app):
        started = time.monotonic()
        response = await story.click("approve", "rollout:404", "U0ALICE", settle=False)
        acked = time.monotonic() - started
        await asyncio.sleep(0.3)
        assert story.slack.ephemerals == []  # its refusal waits to be recorded first
    assert response.status_code == 200 and acked < 2, f"the ack took {acked:.1f} s"
    await story.eventually(lambda: bool(story.slack.ephemerals))
    assert "no longer exists" in story.slack.ephemerals[0]["text"]


async def test_a_click_is_acked_while_its_work_waits_for_github(story: Story) -> None:
    await waiting_for_approval(story, "    approvers: [bob]\n")
    rollback = story.button_value("rollback")
    story.github.delay("repos/get-content", 4)
    started = time.monotonic()
    response = await story.click("rollback", rollback, "U0ALICE", settle=False)
    acked = time.monotonic() - started
    assert response.status_code == 200 and acked < 3, f"the ack took {acked:.1f} s"
    await story.eventually(lambda: bool(story.slack.calls_to("views.open")), seconds=15)


async def test_the_home_tab_reads_beside_a_held_write(app, story: Story) -> None:
    await waiting_for_approval(story, "    approvers: [bob]\n")
    async with writes_held(app):
        response = await story.open_home("U0BOB")
        assert response.status_code == 200
        await until(lambda: "U0BOB" in story.slack.home_views)
    assert f"{OWNER}/{NAME}" in str(story.slack.home_views["U0BOB"]["blocks"])
