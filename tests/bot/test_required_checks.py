"""Required checks end to end (issue 5, item 7): a deploy of a commit whose statuses or
check runs fail or still run is refused, naming them, from a PR comment, a slash command
and a Promote click; `checks: ignore` deploys anyway, `--force` overrides, rollbacks never
look. In process, with the GitHub and Slack emulators over HTTP, on both databases."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage.models import AuditEvent
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

HEAD = "c4ec4e" + "1" * 34
NEWER = "c4ec4e" + "2" * 34
MAIN = "a1" * 20
CHECK_CALLS = ("repos/get-combined-status-for-ref", "checks/list-for-ref")

PIPELINE = f"""
slack:
  channel: {CHANNEL}
users:
  alice: U0ALICE
  bob: U0BOB
  carol: U0CAROL
environments:
  - name: stage
  - name: production
    approvals: 1
    approvers: [bob]
"""


@pytest.fixture
async def story(app, client, github, slack) -> Story:

    github.set_file(OWNER, NAME, ".github/deploybot.yml", PIPELINE)
    github.set_default_branch(OWNER, NAME, "main")
    github.set_ref(OWNER, NAME, "main", MAIN, message="Main at its newest")
    for login, permission in [("alice", "write"), ("bob", "write"), ("carol", "admin")]:
        github.set_permission(OWNER, NAME, login, permission)
    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    return story


async def open_pr(story: Story, sha: str = HEAD) -> None:
    pr = pull_request("opened", number=9, sha=sha, title="Checks", author="alice")
    story.github.respond("pulls/get", body=pr["pull_request"])
    await story.deliver("pull_request", pr)


def replies(story: Story) -> list[str]:
    return [call.json["body"] for call in story.github.calls_to("issues/create-comment")]


async def say(story: Story, text: str, login: str = "alice") -> str:
    """Comment on the pull request; the bot's answer to it, if any."""
    before = len(replies(story))
    await story.deliver(
        "issue_comment", comment(text, number=9, login=login, comment_id=1000 + story.deliveries)
    )
    return "\n".join(replies(story)[before:])


async def succeed(story: Story, environment: str, sha: str) -> None:
    deployment = next(d for d in story.deployments(environment) if d["sha"] == sha)
    await story.deliver("deployment_status", deployment_status(deployment["id"], "success"))
    await story.tick_until(lambda: f"`{environment}` is running {sha[:7]}" in story.thread())


# --- PR comments -----------------------------------------------------------------------


async def test_a_failing_status_refuses_until_it_is_green(story: Story) -> None:
    await open_pr(story)
    story.github.set_status(OWNER, NAME, HEAD, "ci/build", "failure")
    story.github.set_check_run(OWNER, NAME, HEAD, "lint", "completed", "success")

    said = await say(story, "/deploy stage")
    assert (
        "`stage` needs green checks on c4ec4e1: failing: `ci/build`. Fix them or wait, then "
        "deploy again (or `--force`)." in said
    )
    assert story.deployments("stage") == []
    assert "needs green checks" not in story.thread()  # a refusal is the commenter's business

    story.github.set_status(OWNER, NAME, HEAD, "ci/build", "success")
    assert await say(story, "/deploy stage") == ""
    (deployment,) = story.deployments("stage")
    assert deployment["sha"] == HEAD
    # deploybot is the gate: GitHub is not asked to check the contexts again.
    (sent,) = story.github.calls_to("repos/create-deployment")
    assert sent.json["required_contexts"] == []
    assert "alice is deploying c4ec4e1 to `stage`" in story.thread()
    # The checks asked about were the PR head's.
    assert {c.path.split("/")[5] for n in CHECK_CALLS for c in story.github.calls_to(n)} == {HEAD}


async def test_a_pending_check_run_refuses_naming_it(story: Story) -> None:
    await open_pr(story)
    story.github.set_check_run(OWNER, NAME, HEAD, "e2e", "in_progress")
    story.github.set_check_run(OWNER, NAME, HEAD, "unit", "completed", "cancelled")
    said = await say(story, "/deploy stage")
    assert "needs green checks on c4ec4e1: failing: `unit`; pending: `e2e`." in said
    assert story.deployments("stage") == []


async def test_checks_ignore_deploys_despite_failing_checks(story: Story) -> None:
    ignoring = PIPELINE.replace("  - name: stage\n", "  - name: stage\n    checks: ignore\n")
    assert "checks: ignore" in ignoring
    story.github.set_file(OWNER, NAME, ".github/deploybot.yml", ignoring)
    await open_pr(story)
    story.github.set_status(OWNER, NAME, HEAD, "ci/build", "error")
    assert await say(story, "/deploy stage") == ""
    assert len(story.deployments("stage")) == 1
    assert all(story.github.calls_to(name) == [] for name in CHECK_CALLS)  # never asked


