"""Sending PR comments from the outbox without posting one twice: each comment carries its
outbox key in an invisible marker, and a retry whose earlier try may have reached GitHub
looks for it first. Real databases, the GitHub emulator over HTTP and the bot's own client."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from bot.dispatcher import OutboxDispatcher
from bot.pipeline.effects import PullRequestComment
from integrations.emulators.github import GitHubEmulator
from integrations.github_app import GitHubApp
from storage import db, installations, outbox, releases
from storage.models import OutboxStatus, utcnow
from tests.dispatching import drain, effect_row
from tests.story import INSTALLATION_ID, NAME, OWNER, REPOSITORY, REPOSITORY_ID

NUMBER = 5
KEY = f"comment:{REPOSITORY}#{NUMBER}:hello"
MARKED = f"Hello.\n\n<!-- deploybot:{KEY} -->"
CREATE, LIST = "issues/create-comment", "issues/list-comments"


@pytest.fixture
async def sessions(engine):
    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        await installations.upsert_installation(
            session,
            installation_id=INSTALLATION_ID,
            account_login=OWNER,
            account_type="Organization",
        )
        await installations.add_repositories(
            session,
            installation_id=INSTALLATION_ID,
            repositories=[installations.RepositoryRef(id=REPOSITORY_ID, full_name=REPOSITORY)],
        )
    return sessions


@pytest.fixture
def make_dispatcher(sessions, github: GitHubEmulator, app_private_key_pem: str):
    def build(**options: Any) -> OutboxDispatcher:
        app = GitHubApp(
            app_id=4242,
            private_key=app_private_key_pem,
            base_url=github.url,
            timeout=options.pop("timeout", 5.0),
            retry_scale=0.001,
        )
        # Comments go to GitHub only: this Slack client is never called.
        slack = AsyncWebClient(token="xoxb-unused", base_url="http://127.0.0.1:9/api/")
        options.setdefault("retry_delay", lambda attempt: timedelta(0))
        return OutboxDispatcher(github=app, slack=slack, sessions=sessions, **options)

    return build


async def comment_hello(sessions) -> None:
    async with sessions.begin() as session:
        await releases.enqueue(session, PullRequestComment(REPOSITORY, NUMBER, "hello", "Hello."))


def posted(github: GitHubEmulator) -> list[dict[str, Any]]:
    return github.comments(OWNER, NAME, NUMBER)


async def die_holding_it(sessions) -> None:
    """A dispatcher claims the effect and dies: its lease is all that is left of it."""
    async with sessions.begin() as session:
        (claimed,) = await outbox.QUEUE.claim_due(
            session, owner="died", now=utcnow(), lease=timedelta(seconds=30), limit=1
        )
    assert claimed.idempotency_key == KEY and not claimed.interrupted


def after_the_lease() -> datetime:
    """The time of a dispatcher that comes once the dead one's lease ran out."""
    return utcnow() + timedelta(seconds=31)


async def test_a_first_try_posts_with_the_marker_and_looks_nothing_up(
    sessions, github: GitHubEmulator, make_dispatcher
) -> None:
    await comment_hello(sessions)
    await drain(make_dispatcher())
    (comment,) = posted(github)
    assert comment["body"] == MARKED  # the marker is the last line, after a blank one
    sent = await effect_row(sessions, KEY)
    assert (sent.status, sent.attempts, sent.result) == ("sent", 0, {"id": comment["id"]})
    assert github.calls_to(LIST) == []
    assert github.invalid_requests == []


@pytest.mark.parametrize("lost", ["502", "timeout"])
async def test_a_comment_github_took_is_not_posted_again(
    sessions, github: GitHubEmulator, make_dispatcher, lost: str
) -> None:
    await comment_hello(sessions)
    if lost == "502":
        github.fail(CREATE, status=502, taken=True)
        dispatcher = make_dispatcher()
    else:
        github.delay(CREATE, 3, taken=True)
        dispatcher = make_dispatcher(timeout=0.5)

    assert await dispatcher.run_once() == 1
    (taken,) = posted(github)
    failed = await effect_row(sessions, KEY)
    assert (failed.status, failed.attempts) == ("pending", 1)

    await drain(dispatcher)
    assert posted(github) == [taken]
    assert len(github.calls_to(CREATE)) == 1
    sent = await effect_row(sessions, KEY)
    assert (sent.status, sent.result) == (OutboxStatus.SENT.value, {"id": taken["id"]})
    (lookup,) = github.calls_to(LIST)
    since = (sent.created_at - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert lookup.query == {"since": since, "per_page": "100", "page": "1"}
    assert lookup.path == f"/repos/{REPOSITORY}/issues/{NUMBER}/comments"


async def test_a_comment_its_dead_sender_got_onto_github_is_not_posted_again(
    sessions, github: GitHubEmulator, make_dispatcher
) -> None:
    await comment_hello(sessions)
    await die_holding_it(sessions)
    # Its last act: GitHub took the comment; it never recorded that.
    taken = github.add_comment(OWNER, NAME, NUMBER, MARKED)

    await drain(make_dispatcher(clock=after_the_lease))
    assert posted(github) == [taken]
    sent = await effect_row(sessions, KEY)
    assert (sent.status, sent.interrupted, sent.result) == ("sent", True, {"id": taken["id"]})
    assert github.calls_to(CREATE) == []


async def test_the_lookup_reads_on_past_a_full_page(
    sessions, github: GitHubEmulator, make_dispatcher
) -> None:
    await comment_hello(sessions)
    # A busy pull request: other comments came before ours, which lands on the second page;
    # one mentions our key, but not as the marker's line of its own.
    for n in range(119):
        github.add_comment(OWNER, NAME, NUMBER, f"comment {n}")
    github.add_comment(OWNER, NAME, NUMBER, f"quoting `<!-- deploybot:{KEY} -->` inline")
    github.fail(CREATE, status=502, taken=True)

    await drain(make_dispatcher())
    assert len(posted(github)) == 121 and len(github.calls_to(CREATE)) == 1
    assert (await effect_row(sessions, KEY)).result == {"id": posted(github)[-1]["id"]}
    assert [call.query["page"] for call in github.calls_to(LIST)] == ["1", "2"]


@pytest.mark.parametrize("how", ["failed", "interrupted", "dead-lettered"])
async def test_a_retry_whose_earlier_try_never_reached_github_posts_once(
    sessions, github: GitHubEmulator, make_dispatcher, how: str
) -> None:
    await comment_hello(sessions)
    if how == "interrupted":
        await die_holding_it(sessions)
    else:
        github.fail(CREATE, status=502)  # answered instead: nothing was posted
        dispatcher = make_dispatcher(max_attempts=1 if how == "dead-lettered" else 5)
        assert await dispatcher.run_once() == 1
        assert posted(github) == []
    if how == "dead-lettered":
        dead = await effect_row(sessions, KEY)
        assert dead.status == OutboxStatus.DEAD.value
        async with sessions.begin() as session:
            assert await outbox.retry_dead(session, item_id=dead.id, now=utcnow())

    await drain(make_dispatcher(clock=after_the_lease))
    (comment,) = posted(github)
    assert comment["body"] == MARKED
    sent = await effect_row(sessions, KEY)
    assert (sent.status, sent.result) == ("sent", {"id": comment["id"]})
    assert len(github.calls_to(LIST)) == 1  # looked, found nothing, posted
