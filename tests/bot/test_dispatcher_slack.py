"""Sending to Slack from the outbox: thread order, board coalescing and rate limits, with
real databases, the Slack emulator over HTTP and the bot's own Web API client."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import sqlalchemy as sa
from slack_sdk.web.async_client import AsyncWebClient

from bot.dispatcher import OutboxDispatcher, retry_after
from bot.pipeline.effects import (
    ApprovalDecided,
    ApprovalRequest,
    PullRequestComment,
    RefreshBoard,
    ThreadReply,
)
from bot.slack.listeners import web_client
from integrations.emulators.slack import SlackEmulator
from integrations.github_app import GitHubApp
from storage import db, inbox, outbox, releases
from storage.models import OutboxEffect, OutboxStatus, utcnow
from storage.models import Release as ReleaseRow
from tests.conftest import BOT_TOKEN, WEBHOOK_SECRET
from tests.dispatching import drain, effect_row
from tests.helpers import compact, github_headers
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


class Clock:
    """Time that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def sessions(engine):
    return db.session_factory(engine)


@pytest.fixture
def web(make_settings, slack: SlackEmulator) -> AsyncWebClient:
    """The bot's Web API client as the app builds it (its 429 retry handler included)."""
    return web_client(make_settings(SLACK_API_URL=slack.url))


@pytest.fixture
def github_app(app_private_key_pem: str) -> GitHubApp:
    return GitHubApp(app_id=4242, private_key=app_private_key_pem, base_url="http://127.0.0.1:9")


@pytest.fixture
def make_dispatcher(sessions, web, github_app):
    def build(**options: Any) -> OutboxDispatcher:
        options.setdefault("sessions", sessions)
        options.setdefault("slack", web)
        return OutboxDispatcher(github=github_app, **options)

    return build


async def new_thread(sessions, number: int, *, title: str = "Change") -> int:
    """A pull request's release whose thread is already open."""
    async with sessions.begin() as session:
        release, _ = await releases.upsert_pull_request(
            session,
            repository=REPOSITORY,
            pr_number=number,
            head_sha=f"{number:040x}",
            title=title,
            author="alice",
            head_ref=f"feature-{number}",
            pr_url=None,
            pr_state="open",
        )
        assert release.id is not None
        await releases.set_thread(
            session, release_id=release.id, channel=CHANNEL, ts=f"1600000000.{number:06d}"
        )
        return release.id


async def say(sessions, release_id: int, *texts: str) -> None:
    async with sessions.begin() as session:
        for text in texts:
            await releases.enqueue(session, ThreadReply(release_id, text, text))


async def thread_ts(sessions, release_id: int) -> str:
    async with sessions() as session:
        release = await releases.get_release(session, release_id=release_id)
    assert release is not None and release.thread_ts is not None
    return release.thread_ts


async def replies(slack: SlackEmulator, sessions, release_id: int) -> list[str]:
    ts = await thread_ts(sessions, release_id)
    return [m["text"] for m in slack.thread(ts, CHANNEL) if m["ts"] != ts]


# --- a sender that died after Slack took its message --------------------------------------


async def open_thread(sessions, web: AsyncWebClient, number: int) -> tuple[int, str]:
    """A pull request's release whose thread's parent really is in the channel."""
    parent = await web.chat_postMessage(channel=CHANNEL, text=f"board {number}")
    async with sessions.begin() as session:
        release, _ = await releases.upsert_pull_request(
            session,
            repository=REPOSITORY,
            pr_number=number,
            head_sha=f"{number:040x}",
            title="Change",
            author="alice",
            head_ref=f"feature-{number}",
            pr_url=None,
            pr_state="open",
        )
        assert release.id is not None
        await releases.set_thread(
            session, release_id=release.id, channel=CHANNEL, ts=str(parent["ts"])
        )
        return release.id, str(parent["ts"])