async def test_nothing_reported_is_green(story: Story) -> None:
    await open_pr(story)
    assert await say(story, "/deploy stage") == ""
    assert len(story.deployments("stage")) == 1


async def test_force_overrides_for_admins_only(story: Story) -> None:
    await open_pr(story)
    story.github.set_status(OWNER, NAME, HEAD, "ci/build", "failure")
    said = await say(story, "/deploy stage --force", login="alice")  # write: no override
    assert "`--force` is for the approvers of `stage`" in said
    assert story.deployments("stage") == []
    async with story.sessions() as session:
        (refused,) = (await session.execute(sa.select(AuditEvent))).scalars().all()
    assert (refused.actor, refused.source, refused.action) == ("alice", "github", "/deploy")
    assert refused.commit_sha == HEAD and "`--force` is for" in refused.detail["refused"]
    assert refused.detail["comment"] == "/deploy stage --force"
    assert await say(story, "/deploy stage --force", login="carol") == ""
    assert len(story.deployments("stage")) == 1
    assert "carol used `--force` past its checks (failing: `ci/build`)." in story.thread()
    async with story.sessions() as session:
        forced = sa.select(AuditEvent).where(AuditEvent.action == "force")
        (audit,) = (await session.execute(forced)).scalars().all()
    assert (audit.action, audit.actor, audit.source, audit.detail) == (
        "force",
        "carol",
        "github",
        {"overrode": ["its checks (failing: `ci/build`)"]},
    )


async def test_a_refused_approval_gate_asks_nobody(story: Story) -> None:
    await open_pr(story)
    await say(story, "/deploy stage")
    await succeed(story, "stage", HEAD)
    story.github.set_check_run(OWNER, NAME, HEAD, "security", "queued")
    said = await say(story, "/deploy production")
    assert "`production` needs green checks on c4ec4e1: pending: `security`." in said
    assert "waiting for 1 approval" not in story.thread()


async def test_rollbacks_never_look_at_checks(story: Story) -> None:
    await open_pr(story, HEAD)
    await say(story, "/deploy stage")
    await succeed(story, "stage", HEAD)
    await open_pr(story, NEWER)  # the PR moved on
    await say(story, "/deploy stage")
    await succeed(story, "stage", NEWER)

    story.github.set_status(OWNER, NAME, HEAD, "ci/build", "failure")
    story.github.reset()
    assert await say(story, "/rollback stage") == ""
    rollback = story.deployments("stage")[0]
    assert rollback["sha"] == HEAD
    assert all(story.github.calls_to(name) == [] for name in CHECK_CALLS)


# --- Slack -----------------------------------------------------------------------------


async def answer(story: Story, text: str, *, user: str) -> str:
    """Run `/deploy <text>` in Slack and return what is said back."""
    private, public = len(story.slack.ephemerals), len(story.slack.messages)
    response = await story.slash(text, user=user)
    assert response.status_code == 200, response.text

    def new() -> list[dict]:
        fresh = story.slack.ephemerals[private:] + story.slack.messages[public:]
        return [m for m in fresh if m["channel"] == CHANNEL and not m.get("blocks")]

    await story.eventually(lambda: bool(new()))
    return "\n".join(m.get("text", "") for m in new())


async def test_a_slash_command_deploy_is_refused_naming_the_checks(story: Story) -> None:
    story.github.set_status(OWNER, NAME, MAIN, "ci/build", "failure")
    story.github.set_check_run(OWNER, NAME, MAIN, "e2e", "queued")
    said = await answer(story, "acme/api to stage", user="U0BOB")
    assert "`stage` needs green checks on a1a1a1a: failing: `ci/build`; pending: `e2e`." in said
    assert story.deployments("stage") == []

    story.github.set_status(OWNER, NAME, MAIN, "ci/build", "success")
    story.github.set_check_run(OWNER, NAME, MAIN, "e2e", "completed", "skipped")
    said = await answer(story, "acme/api to stage", user="U0BOB")
    assert "asked to deploy acme/api@main (a1a1a1a) to `stage`" in said
    await story.settle()
    assert [d["sha"] for d in story.deployments("stage")] == [MAIN]


async def test_promote_is_refused_while_checks_fail(story: Story) -> None:
    await answer(story, "acme/api to stage", user="U0BOB")
    await story.settle()
    await succeed(story, "stage", MAIN)
    story.github.set_status(OWNER, NAME, MAIN, "ci/nightly", "failure")

    promote = next(
        element["value"]
        for message in reversed(story.slack.messages)
        for block in message.get("blocks") or []
        for element in block.get("elements", [])
        if element.get("action_id") == "promote"
    )
    await story.click("promote", promote, "U0BOB")
    await story.eventually(
        lambda: any(
            "`production` needs green checks on a1a1a1a: failing: `ci/nightly`" in m["text"]
            for m in story.slack.ephemerals
            if m.get("user") == "U0BOB"
        )
    )
    assert "waiting for 1 approval" not in story.thread()
