"""deploybot as a GitHub Actions deployment protection rule (issue 5, item 8), through the
real app in process: signed deliveries, the GitHub and Slack emulators over HTTP, both
databases.

No recorded `deployment_protection_rule` delivery is public (the webhook corpus has only its
schema), so `protection_rule` builds each payload from
`payload-schemas/api.github.com/deployment_protection_rule/requested.schema.json`: every
field the schema requires, down its `$ref`s, then the values a test needs, and checks the
result against the schema before delivering it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from jsonschema import Draft7Validator
from referencing import Registry
from referencing.jsonschema import DRAFT7

from storage import inbox, outbox, releases
from tests.conftest import CORPORA
from tests.story import (
    CHANNEL,
    INSTALLATION_ID,
    NAME,
    OWNER,
    REPOSITORY,
    REPOSITORY_ID,
    Story,
    comment,
    deployment_status,
    installation_created,
    pull_request,
)

HEAD = "9a7e00" + "1" * 34
MAIN = "a11a00" + "2" * 34
REVIEW = "actions/review-custom-gates-for-run"

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

# --- payloads built from the schema ----------------------------------------------------

SCHEMAS = CORPORA / "github-webhooks" / "payload-schemas" / "api.github.com"
REQUESTED = json.loads(
    (SCHEMAS / "deployment_protection_rule" / "requested.schema.json").read_text()
)
REGISTRY = Registry().with_resources(
    (schema["$id"], DRAFT7.create_resource(schema))
    for schema in (json.loads(p.read_text()) for p in SCHEMAS.rglob("*.schema.json"))
    if "$id" in schema
)


def _least(schema: dict[str, Any], resolver: Any) -> Any:
    """The smallest instance of `schema`: every required property, nulls where allowed."""
    if "$ref" in schema:
        found = resolver.lookup(schema["$ref"])
        return _least(found.contents, found.resolver)
    for key in ("oneOf", "anyOf"):
        if key in schema:
            options = schema[key]
            if any(option.get("type") == "null" for option in options):
                return None
            return _least(options[0], resolver)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(_least(part, resolver) or {})
        return merged
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = "null" if "null" in kind else kind[0]
    if kind == "object":
        properties = schema.get("properties", {})
        return {
            name: _least(properties.get(name, {}), resolver) for name in schema.get("required", [])
        }
    if kind == "string":
        formats = {"uri": "https://example.invalid/", "date-time": "2026-11-23T12:00:00Z"}
        return formats.get(schema.get("format"), "")
    return {"array": [], "integer": 1, "number": 1, "boolean": False}.get(kind)


def _common(name: str) -> Any:
    resolver = REGISTRY.resolver(REQUESTED["$id"])
    return _least({"$ref": f"common/{name}.schema.json"}, resolver)


def _user(login: str) -> dict[str, Any]:
    return {**_common("user"), "login": login, "type": "User"}


def protection_rule(
    *,
    environment: str,
    deployment_id: int,
    run_id: int,
    sha: str = HEAD,
    sender: str = "alice",
    pr: int | None = 9,
) -> dict[str, Any]:
    """A `deployment_protection_rule` `requested` delivery, valid under its schema."""
    payload = _least(REQUESTED, REGISTRY.resolver(REQUESTED["$id"]))
    base = f"https://api.github.com/repos/{REPOSITORY}"
    payload.update(
        environment=environment,
        event="push" if pr is None else "pull_request",
        deployment_callback_url=f"{base}/actions/runs/{run_id}/deployment_protection_rule",
        sender=_user(sender),
        installation={"id": INSTALLATION_ID, "node_id": "MDIz"},
    )
    payload["repository"].update(
        id=REPOSITORY_ID, name=NAME, full_name=REPOSITORY, default_branch="main"
    )
    payload["repository"]["owner"].update(login=OWNER, type="Organization")
    payload["deployment"] = {
        **_common("deployment"),
        "id": deployment_id,
        "url": f"{base}/deployments/{deployment_id}",
        "sha": sha,
        "ref": "main" if pr is None else f"feature-{pr}",
        "task": "deploy",
        "environment": environment,
        "original_environment": environment,
        "creator": {**_user("github-actions[bot]"), "type": "Bot"},
    }
    payload["pull_requests"] = []
    if pr is not None:
        pull = _common("pull-request")
        pull.update(number=pr, state="open", title="Gated by deploybot", user=_user(sender))
        pull["html_url"] = f"https://github.com/{REPOSITORY}/pull/{pr}"
        pull["head"].update(sha=sha, ref=f"feature-{pr}")
        payload["pull_requests"] = [pull]
    problems = [
        e.message for e in Draft7Validator(REQUESTED, registry=REGISTRY).iter_errors(payload)
    ]
    assert problems == [], problems
    return payload


def test_the_built_payload_is_what_the_schema_describes() -> None:
    payload = protection_rule(environment="production", deployment_id=5, run_id=6)
    assert set(REQUESTED["required"]) <= set(payload)
    assert payload["deployment"]["creator"]["type"] == "Bot"
    with pytest.raises(AssertionError):  # the check bites: an action the schema does not know
        bad = dict(payload, action="approved")
        assert not list(Draft7Validator(REQUESTED, registry=REGISTRY).iter_errors(bad))


# --- the story -------------------------------------------------------------------------


@pytest.fixture
async def story(app, client, github, slack) -> Story:
    github.set_file(OWNER, NAME, ".github/deploybot.yml", PIPELINE)
    github.set_default_branch(OWNER, NAME, "main")
    github.set_ref(OWNER, NAME, "main", MAIN, message="Ship the gate\n\nbody", author="carol")
    for login in ("alice", "bob"):
        github.set_permission(OWNER, NAME, login, "write")
    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    pr = pull_request("opened", number=9, sha=HEAD, title="Gated by deploybot", author="alice")
    story.github.respond("pulls/get", body=pr["pull_request"])
    await story.deliver("pull_request", pr)
    return story


def answers(story: Story) -> list[dict[str, Any]]:
    """What deploybot told GitHub about waiting runs, with the run each answer was for."""
    return [
        {**call.json, "run": int(call.path.split("/")[6])}
        for call in story.github.calls_to(REVIEW)
        if call.status == 204
    ]


async def status_of(story: Story, deployment_id: int) -> str | None:
    async with story.sessions() as session:
        found = await releases.rollout_for_deployment(session, deployment_id=deployment_id)
    return found[1].status.value if found else None


async def gate(
    story: Story, environment: str, deployment_id: int, run_id: int, dead: bool = False, **kw
) -> None:
    payload = protection_rule(
        environment=environment, deployment_id=deployment_id, run_id=run_id, **kw
    )
    await story.deliver("deployment_protection_rule", payload, allow_dead=dead)


async def through_stage(story: Story) -> None:
    """Actions deploys the PR's head to stage (no approvals): approved at once, followed."""
    await gate(story, "stage", deployment_id=7001, run_id=801)
    assert answers(story) == [
        {
            "environment_name": "stage",
            "state": "approved",
            "comment": "Approved by deploybot for alice: `stage` needs no approval.",
            "run": 801,
        }
    ]
    assert story.deployments("stage") == []  # the run deploys, deploybot creates nothing
    await story.deliver("deployment_status", deployment_status(7001, "in_progress"))
    await story.deliver("deployment_status", deployment_status(7001, "success"))
    assert await status_of(story, 7001) == "success"
    assert "`stage` is running 9a7e001" in story.thread()


