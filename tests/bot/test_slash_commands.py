"""`/deploy` in Slack, every subcommand and its refusals, through signed requests to the app
(in process) with the GitHub and Slack emulators over real HTTP, on both databases.

Slash commands are acknowledged at once and answered afterwards through their response_url,
which the Slack emulator records: ephemeral answers in `ephemerals`, in-channel ones in
`messages`.
"""

from __future__ import annotations

import asyncio
import time

import pytest
import sqlalchemy as sa

from bot.slack import modals
from storage import locks
from storage.models import AuditEvent, ChannelSubscription, OutboxEffect
from storage.models import Rollout as RolloutRow
from tests.story import (
    CHANNEL,
    INSTALLATION_ID,
    NAME,
    OWNER,
    REPOSITORY,
    HealthEndpoint,
    Story,
    deployment_status,
    installation_created,
    pipeline_file,
)

MAIN = "a1" * 20
RELEASE = "b2" * 20
OTHER = "C0OTHER"


@pytest.fixture
def health():
    with HealthEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
async def story(app, client, github, slack, health) -> Story:

    github.set_file(
        OWNER, NAME, ".github/deploybot.yml", pipeline_file(channel=CHANNEL, health_url=health.url)
    )
    github.set_default_branch(OWNER, NAME, "main")
    github.set_ref(OWNER, NAME, "main", MAIN, message="Main at its newest\n\nbody")
    github.set_ref(OWNER, NAME, "v1.2.0", RELEASE, message="Release 1.2.0")
    for login, permission in [("alice", "admin"), ("bob", "write"), ("mallory", "read")]:
        github.set_permission(OWNER, NAME, login, permission)
    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    return story


async def answer(story: Story, text: str, *, user: str, channel: str = CHANNEL) -> str:
    """Run `/deploy <text>` and return the first thing said back (ephemeral or public)."""
    private, public = len(story.slack.ephemerals), len(story.slack.messages)
    response = await story.slash(text, user=user, channel=channel)
    assert response.status_code == 200, response.text
    if response.content and response.json().get("text"):
        return response.json()["text"]  # answered in the ack itself

    def new() -> list[dict]:
        boards = [m for m in story.slack.messages[public:] if m.get("blocks")]
        fresh = story.slack.ephemerals[private:] + story.slack.messages[public:]
        return [m for m in fresh if m["channel"] == channel and m not in boards]

    await story.eventually(lambda: bool(new()))
    return "\n".join(m.get("text", "") for m in new())


def private_to(story: Story, user: str) -> list[str]:
    return [m["text"] for m in story.slack.ephemerals if m.get("user") == user]


def opened_view(story: Story, callback_id: str) -> dict:
    views = [v for v in story.slack.views.values() if v.get("callback_id") == callback_id]
    assert views, f"no {callback_id} modal was opened"
    return views[-1]


# --- help and malformed commands: answered in the ack ------------------------------------


@pytest.mark.parametrize("text", ["", "help", "HELP please"])
async def test_help_is_the_ack(story: Story, text: str) -> None:
    response = await story.slash(text, user="U0ALICE")
    body = response.json()
    assert body["response_type"] == "ephemeral" and "/deploy subscribe" in body["text"]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("acme/api to", "needs an environment"),
        ("deploy-it-now", "is not a subcommand"),
        ("approve production", "is not a Slack command"),
        ("lock acme/api", "needs an environment"),
        ("acme/api to stage --dry-rnu", "did you mean `--dry-run`"),
    ],
)
async def test_malformed_commands_say_what_was_wrong_and_the_usage(
    story: Story, text: str, says: str
) -> None:
    body = (await story.slash(text, user="U0ALICE")).json()
    assert body["response_type"] == "ephemeral"
    assert says in body["text"] and "Usage" in body["text"]


# --- who may ---------------------------------------------------------------------------


async def test_not_installed_repository(story: Story) -> None:
    said = await answer(story, "status acme/elsewhere", user="U0ALICE")
    assert "not installed on `acme/elsewhere`" in said
    assert story.slack.messages == []


async def test_unknown_github_login_is_told_to_link(story: Story) -> None:
    said = await answer(story, "acme/api to stage", user="U0STRANGER")
    assert "/deploy link" in said and "does not know your GitHub login" in said
    assert story.deployments("stage") == []


