"""Dead letters: listed and retried with `deploybot inbox|outbox dead|retry`, counted on
`/metrics`, and picked up again by a running app, on both databases."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from typer.testing import CliRunner

from bot.cli import cli
from bot.pipeline.effects import CreateDeployment, ThreadReply
from storage import db, inbox, outbox, releases
from storage.models import InboxItem, OutboxEffect, utcnow
from storage.queue import WorkQueue
from tests.story import (
    CHANNEL,
    NAME,
    OWNER,
    REPOSITORY,
    HealthEndpoint,
    Story,
    installation_created,
    pipeline_file,
    pull_request,
)

runner = CliRunner()
SECRET_IN_PAYLOAD = "xoxb-do-not-print-me"
Sessions = async_sessionmaker[AsyncSession]


def in_database(url: str, work: Callable[[Sessions], Awaitable[Any]]) -> Any:
    """Run `work` against the database at `url` from synchronous test code."""

    async def run() -> Any:
        engine = db.create_engine(url)
        try:
            return await work(db.session_factory(engine))
        finally:
            await engine.dispose()

    return asyncio.run(run())


async def fail_until_dead(
    sessions: Sessions, queue: WorkQueue[Any], *, tries: int, error: str
) -> list[int]:
    """Claim every due row and fail it, `tries` times: the last failure dead-letters it."""
    owner = "test-worker"
    dead: list[int] = []
    for attempt in range(1, tries + 1):
        now = utcnow()
        async with sessions.begin() as session:
            items = await queue.claim_due(
                session, owner=owner, now=now, lease=timedelta(minutes=1), limit=100
            )
            for item in items:
                last = attempt == tries
                await queue.fail(
                    session,
                    item=item,
                    owner=owner,
                    error=error,
                    now=now,
                    retry_at=None if last else now,
                )
                if last:
                    dead.append(item.id)
    return dead


async def rows(sessions: Sessions, table: type[Any]) -> dict[int, Any]:
    async with sessions() as session:
        result = await session.execute(sa.select(table))
        return {row.id: row for row in result.scalars()}


def invoke(*args: str) -> Any:
    return runner.invoke(cli, list(args))


# --- the inbox -------------------------------------------------------------------------


def test_inbox_dead_letters_are_listed_and_retried(database_url: str, monkeypatch) -> None:
    async def setup(sessions: Sessions) -> dict[str, int]:
        async with sessions.begin() as session:
            for delivery_id, event, action in [
                ("d-opened", "pull_request", "opened"),
                ("d-comment", "issue_comment", "created"),
            ]:
                await inbox.record_delivery(
                    session,
                    source="github",
                    delivery_id=delivery_id,
                    event=event,
                    action=action,
                    body=json.dumps({"token": SECRET_IN_PAYLOAD}),
                )
        await fail_until_dead(
            sessions, inbox.QUEUE, tries=5, error="GitHubError: 502 Bad Gateway\n  from the API"
        )
        async with sessions.begin() as session:  # one more, handled: not a dead letter
            await inbox.record_delivery(
                session, source="github", delivery_id="d-push", event="push", action=None, body="{}"
            )
            (pushed,) = await inbox.claim_due(
                session, owner="w", now=utcnow(), lease=timedelta(minutes=1), limit=10
            )
            await inbox.finish(
                session, item_id=pushed.id, owner="w", status=inbox.InboxStatus.DONE, now=utcnow()
            )
        found = await rows(sessions, InboxItem)
        return {row.delivery_id: row_id for row_id, row in found.items()}

    ids = in_database(database_url, setup)
    monkeypatch.setenv("DATABASE_URL", database_url)

    listed = invoke("inbox", "dead")
    assert listed.exit_code == 0, listed.output
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [line[:4] for line in lines] == [
        [str(ids["d-comment"]), "issue_comment.created", "d-comment", "attempts=5"],
        [str(ids["d-opened"]), "pull_request.opened", "d-opened", "attempts=5"],
    ]
    assert lines[0][5] == "GitHubError: 502 Bad Gateway from the API"  # one line
    assert lines[0][4].startswith(str(utcnow().year))  # when it was given up on
    assert SECRET_IN_PAYLOAD not in listed.output

    as_json = invoke("inbox", "dead", "--json")
    assert as_json.exit_code == 0, as_json.output
    entries = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert [e["id"] for e in entries] == [ids["d-comment"], ids["d-opened"]]
    assert entries[1] | {"dead_at": None} == {
        "queue": "inbox",
        "id": ids["d-opened"],
        "kind": "pull_request.opened",
        "key": "d-opened",
        "source": "github",
        "attempts": 5,
        "dead_at": None,
        "error": "GitHubError: 502 Bad Gateway\n  from the API",
    }
    assert entries[1]["dead_at"] is not None
    assert SECRET_IN_PAYLOAD not in as_json.output

    retried = invoke("inbox", "retry", str(ids["d-opened"]), str(ids["d-push"]), "99999")
    assert retried.exit_code == 1
    assert retried.stdout == f"retried {ids['d-opened']}\tpull_request.opened\td-opened\n"
    assert f"{ids['d-push']}: done, not a dead letter" in retried.stderr
    assert "99999: no such inbox item" in retried.stderr

    again = invoke("inbox", "retry", str(ids["d-opened"]))  # now pending: not a dead letter
    assert again.exit_code == 1 and "pending, not a dead letter" in again.stderr

    every = invoke("inbox", "retry", "--all")
    assert every.exit_code == 0, every.output
    assert every.stdout == f"retried {ids['d-comment']}\tissue_comment.created\td-comment\n"
    assert invoke("inbox", "dead").stdout == "inbox: no dead letters\n"
    assert invoke("inbox", "retry", "--all").stdout == "inbox: no dead letters\n"

    after = in_database(database_url, lambda sessions: rows(sessions, InboxItem))
    for delivery in ("d-opened", "d-comment"):
        row = after[ids[delivery]]
        assert (row.status, row.attempts) == ("pending", 0)
        assert row.next_attempt_at <= utcnow()  # due at once
        assert row.last_error.startswith("GitHubError")  # kept until it is handled


def test_retry_usage_errors_exit_2(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'x.db'}")
    for args in (["inbox", "retry"], ["outbox", "retry", "1", "--all"], ["inbox", "retry", "x"]):
        result = invoke(*args)
        assert result.exit_code == 2, (args, result.output)
    assert "ids or --all" in invoke("outbox", "retry").stderr


# --- the outbox ------------------------------------------------------------------------


def test_outbox_dead_letters_are_listed_and_retried_but_not_deployments(
    database_url: str, monkeypatch
) -> None:
    async def setup(sessions: Sessions) -> dict[str, int]:
        async with sessions.begin() as session:
            await releases.enqueue(session, ThreadReply(1, "deployed", SECRET_IN_PAYLOAD))
            await releases.enqueue(session, ThreadReply(2, "deployed", SECRET_IN_PAYLOAD))
            await releases.enqueue(
                session,
                CreateDeployment(
                    rollout_id=3, repository=REPOSITORY, environment="stage", commit_sha="a" * 40
                ),
            )
        await fail_until_dead(sessions, outbox.QUEUE, tries=2, error="SlackApiError: " + "x" * 500)
        async with sessions.begin() as session:  # written later: still pending
            await releases.enqueue(session, ThreadReply(4, "deployed", "later"))
        found = await rows(sessions, OutboxEffect)
        return {row.idempotency_key: row_id for row_id, row in found.items()}

    ids = in_database(database_url, setup)
    reply_1, reply_2 = ids["reply:1:deployed"], ids["reply:2:deployed"]
    deployment, pending = ids["deployment:3:deploy"], ids["reply:4:deployed"]
    monkeypatch.setenv("DATABASE_URL", database_url)

    listed = invoke("outbox", "dead")
    assert listed.exit_code == 0, listed.output
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert [line[:4] for line in lines] == [
        [str(deployment), "CreateDeployment", "deployment:3:deploy", "attempts=2"],
        [str(reply_2), "ThreadReply", "reply:2:deployed", "attempts=2"],
        [str(reply_1), "ThreadReply", "reply:1:deployed", "attempts=2"],
    ]
    assert len(lines[0][5]) == 200 and lines[0][5].endswith("…")
    assert SECRET_IN_PAYLOAD not in listed.output

    limited = invoke("outbox", "dead", "--json", "--limit", "1")
    (entry,) = [json.loads(line) for line in limited.stdout.splitlines()]
    assert (entry["kind"], entry["key"]) == ("CreateDeployment", "deployment:3:deploy")
    assert entry["error"] == "SlackApiError: " + "x" * 500
    assert "2 more not shown" in limited.stderr

    one = invoke("outbox", "retry", str(reply_1), str(pending), str(deployment))
    assert one.exit_code == 1
    assert one.stdout == f"retried {reply_1}\tThreadReply\treply:1:deployed\n"
    assert f"{pending}: pending, not a dead letter" in one.stderr
    assert f"{deployment}: not retried: its rollout was failed" in one.stderr

    every = invoke("outbox", "retry", "--all")
    # The deployment stays dead by design: said, but not a failure of `--all`.
    assert every.exit_code == 0
    assert every.stdout == f"retried {reply_2}\tThreadReply\treply:2:deployed\n"
    assert f"{deployment}: left dead: its rollout was failed" in every.stderr

    after = in_database(database_url, lambda sessions: rows(sessions, OutboxEffect))
    assert {row_id: row.status for row_id, row in after.items()} == {
        reply_1: "pending",
        reply_2: "pending",
        deployment: "dead",
        pending: "pending",
    }


# --- a running app ---------------------------------------------------------------------


@pytest.fixture
def health():
    with HealthEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def story(app, client, github, slack, health) -> Story:
    github.set_file(
        OWNER, NAME, ".github/deploybot.yml", pipeline_file(channel=CHANNEL, health_url=health.url)
    )
    return Story.in_process(app, client, github, slack)


async def dead_letter_gauges(story: Story) -> dict[str, float]:
    text = (await story.client.get("/metrics")).text
    prefix = "deploybot_queue_dead_letters{queue="
    return {
        line[len(prefix) + 1 : line.index('"}')]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(prefix)
    }


async def eventually(predicate: Callable[[], Awaitable[bool]], seconds: float = 10) -> None:
    """Wait without waking any worker: what is retried must be found by their polling."""
    deadline = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < deadline, "it did not happen in time"
        await asyncio.sleep(0.05)


async def test_a_running_app_shows_dead_letters_and_picks_up_retried_ones(
    story: Story, database_url: str, monkeypatch
) -> None:
    sessions = story.sessions
    await story.deliver("installation", installation_created())
    assert await dead_letter_gauges(story) == {"inbox": 0.0, "outbox": 0.0}

    # A pull request's delivery given up on (GitHub was down through every try). It is
    # stored and claimed in one transaction, so the app's own worker never sees it pending.
    payload = pull_request("opened", number=7, sha="c0ffee" + "0" * 34, title="Pay", author="al")
    story.github.respond("pulls/get", body=payload["pull_request"])
    async with sessions.begin() as session:
        await inbox.record_delivery(
            session,
            source="github",
            delivery_id="lost-7",
            event="pull_request",
            action="opened",
            body=json.dumps(payload),
        )
        (item,) = await inbox.claim_due(
            session, owner="crashed", now=utcnow(), lease=timedelta(minutes=5), limit=10
        )
        await inbox.fail(
            session,
            item=item,
            owner="crashed",
            error="GitHubError: 502",
            now=utcnow(),
            retry_at=None,
        )
    assert await dead_letter_gauges(story) == {"inbox": 1.0, "outbox": 0.0}
    assert story.slack.messages == []

    monkeypatch.setenv("DATABASE_URL", database_url)  # the app's own database
    listed = await asyncio.to_thread(invoke, "inbox", "dead")
    assert listed.stdout.startswith(f"{item.id}\tpull_request.opened\tlost-7\tattempts=1\t")
    retried = await asyncio.to_thread(invoke, "inbox", "retry", str(item.id))
    assert retried.exit_code == 0, retried.output

    async def thread_opened() -> bool:
        return any(m["channel"] == CHANNEL for m in story.slack.messages)

    await eventually(thread_opened)
    await story.settle()
    async with sessions() as session:
        release = await releases.release_for_pr(session, repository=REPOSITORY, pr_number=7)
    assert release is not None and release.thread_ts is not None

    # A reply Slack refused for good is dead-lettered by the app's dispatcher at once.
    story.slack.fail("chat.postMessage", error="not_in_channel")
    async with sessions.begin() as session:
        await releases.enqueue(session, ThreadReply(release.id, "retried", "Sent on retry"))

    async def given_up() -> bool:
        async with sessions() as session:
            return await outbox.QUEUE.dead_count(session) == 1

    await eventually(given_up)
    assert await dead_letter_gauges(story) == {"inbox": 0.0, "outbox": 1.0}
    assert "not_in_channel" in (await asyncio.to_thread(invoke, "outbox", "dead")).stdout

    every = await asyncio.to_thread(invoke, "outbox", "retry", "--all")
    assert every.exit_code == 0, every.output

    async def replied() -> bool:
        thread = story.slack.thread(release.thread_ts, CHANNEL)
        return any("Sent on retry" in m.get("text", "") for m in thread)

    await eventually(replied)
    await story.settle()
    assert await dead_letter_gauges(story) == {"inbox": 0.0, "outbox": 0.0}