async def test_an_approver_lets_the_waiting_run_deploy(story: Story) -> None:
    await through_stage(story)
    await gate(story, "production", deployment_id=7002, run_id=802)
    assert len(answers(story)) == 1  # production's run waits
    assert await status_of(story, 7002) == "awaiting_approval"
    assert (
        "GitHub Actions run 802 asks to deploy 9a7e001 to `production` for alice: waiting for "
        "1 approval." in story.thread()
    )

    request = story.button_value("approve")
    await story.click("approve", request, "U0ALICE")  # the run was hers
    await story.eventually(lambda: len(story.slack.ephemerals) == 1)
    assert "You asked for this deploy" in story.slack.ephemerals[0]["text"]
    assert len(answers(story)) == 1 and await status_of(story, 7002) == "awaiting_approval"

    await story.click("approve", request, "U0BOB")
    await story.eventually(lambda: len(answers(story)) == 2)
    assert answers(story)[-1] == {
        "environment_name": "production",
        "state": "approved",
        "comment": "Approved by bob in deploybot.",
        "run": 802,
    }
    assert story.deployments("production") == []
    assert await status_of(story, 7002) == "pending"

    # The run deploys and reports on its own deployment: the rollout follows it.
    await story.deliver("deployment_status", deployment_status(7002, "in_progress"))
    assert await status_of(story, 7002) == "in_progress"
    await story.deliver("deployment_status", deployment_status(7002, "success"))
    assert await status_of(story, 7002) == "success"
    assert "`production` is running 9a7e001" in story.thread()
    assert story.github.invalid_requests == [] and story.slack.invalid_calls == []


async def test_a_rejection_rejects_the_run(story: Story) -> None:
    await through_stage(story)
    await gate(story, "production", deployment_id=7002, run_id=802)
    await story.click("reject", story.button_value("reject"), "U0BOB")
    await story.eventually(lambda: len(answers(story)) == 2)
    answer = answers(story)[-1]
    assert (answer["environment_name"], answer["state"], answer["run"]) == (
        "production",
        "rejected",
        802,
    )
    assert "bob" in answer["comment"]
    assert await status_of(story, 7002) == "rejected"
    # The environment is free again: the next run is asked about, not refused as busy.
    await gate(story, "production", deployment_id=7003, run_id=803)
    assert await status_of(story, 7003) == "awaiting_approval"