async def test_read_permission_cannot_deploy(story: Story) -> None:
    story.github.set_file(
        OWNER,
        NAME,
        ".github/deploybot.yml",
        pipeline_file(channel=CHANNEL, health_url="http://127.0.0.1:9/h").replace(
            "bob: U0BOB", "bob: U0BOB\n  mallory: U0MALLORY"
        ),
    )
    said = await answer(story, "acme/api to stage", user="U0MALLORY")
    assert "needs write permission" in said and "`read`" in said
    assert story.deployments("stage") == []


async def test_invalid_pipeline_file_refuses_with_line_and_field(story: Story) -> None:
    story.github.set_file(OWNER, NAME, ".github/deploybot.yml", "environments: [{nme: x}]\n")
    said = await answer(story, "acme/api to stage", user="U0ALICE")
    assert "is invalid" in said and "line 1" in said


# --- deploy ----------------------------------------------------------------------------


async def test_deploy_the_default_branch_to_stage(story: Story) -> None:
    said = await answer(story, "acme/api to stage", user="U0BOB")
    assert "<@U0BOB> asked to deploy acme/api@main (a1a1a1a) to `stage`" in said
    await story.settle()
    (stage,) = story.deployments("stage")
    assert stage["sha"] == MAIN and stage["payload"]["requested_by"] == "bob"
    (board,) = [m for m in story.slack.messages if m["channel"] == CHANNEL and m.get("blocks")]
    assert "Main at its newest" in board["text"]
    assert story.github.invalid_requests == []


async def test_deploy_a_tag_then_its_status(story: Story) -> None:
    await answer(story, "acme/api@v1.2.0 stage", user="U0BOB")
    await story.settle()
    (stage,) = story.deployments("stage")
    assert stage["sha"] == RELEASE
    await story.deliver("deployment_status", deployment_status(stage["id"], "in_progress"))
    said = await answer(story, "status acme/api", user="U0BOB")
    assert "acme/api" in said
    (status,) = [m for m in story.slack.ephemerals if m.get("blocks")]
    shown = str(status["blocks"])
    assert "*stage*" in shown and "deploying" in shown and "b2b2b2b" in shown
    assert "*production*" in shown and "not deployed" in shown


async def test_unknown_ref_is_refused(story: Story) -> None:
    said = await answer(story, "acme/api@no-such-branch to stage", user="U0BOB")
    assert "`no-such-branch` is not a branch, tag or commit of acme/api" in said


async def test_unknown_environment_lists_the_real_ones(story: Story) -> None:
    said = await answer(story, "acme/api to qa", user="U0BOB")
    assert "`qa` is not an environment of acme/api" in said and "`stage`, `production`" in said


async def test_dry_run_changes_nothing(story: Story) -> None:
    said = await answer(story, "acme/api to stage --dry-run", user="U0BOB")
    assert "Dry run" in said and "would go to `stage`" in said
    await story.settle()
    assert story.deployments("stage") == []


async def test_queue_waits_behind_a_lock_and_starts_when_it_is_released(story: Story) -> None:
    await answer(story, "lock acme/api stage", user="U0ALICE")
    refused = await answer(story, "acme/api to stage", user="U0BOB")
    assert "locked by alice" in refused and "add `--queue`" in refused
    said = await answer(story, "acme/api to stage --queue", user="U0BOB")
    assert "asked to deploy" in said
    await story.eventually(lambda: "bob queued" in story.thread())
    assert "it waits for the lock of alice" in story.thread()
    await story.tick()
    assert story.deployments("stage") == []
    await answer(story, "unlock acme/api stage", user="U0ALICE")
    await story.tick_until(lambda: len(story.deployments("stage")) == 1)
    assert story.deployments("stage")[0]["payload"]["requested_by"] == "bob"


async def test_force_is_for_the_listed_approvers_and_admins(story: Story) -> None:
    # bob writes and approves production, but `stage` lists nobody: its approvers are admins.
    said = await answer(story, "acme/api to stage --force", user="U0BOB")
    assert "`--force`" in said and "approvers of `stage`" in said
    assert story.deployments("stage") == []
    # Refused before the rules were asked: audited once, by the command.
    async with story.sessions() as session:
        (entry,) = (await session.execute(sa.select(AuditEvent))).scalars().all()
    assert (entry.actor, entry.source, entry.action) == ("U0BOB", "slack", "/deploy deploy")
    assert (entry.repository, entry.environment) == ("acme/api", "stage")
    assert "approvers of `stage`" in entry.detail["refused"]