async def test_a_reply_its_dead_sender_got_into_slack_is_not_posted_again(
    sessions, slack: SlackEmulator, web: AsyncWebClient, make_dispatcher
) -> None:
    release, thread = await open_thread(sessions, web, 1)
    await say(sessions, release, "a1", "a2")
    clock = Clock()
    # A dispatcher claims a1, Slack takes the post, and the process dies before it can
    # mark a1 sent: its lease is all that is left of it.
    async with sessions.begin() as session:
        (claimed,) = await outbox.QUEUE.claim_due(
            session, owner="died", now=clock(), lease=timedelta(seconds=30), limit=1
        )
    assert claimed.idempotency_key == "reply:1:a1" and not claimed.interrupted
    taken = await web.chat_postMessage(
        channel=CHANNEL,
        thread_ts=thread,
        text="a1",
        metadata={"event_type": "deploybot_effect", "event_payload": {"key": "reply:1:a1"}},
    )
    clock.advance(31)  # the lease ran out
    await drain(make_dispatcher(clock=clock))
    assert await replies(slack, sessions, release) == ["a1", "a2"]  # a1 once
    a1, a2 = await effect_row(sessions, "reply:1:a1"), await effect_row(sessions, "reply:1:a2")
    assert (a1.status, a1.interrupted, a1.result) == ("sent", True, {"ts": taken["ts"]})
    assert not a2.interrupted
    # Only the interrupted one was looked up; every post names its effect for next time.
    assert len(slack.calls_to("conversations.replies")) == 1
    (posted,) = [m for m in slack.thread(thread, CHANNEL) if m.get("text") == "a2"]
    assert posted["metadata"]["event_payload"]["key"] == "reply:1:a2"


async def test_an_interrupted_reply_slack_never_got_is_posted(
    sessions, slack: SlackEmulator, web: AsyncWebClient, make_dispatcher
) -> None:
    release, _ = await open_thread(sessions, web, 1)
    await say(sessions, release, "a1")
    clock = Clock()
    async with sessions.begin() as session:
        await outbox.QUEUE.claim_due(
            session, owner="died", now=clock(), lease=timedelta(seconds=30), limit=1
        )
    clock.advance(31)
    await drain(make_dispatcher(clock=clock))
    assert await replies(slack, sessions, release) == ["a1"]


# --- the order of a thread ---------------------------------------------------------------


async def test_a_failed_reply_holds_back_its_thread_and_no_other(
    sessions, slack: SlackEmulator, make_dispatcher
) -> None:
    first, second = await new_thread(sessions, 1), await new_thread(sessions, 2)
    await say(sessions, first, "a1")
    await say(sessions, second, "b1")
    await say(sessions, first, "a2")
    clock = Clock()
    dispatcher = make_dispatcher(clock=clock)

    slack.fail("chat.postMessage", status=500, times=1)  # a1, sent first, gets it
    assert await dispatcher.run_once() == 2  # a1 and b1: a2 waits behind a1
    assert await replies(slack, sessions, first) == []
    assert await replies(slack, sessions, second) == ["b1"]
    assert await dispatcher.run_once() == 0, "a2 waits while a1 waits out its backoff"
    assert (await effect_row(sessions, "reply:1:a1")).attempts == 1

    clock.advance(2)  # the first backoff
    await drain(dispatcher)
    assert await replies(slack, sessions, first) == ["a1", "a2"]
    assert slack.invalid_calls == []


async def test_a_dead_lettered_reply_no_longer_holds_back_its_thread(
    sessions, slack: SlackEmulator, make_dispatcher
) -> None:
    release = await new_thread(sessions, 1)
    await say(sessions, release, "a1", "a2")
    clock = Clock()
    dispatcher = make_dispatcher(clock=clock, max_attempts=2)

    slack.fail("chat.postMessage", status=503, times=2)
    assert await dispatcher.run_once() == 1
    clock.advance(2)
    assert await dispatcher.run_once() == 1  # a1's last attempt: dead-lettered
    assert (await effect_row(sessions, "reply:1:a1")).status == OutboxStatus.DEAD.value
    await drain(dispatcher)
    assert await replies(slack, sessions, release) == ["a2"]