async def test_a_locked_environment_rejects_the_run_with_the_reason(story: Story) -> None:
    await through_stage(story)
    await story.deliver(
        "issue_comment",
        comment("/lock production db migration", number=9, login="bob", comment_id=1),
    )
    await gate(story, "production", deployment_id=7002, run_id=802)
    answer = answers(story)[-1]
    assert (answer["state"], answer["run"]) == ("rejected", 802)
    assert answer["comment"].startswith("`production` is locked by bob (db migration).")
    assert await status_of(story, 7002) is None  # nothing holds the environment
    assert "deploybot rejected it: `production` is locked by bob (db migration)" in story.thread()


async def test_outside_the_window_rejects_the_run(story: Story) -> None:
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%a").lower()
    windowed = PIPELINE.replace(
        "    approvals: 1\n", f"    approvals: 1\n    window: {{days: {tomorrow}, timezone: UTC}}\n"
    )
    story.github.set_file(OWNER, NAME, ".github/deploybot.yml", windowed)
    await through_stage(story)
    await gate(story, "production", deployment_id=7002, run_id=802)
    answer = answers(story)[-1]
    assert answer["state"] == "rejected"
    assert "`production` is outside its deploy window" in answer["comment"]
    assert "waiting for 1 approval" not in story.thread()


async def test_an_environment_not_in_the_pipeline_file_is_rejected(story: Story) -> None:
    await gate(story, "qa", deployment_id=7009, run_id=809)
    (answer,) = answers(story)
    assert answer["state"] == "rejected" and answer["environment_name"] == "qa"
    assert "`qa` is not an environment in deploybot's pipeline file" in answer["comment"]


async def test_ordering_holds_a_run_that_skips_stage(story: Story) -> None:
    await gate(story, "production", deployment_id=7002, run_id=802)
    (answer,) = answers(story)
    assert answer["state"] == "rejected"
    assert "`production` needs `stage` to succeed for 9a7e001 first" in answer["comment"]


async def test_a_run_without_a_pull_request_gets_the_commits_thread(story: Story) -> None:
    await gate(story, "stage", deployment_id=7010, run_id=810, sha=MAIN, pr=None, sender="bob")
    (answer,) = answers(story)
    assert (answer["state"], answer["run"]) == ("approved", 810)
    async with story.sessions() as session:
        found = await releases.rollout_for_deployment(session, deployment_id=7010)
        assert found is not None
        release = await releases.get_release(session, release_id=found[0].release_id)
    assert release is not None and release.pr_number is None
    assert (release.commit_sha, release.title, release.head_ref) == (MAIN, "Ship the gate", "main")
    assert "run 810 asks to deploy a11a002 to `stage` for bob" in story.thread()


async def test_asking_again_about_a_deployment_changes_nothing(story: Story) -> None:
    await gate(story, "stage", deployment_id=7001, run_id=801)
    await gate(story, "stage", deployment_id=7001, run_id=801)  # a new delivery, same question
    assert len(answers(story)) == 1
    assert await status_of(story, 7001) == "pending"


async def test_a_run_github_no_longer_waits_on_is_given_up_on(story: Story) -> None:
    story.github.fail(REVIEW, status=422, body={"message": "No pending deployment requests"})
    await gate(story, "stage", deployment_id=7001, run_id=801, dead=True)
    assert len(story.github.calls_to(REVIEW)) == 1  # not retried
    async with story.sessions() as session:
        (dead,) = await outbox.dead_letters(session)
    assert dead.kind == "ReviewProtectionRule"
    assert "GitHub refused the answer to run 801" in (dead.last_error or "")


async def test_a_payload_without_its_run_is_kept_not_answered(story: Story) -> None:
    payload = protection_rule(environment="stage", deployment_id=7001, run_id=801)
    del payload["deployment_callback_url"]
    await story.deliver("deployment_protection_rule", payload, allow_dead=True)
    async with story.sessions() as session:
        (dead,) = await inbox.dead_letters(session)
    assert dead.event == "deployment_protection_rule"
    assert "deployment_callback_url" in (dead.last_error or "")
    assert answers(story) == [] and await status_of(story, 7001) is None


async def test_other_actions_are_ignored(story: Story) -> None:
    payload = protection_rule(environment="stage", deployment_id=7001, run_id=801)
    payload["action"] = "completed"  # none exists today; one GitHub adds must not act
    await story.deliver("deployment_protection_rule", payload)
    assert story.github.calls_to(REVIEW) == []