async def test_a_refusal_by_the_rules_is_audited_once(story: Story) -> None:
    await answer(story, "lock acme/api stage", user="U0ALICE")
    await answer(story, "acme/api to stage", user="U0BOB")
    async with story.sessions() as session:
        entries = (await session.execute(sa.select(AuditEvent))).scalars().all()
    assert [(e.action, e.actor, e.source) for e in entries] == [
        ("lock", "alice", "slack"),
        ("deploy", "bob", "slack"),
    ]
    assert "locked by alice" in entries[1].detail["refused"]


async def test_production_deploy_asks_for_confirmation_first(story: Story) -> None:
    await answer(story, "acme/api to stage", user="U0BOB")
    await story.settle()
    (stage,) = story.deployments("stage")
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))
    await story.tick_until(lambda: "is running" in story.thread() or "succeeded" in story.thread())

    response = await story.slash("acme/api to production", user="U0BOB")
    assert response.status_code == 200
    await story.eventually(
        lambda: any(v.get("callback_id") == modals.CONFIRM for v in story.slack.views.values())
    )
    view = opened_view(story, modals.CONFIRM)
    assert "production" in str(view["blocks"])
    assert "waiting for" not in story.thread()  # nothing happened yet

    await story.submit(view, user="U0BOB")
    await story.eventually(lambda: "waiting for 1 approval" in story.thread())
    # The approval request's buttons confirm too: production.
    await story.eventually(lambda: _button(story, "approve") is not None)
    assert "confirm" in _button(story, "approve") and "confirm" in _button(story, "reject")


def _button(story: Story, action_id: str) -> dict | None:
    for message in reversed(story.slack.messages):
        for block in message.get("blocks") or []:
            for element in block.get("elements", []):
                if element.get("action_id") == action_id:
                    return element
    return None


# --- rollback --------------------------------------------------------------------------


async def _succeed(story: Story, ref: str, user: str = "U0BOB") -> None:
    await answer(story, f"acme/api@{ref} to stage", user=user)
    await story.settle()
    deployment = story.deployments("stage")[0]
    await story.deliver("deployment_status", deployment_status(deployment["id"], "success"))
    await story.tick_until(
        lambda: (
            any(d["sha"] == deployment["sha"] for d in story.deployments("stage"))
            and _status_of(story, "stage") == "success"
        )
    )


def _status_of(story: Story, environment: str) -> str | None:
    for message in reversed(story.slack.messages):
        for block in message.get("blocks") or []:
            text = (block.get("text") or {}).get("text", "")
            if f"*{environment}*" in text:
                return "success" if "deployed" in text else "other"
    return None


async def test_rollback_opens_a_modal_of_earlier_good_commits(story: Story) -> None:
    await _succeed(story, "v1.2.0")
    await _succeed(story, "main")

    await story.slash("rollback acme/api stage", user="U0BOB")
    await story.eventually(
        lambda: any(v.get("callback_id") == modals.ROLLBACK for v in story.slack.views.values())
    )
    view = opened_view(story, modals.ROLLBACK)
    (picker,) = [b for b in view["blocks"] if b.get("block_id") == modals.TARGET_BLOCK]
    assert [o["value"] for o in picker["element"]["options"]] == [RELEASE]

    values = {
        modals.TARGET_BLOCK: {
            modals.TARGET_ACTION: {"type": "radio_buttons", "selected_option": {"value": RELEASE}}
        }
    }
    await story.submit(view, user="U0BOB", values=values)
    await story.eventually(lambda: len(story.deployments("stage")) == 3)
    assert story.deployments("stage")[0]["sha"] == RELEASE
    assert any(
        "rolling `stage` of acme/api back to b2b2b2b" in m.get("text", "")
        for m in story.slack.messages
    )