async def test_closing_a_request_that_was_given_up_on_is_not_retried(
    sessions, slack: SlackEmulator, make_dispatcher
) -> None:
    release = await new_thread(sessions, 1)
    async with sessions.begin() as session:
        await releases.enqueue(session, ApprovalRequest(release, 9, "production", "alice", 1))
        await releases.enqueue(session, ApprovalDecided(release, 9, "cancelled"))
        await session.execute(
            sa.update(OutboxEffect)
            .where(OutboxEffect.idempotency_key == "approval-request:9")
            .values(status=OutboxStatus.DEAD.value)
        )
    await drain(make_dispatcher())
    closed = await effect_row(sessions, "approval-decided:9")
    assert (closed.status, closed.attempts, closed.result) == ("sent", 0, {"ts": None})
    assert slack.calls_to("chat.update") == []


async def test_two_dispatchers_never_post_a_thread_out_of_order(
    database_url: str, slack: SlackEmulator, web, github_app
) -> None:
    engines = [db.create_engine(database_url) for _ in range(2)]
    try:
        sessions = db.session_factory(engines[0])
        threads = [await new_thread(sessions, number) for number in (1, 2, 3)]
        for n in range(15):
            for release in threads:
                await say(sessions, release, f"{release}:{n:02d}")
        dispatchers = [
            OutboxDispatcher(
                github=github_app,
                slack=web,
                sessions=db.session_factory(engine),
                batch=2,
                poll_seconds=0.01,
                max_attempts=100,
                retry_delay=lambda attempt: timedelta(milliseconds=20),
            )
            for engine in engines
        ]

        async def trouble() -> None:  # Slack fails now and then while both are sending
            for _ in range(12):
                slack.fail("chat.postMessage", status=500, times=1)
                await asyncio.sleep(0.03)

        tasks = [asyncio.create_task(d.run()) for d in dispatchers]
        await trouble()
        for _ in range(1000):
            async with sessions() as session:
                if await outbox.depth(session) == 0:
                    break
            await asyncio.sleep(0.02)
        for dispatcher in dispatchers:
            dispatcher.stop()
        await asyncio.gather(*tasks)

        assert sum(c.status == 500 for c in slack.calls_to("chat.postMessage")) == 12
        for release in threads:
            expected = [f"{release}:{n:02d}" for n in range(15)]
            assert await replies(slack, sessions, release) == expected
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_slow_send_keeps_its_lease(sessions, slack: SlackEmulator, web, make_dispatcher):
    release = await new_thread(sessions, 1)
    await say(sessions, release, "a1")
    post_message = web.chat_postMessage

    async def slowly(**kwargs: Any) -> Any:
        await asyncio.sleep(0.6)  # as the client does sleeping out a Retry-After
        return await post_message(**kwargs)

    web.chat_postMessage = slowly  # type: ignore[method-assign]
    sending = asyncio.create_task(make_dispatcher(lease=timedelta(seconds=0.3)).run_once())
    await asyncio.sleep(0.45)  # the first lease has run out by now
    async with sessions.begin() as session:
        taken = await outbox.QUEUE.claim_due(
            session, owner="another replica", now=utcnow(), lease=timedelta(seconds=60), limit=5
        )
    assert taken == []
    assert await sending == 1
    assert await replies(slack, sessions, release) == ["a1"]


# --- rate limits -------------------------------------------------------------------------


def test_retry_after_is_read_as_slack_sends_it() -> None:
    assert retry_after({"Retry-After": "7"}) == timedelta(seconds=7)
    assert retry_after({"retry-after": ["30"]}) == timedelta(seconds=30)
    assert retry_after({"Retry-After": "0"}) == timedelta(seconds=1), "never at once"
    assert retry_after({}) == timedelta(seconds=1)
    assert retry_after({"Retry-After": "soon"}) == timedelta(seconds=1)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    assert timedelta(seconds=85) < retry_after({"Retry-After": later}) <= timedelta(seconds=90)


