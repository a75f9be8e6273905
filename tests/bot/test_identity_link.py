"""`/deploy link`: who a Slack user is on GitHub. The rule (the `users:` map, else a link
GitHub confirmed), and the confirmation through a real webhook on both databases."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.identity import person_for_slack, slack_person
from bot.pipeline.config import parse_pipeline
from bot.pipeline.models import Person
from storage import db, identities
from storage.models import IdentityLink, utcnow
from tests.story import Story, comment, installation_created

PIPELINE = parse_pipeline("users:\n  Alice: U0ALICE\n  bob: U0BOB\n")


# --------------------------------------------------------------------------- the rule


@pytest.mark.parametrize(
    ("slack_user", "linked", "expected"),
    [
        # the map first, whatever the link says
        ("U0ALICE", None, Person(github="alice", slack="U0ALICE")),
        ("U0ALICE", "mallory", Person(github="alice", slack="U0ALICE")),
        # no map entry: the confirmed link
        ("U0MONA", "Octocat", Person(github="Octocat", slack="U0MONA")),
        # neither: no GitHub login, so nothing that needs one is allowed
        ("U0MONA", None, Person(slack="U0MONA")),
        # a login the map gives to someone else is that someone else here
        ("U0MONA", "bob", Person(slack="U0MONA")),
        ("U0MONA", "BOB", Person(slack="U0MONA")),
    ],
)
def test_the_users_map_then_the_confirmed_link(
    slack_user: str, linked: str | None, expected: Person
) -> None:
    assert slack_person(PIPELINE, slack_user=slack_user, linked_login=linked) == expected


def test_a_link_agreeing_with_the_map_is_the_map() -> None:
    assert slack_person(PIPELINE, slack_user="U0BOB", linked_login="bob") == Person(
        github="bob", slack="U0BOB"
    )


async def test_person_for_slack_trusts_only_confirmed_links(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    now = utcnow()
    async with sessions.begin() as session:
        code = await identities.start_link(
            session, slack_user="U0MONA", github_login="octocat", now=now
        )
    async with sessions() as session:
        pending = await person_for_slack(session, pipeline=PIPELINE, slack_user="U0MONA")
    assert pending == Person(slack="U0MONA")  # the Slack user's word alone
    async with sessions.begin() as session:
        await identities.confirm_link(session, code=code, github_login="octocat", now=now)
    async with sessions() as session:
        assert await person_for_slack(session, pipeline=PIPELINE, slack_user="U0MONA") == Person(
            github="octocat", slack="U0MONA"
        )
        assert await person_for_slack(session, pipeline=PIPELINE, slack_user="U0ALICE") == Person(
            github="alice", slack="U0ALICE"
        )


# ------------------------------------------------------------- confirming on a PR


@pytest.fixture
async def story(app, client, github, slack) -> Story:

    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    github.reset()
    return story


async def _start(story: Story, slack_user: str, login: str, **kwargs) -> str:
    async with story.sessions.begin() as session:
        return await identities.start_link(
            session, slack_user=slack_user, github_login=login, now=utcnow(), **kwargs
        )


async def _linked(story: Story, slack_user: str) -> str | None:
    async with story.sessions() as session:
        return await identities.linked_login(session, slack_user=slack_user)


async def _pending(story: Story, slack_user: str) -> str | None:
    async with story.sessions() as session:
        return (
            await session.execute(
                sa.select(IdentityLink.pending_login).where(IdentityLink.slack_user == slack_user)
            )
        ).scalar_one_or_none()


def _replies(story: Story) -> list[str]:
    """The bot's PR comments as people read them: without the outbox's invisible marker."""
    calls = story.github.calls_to("issues/create-comment")
    return [re.sub(r"\n\n<!-- deploybot:[^\n]* -->\Z", "", c.json["body"]) for c in calls]


def _reactions(story: Story) -> list[str]:
    calls = story.github.calls_to("reactions/create-for-issue-comment")
    return [f"{c.path.rsplit('/', 2)[-2]}:{c.json['content']}" for c in calls]


async def _comment(story: Story, body: str, *, login: str, comment_id: int) -> None:
    story.github.reset()
    await story.deliver(
        "issue_comment", comment(body, number=7, login=login, comment_id=comment_id)
    )


async def test_the_github_user_confirms_with_the_code_once(story: Story, capfd) -> None:
    code = await _start(story, "U0MONA", "octocat")

    # Someone else who saw the code cannot take it; it stays pending for octocat.
    await _comment(story, f"/deploy link {code}", login="mallory", comment_id=901)
    (refusal,) = _replies(story)
    assert refusal.startswith("@mallory that link code was made for a different GitHub login")
    assert "`/deploy link mallory` in Slack" in refusal
    assert "U0MONA" not in refusal and "octocat" not in refusal
    assert _reactions(story) == []
    assert await _linked(story, "U0MONA") is None
    assert await _pending(story, "U0MONA") == "octocat"

    # GitHub's login, typed in any case, with the code as people copy it.
    await _comment(story, f"`/deploy link {code.lower()}`", login="Octocat", comment_id=902)
    (reply,) = _replies(story)
    assert reply.startswith("@Octocat your Slack account is now linked to this GitHub login")
    assert "you can delete this comment" in reply
    assert _reactions(story) == ["902:eyes"]
    assert await _linked(story, "U0MONA") == "Octocat"
    assert await _pending(story, "U0MONA") is None
    # Cheap: no permission, pull request or pipeline file lookups for a link.
    operations = {c.operation_id for c in story.github.calls}
    assert operations <= {
        "issues/create-comment",
        "reactions/create-for-issue-comment",
        "apps/create-installation-access-token",
    }, operations

    # Used up.
    await _comment(story, f"/deploy link {code}", login="Octocat", comment_id=903)
    (again,) = _replies(story)
    assert again.startswith("@Octocat that is not a link code deploybot is waiting for")
    assert "`/deploy link Octocat` in Slack" in again
    assert _reactions(story) == []
    assert await _linked(story, "U0MONA") == "Octocat"

    out, err = capfd.readouterr()
    assert "github_event=issue_comment" in out + err  # the app's log lines were read
    for text in (out, err, refusal, reply, again):
        assert code not in text and code.lower() not in text
    assert story.github.invalid_requests == []


async def test_an_expired_code_is_refused(story: Story) -> None:
    code = await _start(story, "U0MONA", "octocat", ttl=timedelta(seconds=-1))
    await _comment(story, f"/deploy link {code}", login="octocat", comment_id=911)
    (reply,) = _replies(story)
    assert reply == (
        "@octocat that link code has expired, so nothing was linked. Run `/deploy link "
        "octocat` in Slack for a new code, then comment `/deploy link <code>` on any pull "
        "request here."
    )
    assert _reactions(story) == []
    assert await _linked(story, "U0MONA") is None


async def test_a_code_typed_in_time_counts_even_if_handled_late(story: Story) -> None:
    # Issued two hours ago with an hour to live, and commented 30 minutes after that; the
    # delivery sat in a backlog until now. The comment's time decides, not the worker's.
    issued = utcnow() - timedelta(hours=2)
    async with story.sessions.begin() as session:
        code = await identities.start_link(
            session, slack_user="U0MONA", github_login="octocat", now=issued
        )
    payload = comment(f"/deploy link {code}", number=7, login="octocat", comment_id=921)
    payload["comment"]["created_at"] = (issued + timedelta(minutes=30)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    story.github.reset()
    await story.deliver("issue_comment", payload)
    assert await _linked(story, "U0MONA") == "octocat"


async def test_link_mistakes_are_explained(story: Story) -> None:
    await _comment(story, "/deploy link", login="octocat", comment_id=921)
    (missing,) = _replies(story)
    assert missing == (
        "@octocat `/deploy link` needs the code deploybot showed you in Slack after "
        "`/deploy link <github-login>`.\n\nUsage: `/deploy link <code>`"
    )
    await _comment(story, "/deploy link octocat", login="octocat", comment_id=922)
    (login_typed,) = _replies(story)
    assert "takes the code deploybot showed you in Slack, not your login" in login_typed
    assert _reactions(story) == []


async def test_bots_cannot_confirm(story: Story) -> None:
    code = await _start(story, "U0MONA", "octocat")
    payload = comment(f"/deploy link {code}", number=7, login="octocat", comment_id=931)
    payload["comment"]["user"]["type"] = "Bot"
    story.github.reset()
    await story.deliver("issue_comment", payload)
    assert _replies(story) == [] and _reactions(story) == []
    assert await _linked(story, "U0MONA") is None


async def test_an_edited_comment_does_not_confirm(story: Story) -> None:
    """A maintainer can edit anyone's comment: only the author's own new comment counts."""
    code = await _start(story, "U0MONA", "octocat")
    payload = comment(f"/deploy link {code}", number=7, login="octocat", comment_id=941)
    payload["action"] = "edited"
    await story.deliver("issue_comment", payload)
    assert await _linked(story, "U0MONA") is None
    assert await _pending(story, "U0MONA") == "octocat"