async def test_rollback_to_a_commit_that_never_succeeded_is_refused(story: Story) -> None:
    await _succeed(story, "v1.2.0")
    await _succeed(story, "main")
    await story.slash("rollback acme/api stage", user="U0BOB")
    await story.eventually(
        lambda: any(v.get("callback_id") == modals.ROLLBACK for v in story.slack.views.values())
    )
    view = opened_view(story, modals.ROLLBACK)
    forged = {modals.TARGET_BLOCK: {modals.TARGET_ACTION: {"selected_option": {"value": "f" * 40}}}}
    await story.submit(view, user="U0BOB", values=forged)
    await story.eventually(
        lambda: any("is not a commit that succeeded" in t for t in private_to(story, "U0BOB"))
    )
    assert len(story.deployments("stage")) == 2


async def test_rollback_with_nothing_deployed(story: Story) -> None:
    said = await answer(story, "rollback acme/api stage", user="U0BOB")
    assert "Nothing has been deployed to `stage` yet" in said


# --- lock and unlock ------------------------------------------------------------------


async def test_lock_blocks_others_until_unlocked(story: Story) -> None:
    said = await answer(story, "lock acme/api stage db migration", user="U0BOB")
    assert "bob locked `stage`" in said and "db migration" in said

    refused = await answer(story, "acme/api to stage", user="U0ALICE")
    assert "locked by bob" in refused and "db migration" in refused
    assert story.deployments("stage") == []

    again = await answer(story, "lock acme/api stage", user="U0ALICE")
    assert "already locked by bob" in again

    said = await answer(story, "unlock acme/api stage", user="U0BOB")
    assert "bob unlocked `stage`" in said
    await answer(story, "acme/api to stage", user="U0ALICE")
    await story.settle()
    assert len(story.deployments("stage")) == 1


async def test_the_holder_may_still_deploy(story: Story) -> None:
    await answer(story, "lock acme/api stage", user="U0BOB")
    said = await answer(story, "acme/api to stage", user="U0BOB")
    assert "asked to deploy" in said


async def test_unlocking_someone_elses_lock_needs_admin_and_a_confirmation(story: Story) -> None:
    await answer(story, "lock acme/api stage", user="U0ALICE")
    refused = await answer(story, "unlock acme/api stage", user="U0BOB")
    assert "Only they or a repository admin" in refused

    await answer(story, "lock acme/api production", user="U0BOB")
    await story.slash("unlock acme/api production", user="U0ALICE")
    await story.eventually(
        lambda: any(v.get("callback_id") == modals.CONFIRM for v in story.slack.views.values())
    )
    view = opened_view(story, modals.CONFIRM)
    assert "locked by bob" in str(view["blocks"])
    async with story.sessions() as session:
        assert await locks.get(session, repository=REPOSITORY, environment="production")
    await story.submit(view, user="U0ALICE")
    await story.eventually(
        lambda: any(
            "alice unlocked `production` (held by bob)" in m.get("text", "")
            for m in story.slack.messages
        )
    )


async def test_unlock_when_not_locked(story: Story) -> None:
    said = await answer(story, "unlock acme/api stage", user="U0BOB")
    assert "`stage` is not locked" in said


# --- subscribe -------------------------------------------------------------------------


async def _without_channel(story: Story) -> None:
    text = pipeline_file(channel=CHANNEL, health_url="http://127.0.0.1:9/h")
    story.github.set_file(
        OWNER, NAME, ".github/deploybot.yml", text.replace(f"slack:\n  channel: {CHANNEL}\n", "")
    )


async def test_subscribe_needs_admin_and_records_who(story: Story) -> None:
    await _without_channel(story)
    refused = await answer(story, "subscribe acme/api", user="U0BOB", channel=OTHER)
    assert "needs admin permission" in refused

    said = await answer(story, "subscribe acme/api", user="U0ALICE", channel=OTHER)
    assert "<@U0ALICE> subscribed this channel to *acme/api*" in said
    async with story.sessions() as session:
        row = await session.get(ChannelSubscription, 1)
    assert (row.channel_id, row.created_by, row.created_by_github) == (OTHER, "U0ALICE", "alice")

    await answer(story, "acme/api to stage", user="U0BOB", channel=OTHER)
    await story.settle()
    boards = [m for m in story.slack.messages if m.get("blocks") and m["channel"] == OTHER]
    assert len(boards) == 1

    said = await answer(story, "unsubscribe acme/api", user="U0ALICE", channel=OTHER)
    assert "unsubscribed this channel" in said
    refused = await answer(story, "unsubscribe acme/api", user="U0ALICE", channel=OTHER)
    assert "No channel is subscribed" in refused