async def test_a_rate_limit_waits_its_retry_after_and_never_dead_letters(
    sessions, slack: SlackEmulator, make_dispatcher
) -> None:
    release = await new_thread(sessions, 1)
    await say(sessions, release, "a1", "a2")
    clock = Clock()
    # A client without the retry handler: the dispatcher sees every 429 itself.
    bare = AsyncWebClient(token=BOT_TOKEN, base_url=slack.url)
    dispatcher = make_dispatcher(slack=bare, clock=clock, max_attempts=2)

    slack.fail("chat.postMessage", status=429, headers={"Retry-After": "7"}, times=3)
    for _ in range(3):
        assert await dispatcher.run_once() == 1
        waiting = await effect_row(sessions, "reply:1:a1")
        assert (waiting.status, waiting.attempts) == ("pending", 0)
        assert waiting.next_attempt_at == clock.now + timedelta(seconds=7)
        assert "rate limiting" in (waiting.last_error or "")
        clock.advance(6.5)
        assert await dispatcher.run_once() == 0, "not before Retry-After"
        clock.advance(0.5)
    await drain(dispatcher)
    assert await replies(slack, sessions, release) == ["a1", "a2"]
    assert (await effect_row(sessions, "reply:1:a1")).attempts == 0


# --- the board ---------------------------------------------------------------------------


async def test_a_change_committed_while_the_board_is_drawn_gets_its_own_update(
    sessions, slack: SlackEmulator, web, make_dispatcher
) -> None:
    async with sessions.begin() as session:
        release, _ = await releases.upsert_pull_request(
            session,
            repository=REPOSITORY,
            pr_number=5,
            head_sha="a" * 40,
            title="First",
            author="alice",
            head_ref="feature",
            pr_url=None,
            pr_state="open",
        )
        release.thread_channel = CHANNEL
        await session.flush()
        release_id = release.id
        assert release_id is not None
        await releases.enqueue(session, RefreshBoard(release_id, "opened"))
    dispatcher = make_dispatcher()
    await drain(dispatcher)  # opens the thread with the board
    assert len(slack.calls_to("chat.postMessage")) == 1

    async def retitle(title: str, *causes: str) -> None:
        async with sessions.begin() as session:
            row_ = await session.get(ReleaseRow, release_id)
            assert row_ is not None
            row_.title = title
            for cause in causes:
                await releases.enqueue(session, RefreshBoard(release_id, cause))

    await retitle("Second", "second", "second-again")
    update = web.chat_update

    async def update_while_it_changes(**kwargs: Any) -> Any:
        if len(slack.calls_to("chat.update")) == 0:
            await retitle("Late", "late")  # committed after the board was drawn
        return await update(**kwargs)

    web.chat_update = update_while_it_changes  # type: ignore[method-assign]
    assert await dispatcher.run_once() == 1
    (shown,) = slack.calls_to("chat.update")
    assert "#5 Second" in json.dumps(shown.args["blocks"])
    async with sessions() as session:
        late = await outbox.pending_ids(session, ordering_key=outbox.board_key(release_id))
    assert late == [(await effect_row(sessions, f"board:{release_id}:late")).id]
    coalesced = await effect_row(sessions, f"board:{release_id}:second-again")
    assert coalesced.status == "sent"
    assert (
        coalesced.result["coalesced_into"]
        == (await effect_row(sessions, f"board:{release_id}:second")).id
    )

    await drain(dispatcher)
    assert ["#5 Late" in json.dumps(c.args["blocks"]) for c in slack.calls_to("chat.update")] == [
        False,
        True,
    ]

    # Nothing changed since: a refresh is recorded without calling Slack.
    async with sessions.begin() as session:
        await releases.enqueue(session, RefreshBoard(release_id, "nothing-new"))
    await drain(dispatcher)
    assert len(slack.calls_to("chat.update")) == 2
    unchanged = await effect_row(sessions, f"board:{release_id}:nothing-new")
    assert unchanged.status == "sent" and unchanged.result["board"]


