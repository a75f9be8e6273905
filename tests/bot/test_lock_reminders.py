"""Lock reminders through the app: a lock taken with `/lock` on a PR is reminded of in the
repository's channel an hour before it expires, once however many ticks (and announced
once when it has expired); Slack mentions only the holder, the rest of the text is inert.
Time moves through the scheduler's clock (in process, GitHub and Slack emulators)."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from bot.pipeline.locks import Lock, notices
from bot.pipeline.models import Person
from storage import locks, outbox
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
REPO = f"{OWNER}/{NAME}"


@pytest.fixture
async def story(app, client, github, slack) -> Story:

    github.set_file(
        OWNER,
        NAME,
        ".github/deploybot.yml",
        pipeline_file(channel=CHANNEL, health_url="http://127.0.0.1:9/h"),
    )
    github.set_permission(OWNER, NAME, "alice", "write")
    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    pr = pull_request("opened", number=9, sha=HEAD, title="Locks", author="alice")
    github.respond("pulls/get", body=pr["pull_request"])
    await story.deliver("pull_request", pr)
    return story


def channel_messages(story: Story, start: str) -> list[str]:
    """Top-level messages in the channel (not thread replies) that start with `start`."""
    return [
        m["text"]
        for m in story.slack.messages
        if m["channel"] == CHANNEL and "thread_ts" not in m and m["text"].startswith(start)
    ]


async def at(story: Story, app, moment: datetime, *, ticks: int = 1) -> None:
    app.state.services.scheduler.clock = lambda: moment
    for _ in range(ticks):
        await story.tick()
        await story.settle()


async def expiry_of(story: Story, environment: str) -> datetime:
    async with story.sessions() as session:
        lock = await locks.get(session, repository=REPO, environment=environment)
    assert lock is not None and lock.expires_at is not None
    return lock.expires_at


async def test_the_holder_is_reminded_once_and_the_expiry_announced_once(story, app) -> None:
    await story.deliver(
        "issue_comment", comment("/lock stage load test", number=9, login="alice", comment_id=1)
    )
    expires = await expiry_of(story, "stage")

    await at(story, app, expires - timedelta(hours=2), ticks=2)
    assert channel_messages(story, "⏰") == []

    await at(story, app, expires - timedelta(minutes=30), ticks=3)
    await at(story, app, expires - timedelta(minutes=5), ticks=2)
    assert channel_messages(story, "⏰") == [
        f"⏰ <@U0ALICE> your lock on `stage` of {REPO} (load test) expires at "
        f"{expires:%H:%M} UTC; `/deploy lock {REPO} stage` renews it."
    ]

    await at(story, app, expires + timedelta(minutes=1), ticks=3)
    assert channel_messages(story, "🔓 the lock") == [
        f"🔓 the lock on `stage` of {REPO} held by alice expired; deploys may go there again."
    ]
    assert len(channel_messages(story, "⏰")) == 1


async def test_the_reminder_mentions_the_holder_and_nothing_else(story, app) -> None:
    now = datetime.now().astimezone()
    lock = Lock(
        "production",
        Person(github="alice", slack="U0ALICE"),
        since=now,
        expires_at=now + timedelta(minutes=40),
        reason="<!channel> & <@U0BOB>",
    )
    async with story.sessions.begin() as session:
        assert await locks.put(session, repository=REPO, lock=lock, now=now)

    await at(story, app, now, ticks=2)
    [text] = channel_messages(story, "⏰")
    assert text.startswith(
        "⏰ <@U0ALICE> your lock on `production` of "
        f"{REPO} (&lt;!channel&gt; &amp; &lt;@U0BOB&gt;) expires at"
    )


async def test_a_repository_without_a_channel_is_skipped_not_retried(story, app) -> None:
    now = datetime.now().astimezone()
    lock = Lock("stage", Person(github="dave"), since=now, expires_at=now + timedelta(minutes=9))
    async with story.sessions.begin() as session:
        assert await locks.put(session, repository="acme/other", lock=lock, now=now)

    await at(story, app, now, ticks=2)  # settling asserts nothing was dead-lettered
    assert channel_messages(story, "⏰") == []
    async with story.sessions() as session:
        sent = await outbox.sent_result(
            session, idempotency_key=notices([("acme/other", lock)], now)[0].key
        )
    assert sent == {"skipped": "no channel"}