async def test_subscribe_defers_to_the_pipeline_files_channel(story: Story) -> None:
    said = await answer(story, "subscribe acme/api", user="U0ALICE", channel=OTHER)
    assert "`slack.channel`" in said


async def test_deploy_without_any_channel_says_to_subscribe(story: Story) -> None:
    await _without_channel(story)
    said = await answer(story, "acme/api to stage", user="U0BOB")
    assert "/deploy subscribe acme/api" in said


# --- link, and pause with nothing to pause ------------------------------------------


async def test_link_answers_privately_with_a_code(story: Story) -> None:
    said = await answer(story, "link octo-cat", user="U0NEW")
    assert "/deploy link " in said and "octo-cat" in said
    assert story.slack.messages == []  # the code is never said in public
    assert private_to(story, "U0NEW")


@pytest.mark.parametrize("verb", ["pause", "resume"])
async def test_pause_and_resume_say_when_nothing_runs(story: Story, verb: str) -> None:
    said = await answer(story, f"{verb} acme/api stage", user="U0BOB")
    assert "Nothing is being deployed to `stage` right now." in said


# --- buttons whose moment has passed, and the Home tab ---------------------------------


async def _on_stage(story: Story) -> None:
    await answer(story, "acme/api to stage", user="U0BOB")
    await story.settle()
    (stage,) = story.deployments("stage")
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))
    await story.tick_until(lambda: _button(story, "promote") is not None)


async def test_a_stale_click_says_so_and_redraws_the_board(story: Story) -> None:
    await _on_stage(story)
    promote = _button(story, "promote")
    assert promote is not None
    await story.click("promote", promote["value"], "U0BOB")
    await story.eventually(lambda: "waiting for 1 approval" in story.thread())

    await story.click("promote", promote["value"], "U0BOB")  # again, from the same old board
    await story.eventually(lambda: any("busy" in t for t in private_to(story, "U0BOB")))
    async with story.sessions() as session:
        keys = [
            row.idempotency_key
            for row in (await session.execute(sa.select(OutboxEffect))).scalars()
        ]
    assert any(":stale-click:" in key for key in keys)
    assert len(story.deployments("production")) == 0


async def test_the_home_tab_shows_each_repository_and_answers_its_clicks(story: Story) -> None:
    await _on_stage(story)
    await story.open_home("U0BOB")
    await story.eventually(lambda: "U0BOB" in story.slack.home_views)
    home = str(story.slack.home_views["U0BOB"]["blocks"])
    assert "acme/api" in home and "stage" in home and "promote:" in home

    promote = _button(story, "promote")
    assert promote is not None
    await story.click("promote", promote["value"], "U0MALLORY", home=True)
    await story.eventually(lambda: "⚠️" in str(story.slack.home_views.get("U0MALLORY", {})))
    assert "does not know your GitHub login" in str(story.slack.home_views["U0MALLORY"])
    assert story.slack.invalid_calls == []
    # Refused before the rules were asked: the click is in the audit log.
    async with story.sessions() as session:
        clicks = sa.select(AuditEvent).where(AuditEvent.action == "button promote")
        (entry,) = (await session.execute(clicks)).scalars().all()
    assert (entry.actor, entry.source, entry.repository) == ("U0MALLORY", "slack", "acme/api")
    assert "does not know your GitHub login" in entry.detail["refused"]


async def test_a_malformed_command_answered_in_the_ack_is_audited(story: Story) -> None:
    said = await answer(story, "acme/api to", user="U0BOB")
    assert "Usage" in said or "usage" in said
    # The ack goes first; the entry is written right after it.
    for _ in range(100):
        async with story.sessions() as session:
            entries = (await session.execute(sa.select(AuditEvent))).scalars().all()
        if entries:
            break
        await asyncio.sleep(0.02)
    (entry,) = entries
    assert (entry.actor, entry.source, entry.action) == ("U0BOB", "slack", "/deploy")
    assert entry.detail["text"] == "acme/api to"


# --- what was confirmed is what happens ---------------------------------------------------


async def _confirm_view(story: Story, text: str, user: str) -> dict:
    before = {k for k, v in story.slack.views.items() if v.get("callback_id") == modals.CONFIRM}
    await story.slash(text, user=user)
    await story.eventually(
        lambda: any(
            k not in before and v.get("callback_id") == modals.CONFIRM
            for k, v in story.slack.views.items()
        )
    )
    return opened_view(story, modals.CONFIRM)