# --- through the whole app ---------------------------------------------------------------


@pytest.fixture
def health():
    with HealthEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
async def story(app, github, slack, health) -> Story:
    import httpx

    services = app.state.services
    github.set_file(
        OWNER, NAME, ".github/deploybot.yml", pipeline_file(channel=CHANNEL, health_url=health.url)
    )
    github.set_permission(OWNER, NAME, "alice", "write")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://deploybot") as http:

        async def tick() -> None:
            await services.scheduler.tick()

        story = Story(http, github, slack, sessions=services.sessions, tick=tick)
        await story.deliver("installation", installation_created())
        yield story


def sha(n: int) -> str:
    return hashlib.sha1(f"commit {n}".encode()).hexdigest()


async def post(story: Story, event: str, payload: dict) -> None:
    """Deliver a webhook without waiting for the app to handle it (a burst)."""
    story.deliveries += 1
    body = compact(payload)
    headers = github_headers(
        body, secret=WEBHOOK_SECRET, event=event, delivery=f"burst-{story.deliveries}"
    )
    response = await story.client.post("/github/webhook", content=body, headers=headers)
    assert response.status_code == 202, response.text


async def settle(story: Story, *, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        async with story.sessions() as session:
            waiting = await inbox.depth(session) + await outbox.depth(session)
            dead = await inbox.dead_letters(session) + await outbox.dead_letters(session)
        assert not dead, [d.last_error for d in dead]
        if waiting == 0:
            return
        assert time.monotonic() < deadline, "the app did not settle"
        await asyncio.sleep(0.05)


def pushes(story: Story) -> list[str]:
    return [m["text"] for m in story.slack.messages if m.get("text", "").startswith("New commit ")]


async def test_slack_429s_are_waited_out_and_replies_keep_their_order(
    story: Story, monkeypatch: pytest.MonkeyPatch
) -> None:
    await story.deliver(
        "pull_request", pull_request("opened", number=5, sha=sha(0), title="T", author="alice")
    )
    calls: list[tuple[str, float, int, dict[str, str]]] = []
    handle = story.slack.handle

    def timed(method: str, **kwargs: Any) -> Any:
        arrived = time.monotonic()
        status, body, headers = handle(method, **kwargs)
        calls.append((method, arrived, status, headers))
        return status, body, headers

    monkeypatch.setattr(story.slack, "handle", timed)
    # The client's retry handler waits out three of them; the fourth is the outbox's to wait.
    story.slack.fail("chat.postMessage", status=429, headers={"Retry-After": "1"}, times=3)
    story.slack.fail("chat.postMessage", status=429, headers={"Retry-After": "3"}, times=1)
    for n in (1, 2, 3):
        await post(
            story,
            "pull_request",
            pull_request("synchronize", number=5, sha=sha(n), title="T", author="alice"),
        )
    await settle(story, seconds=40)

    assert pushes(story) == [f"New commit {sha(n)[:7]} pushed." for n in (1, 2, 3)]
    posts = [
        (at, status, headers)
        for method, at, status, headers in calls
        if method == "chat.postMessage"
    ]
    assert [status for _, status, _ in posts] == [429, 429, 429, 429, 200, 200, 200]
    for (at, status, headers), (next_at, _, _) in itertools.pairwise(posts):
        if status == 429:
            wait = next(int(v) for k, v in headers.items() if k.lower() == "retry-after")
            assert next_at - at >= wait, (headers, next_at - at)
    async with story.sessions() as session:
        release = await releases.release_for_pr(session, repository=REPOSITORY, pr_number=5)
    assert release is not None
    first = await effect_row(story.sessions, f"reply:{release.id}:push:{sha(1)}")
    assert (first.status, first.attempts) == ("sent", 0), "waiting out a rate limit is no failure"
    assert story.slack.invalid_calls == []


async def test_a_burst_of_pushes_gives_one_board_update_per_change(app, story: Story) -> None:
    services = app.state.services
    await story.deliver(
        "pull_request", pull_request("opened", number=5, sha=sha(0), title="T", author="alice")
    )
    assert story.slack.calls_to("chat.update") == []  # the board was posted with the thread

    # The burst lands while no dispatcher runs, so every effect of it waits together.
    services.dispatcher.stop()
    (running,) = [t for t in asyncio.all_tasks() if t.get_name() == "outbox-dispatcher"]
    await running
    for n in range(1, 51):
        await post(
            story,
            "pull_request",
            pull_request("synchronize", number=5, sha=sha(n), title="T", author="alice"),
        )
    for _ in range(600):
        async with story.sessions() as session:
            if await inbox.depth(session) == 0:
                break
        await asyncio.sleep(0.05)
    async with story.sessions() as session:
        assert await outbox.depth(session) == 100  # 50 replies, 50 board refreshes

    dispatcher = OutboxDispatcher(
        github=services.github,
        slack=services.slack.client,
        sessions=services.sessions,
        poll_seconds=0.02,
    )
    task = asyncio.create_task(dispatcher.run())
    try:
        await settle(story, seconds=60)
        assert pushes(story) == [f"New commit {sha(n)[:7]} pushed." for n in range(1, 51)]
        (update,) = story.slack.calls_to("chat.update")
        assert sha(50)[:7] in json.dumps(update.args["blocks"])
        async with story.sessions() as session:
            boards = (
                (
                    await session.execute(
                        sa.select(OutboxEffect.result).where(OutboxEffect.kind == "RefreshBoard")
                    )
                )
                .scalars()
                .all()
            )
        assert sum("coalesced_into" in (r or {}) for r in boards) == 49

        # An event that changes nothing on the board updates nothing; a change updates once.
        await story.deliver(
            "pull_request", pull_request("edited", number=5, sha=sha(50), title="T", author="alice")
        )
        assert len(story.slack.calls_to("chat.update")) == 1
        await story.deliver(
            "pull_request",
            pull_request("synchronize", number=5, sha=sha(51), title="T", author="alice"),
        )
        assert len(story.slack.calls_to("chat.update")) == 2

        # A burst while the dispatcher runs: never the same board twice in a row, at most
        # one update per head the board showed, and it ends on the last one.
        for n in range(52, 72):
            await post(
                story,
                "pull_request",
                pull_request("synchronize", number=5, sha=sha(n), title="T", author="alice"),
            )
            await post(
                story,
                "pull_request",
                pull_request("edited", number=5, sha=sha(n), title="T", author="alice"),
            )
        await settle(story, seconds=60)
        shown = [json.dumps(c.args["blocks"]) for c in story.slack.calls_to("chat.update")[2:]]
        assert 1 <= len(shown) <= 20
        assert all(a != b for a, b in itertools.pairwise(shown))
        assert sha(71)[:7] in shown[-1]
        assert pushes(story)[-20:] == [f"New commit {sha(n)[:7]} pushed." for n in range(52, 72)]
        assert story.slack.invalid_calls == []
    finally:
        dispatcher.stop()
        await task


async def test_a_long_github_rate_limit_is_waited_out_in_the_outbox(app, story: Story) -> None:
    story.github.fail("issues/create-comment", status=429, headers={"Retry-After": "120"})
    async with story.sessions.begin() as session:
        await releases.enqueue(session, PullRequestComment(REPOSITORY, 5, "hello", "Hello."))
    app.state.services.dispatcher.wake()
    key = f"comment:{REPOSITORY}#5:hello"
    for _ in range(200):
        waiting = await effect_row(story.sessions, key)
        if waiting.last_error:
            break
        await asyncio.sleep(0.05)
    assert (waiting.status, waiting.attempts) == ("pending", 0)
    assert waiting.next_attempt_at >= utcnow() + timedelta(seconds=110)
    assert (waiting.last_error or "").startswith("RetryLater")