async def test_a_ref_that_moves_after_the_confirmation_is_not_deployed(story: Story) -> None:
    await answer(story, "lock acme/api stage", user="U0ALICE")  # admin: --force allowed
    view = await _confirm_view(story, "acme/api to production --force", "U0ALICE")
    assert "a1a1a1a" in str(view["blocks"])
    story.github.set_ref(OWNER, NAME, "main", "c3" * 20)  # someone pushed meanwhile
    await story.submit(view, user="U0ALICE")
    await story.eventually(
        lambda: any(
            "moved to c3c3c3c after you confirmed" in t for t in private_to(story, "U0ALICE")
        )
    )
    await story.settle()
    assert story.deployments("production") == []


async def test_an_unlock_confirmed_for_one_holder_does_not_remove_anothers(story: Story) -> None:
    await answer(story, "lock acme/api stage", user="U0BOB")
    view = await _confirm_view(story, "unlock acme/api stage", "U0ALICE")
    await answer(story, "unlock acme/api stage", user="U0BOB")
    await answer(story, "lock acme/api stage mine now", user="U0BOB")  # taken again: new since
    await story.submit(view, user="U0ALICE")
    await story.eventually(
        lambda: any("changed after you confirmed" in t for t in private_to(story, "U0ALICE"))
    )
    async with story.sessions() as session:
        held = await locks.get(session, repository=REPOSITORY, environment="stage")
    assert held is not None and held.reason == "mine now"


# --- rollback targets from GitHub's history ------------------------------------------------


async def _github_only_success(app, environment: str, sha: str) -> None:
    """A deployment someone made outside deploybot (before it was installed, or by hand)."""
    client = app.state.services.github.installation(INSTALLATION_ID)
    deployment = await client.create_deployment(
        owner=OWNER, repo=NAME, ref=sha, environment=environment, payload={}
    )
    await client.create_deployment_status(
        owner=OWNER, repo=NAME, deployment_id=deployment.id, state="success"
    )


async def _rollback_options(story: Story, environment: str) -> list[str]:
    story.slack.reset()
    await story.slash(f"rollback acme/api {environment}", user="U0ALICE")
    await story.eventually(
        lambda: any(
            v.get("callback_id") == modals.ROLLBACK and "Looking up" not in str(v["blocks"])
            for v in story.slack.views.values()
        )
    )
    view = opened_view(story, modals.ROLLBACK)
    pickers = [b for b in view["blocks"] if b.get("block_id") == modals.TARGET_BLOCK]
    return [o["value"] for p in pickers for o in p["element"]["options"]]


async def test_github_history_is_offered_only_where_no_approval_is_skipped(app, story) -> None:
    older = "d4" * 20
    await _github_only_success(app, "stage", older)
    await _github_only_success(app, "production", older)
    await _succeed(story, "main")
    assert await _rollback_options(story, "stage") == [older]

    # production needs an approval: a rollback there only goes back to what passed one here.
    async with story.sessions.begin() as session:
        await session.execute(
            sa.update(RolloutRow)
            .where(RolloutRow.environment == "stage")
            .values(environment="production")
        )
    assert await _rollback_options(story, "production") == []


async def test_the_home_tab_hides_repositories_the_viewer_cannot_read(story: Story) -> None:
    await _on_stage(story)
    await story.open_home("U0STRANGER")  # no GitHub login known
    await story.eventually(lambda: "U0STRANGER" in story.slack.home_views)
    assert "acme/api" not in str(story.slack.home_views["U0STRANGER"]["blocks"])


async def test_the_ack_never_waits_for_github(story: Story) -> None:
    """Slack gives up after 3 s: with GitHub taking 4 s, the ack still comes at once and the
    answer follows once GitHub has answered."""
    story.github.delay("repos/get-collaborator-permission-level", 4)
    started = time.monotonic()
    response = await story.slash("acme/api to stage", user="U0BOB")
    acked = time.monotonic() - started
    assert response.status_code == 200 and not response.content
    assert acked < 3, f"the ack took {acked:.1f} s"
    await story.eventually(
        lambda: any("asked to deploy" in m.get("text", "") for m in story.slack.messages),
        seconds=15,
    )
