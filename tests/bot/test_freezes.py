"""Repository freezes: the rows on both databases, and `/deploy freeze|unfreeze` through
the app (signed slash commands, the GitHub and Slack emulators over real HTTP).

The story: an admin freezes → a deploy is refused naming until when, who and why → the
admin's `--force` still goes through its confirmation and is said in the thread (and kept
in the audit log) → unfreeze → deploys go again; a rollback while frozen is never held.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from bot.pipeline.freezes import Freeze, when
from bot.pipeline.models import Person
from bot.slack import modals
from storage import freezes
from storage.models import AuditEvent
from storage.models import Freeze as FreezeRow
from tests.bot import test_slash_commands as slash
from tests.bot.test_slash_commands import (
    RELEASE,
    _confirm_view,
    _status_of,
    _succeed,
    answer,
    opened_view,
    private_to,
)
from tests.story import REPOSITORY, Story, deployment_status

# The slash command tests' fixtures: an installed `acme/api` with alice (admin) and bob.
health = slash.health
story = slash.story

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
BOB = Person(github="bob", slack="U0BOB")
ALICE = Person(github="alice", slack="U0ALICE")


def _freeze(by: Person = BOB, *, hours: int = 4, reason: str = "release week") -> Freeze:
    return Freeze(
        repository="acme/shop", by=by, reason=reason, until=NOW + timedelta(hours=hours), since=NOW
    )


# --- storage, on SQLite and PostgreSQL ---------------------------------------------------


async def test_one_freeze_per_repository_and_an_ended_one_holds_nothing(
    engine: AsyncEngine,
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions.begin() as session:
        assert await freezes.active(session, repository="acme/shop", now=NOW) is None
        await freezes.put(session, _freeze())
    async with sessions() as session:
        held = await freezes.active(session, repository="acme/shop", now=NOW)
        assert held == _freeze()
        assert await freezes.active(session, repository="acme/other", now=NOW) is None
        ended = NOW + timedelta(hours=4)
        assert await freezes.active(session, repository="acme/shop", now=ended) is None

    async with sessions.begin() as session:  # a new freeze replaces the old one
        await freezes.put(session, _freeze(ALICE, hours=8, reason="still frozen"))
    async with sessions() as session:
        held = await freezes.active(session, repository="acme/shop", now=NOW)
        assert held is not None and held.by == ALICE and held.reason == "still frozen"
        assert held.until == NOW + timedelta(hours=8)
        count = await session.scalar(sa.select(sa.func.count()).select_from(FreezeRow))
        assert count == 1


async def test_lifting_returns_what_held_and_an_ended_freeze_lifts_as_nothing(
    engine: AsyncEngine,
) -> None:
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions.begin() as session:
        assert await freezes.lift(session, repository="acme/shop", now=NOW) is None
        await freezes.put(session, _freeze())
    async with sessions.begin() as session:
        assert await freezes.lift(session, repository="acme/shop", now=NOW) == _freeze()
        assert await freezes.active(session, repository="acme/shop", now=NOW) is None
    async with sessions.begin() as session:
        await freezes.put(session, _freeze())
    later = NOW + timedelta(days=1)
    async with sessions.begin() as session:
        assert await freezes.lift(session, repository="acme/shop", now=later) is None
        count = await session.scalar(sa.select(sa.func.count()).select_from(FreezeRow))
        assert count == 0


# --- through Slack -------------------------------------------------------------------------


async def _frozen(story: Story) -> Freeze:
    async with story.sessions() as session:
        held = await freezes.active(session, repository=REPOSITORY, now=datetime.now(UTC))
    assert held is not None
    return held


async def test_freeze_refuses_deploys_until_unfrozen_and_force_still_goes(story: Story) -> None:
    said = await answer(story, "freeze acme/api until +3d release week", user="U0ALICE")
    frozen = await _frozen(story)
    until = when(frozen.until)
    assert f"alice froze `acme/api` until {until}: release week" in said
    assert frozen.by == Person(github="alice", slack="U0ALICE")
    assert (
        datetime.now(UTC) + timedelta(days=2) < frozen.until < datetime.now(UTC) + timedelta(days=4)
    )

    said = await answer(story, "acme/api to stage", user="U0BOB")
    assert (
        f"`acme/api` is frozen until {until} by alice: release week. "
        "Ask an admin to `--force`, or wait."
    ) in said
    assert story.deployments("stage") == []

    # Someone without admin permission may neither freeze nor unfreeze.
    said = await answer(story, "unfreeze acme/api", user="U0BOB")
    assert "admin" in said
    said = await answer(story, "freeze acme/api until +1h mine", user="U0BOB")
    assert "admin" in said
    assert (await _frozen(story)).reason == "release week"

    # An admin's --force asks for confirmation, then deploys and says so in the thread.
    view = await _confirm_view(story, "acme/api to stage --force", "U0ALICE")
    assert "stage" in str(view["blocks"])
    assert story.deployments("stage") == []
    await story.submit(view, user="U0ALICE")
    await story.eventually(lambda: len(story.deployments("stage")) == 1)
    await story.eventually(lambda: "alice used `--force` past the freeze" in story.thread())
    assert f"frozen until {until} by alice: release week" in story.thread()
    async with story.sessions() as session:
        forced = sa.select(AuditEvent).where(AuditEvent.action == "force-past-freeze")
        (audit,) = (await session.execute(forced)).scalars().all()
    assert (audit.action, audit.actor, audit.environment) == ("force-past-freeze", "alice", "stage")
    assert audit.source == "slack"
    assert audit.detail["reason"] == "release week"

    (stage,) = story.deployments("stage")
    await story.deliver("deployment_status", deployment_status(stage["id"], "success"))
    await story.tick_until(lambda: _status_of(story, "stage") == "success")

    said = await answer(story, "unfreeze acme/api", user="U0ALICE")
    assert "alice lifted the freeze on `acme/api` (set by alice" in said
    said = await answer(story, "unfreeze acme/api", user="U0ALICE")
    assert "`acme/api` is not frozen" in said or "acme/api is not frozen" in said

    said = await answer(story, "acme/api@v1.2.0 to stage", user="U0BOB")
    assert "asked to deploy" in said
    await story.eventually(lambda: len(story.deployments("stage")) == 2)
    assert story.deployments("stage")[0]["sha"] == RELEASE


@pytest.mark.parametrize(
    ("until", "says"),
    [
        ("2020-01-01", "`2020-01-01` (2020-01-01 00:00 UTC) is already past"),
        ("someday", "`someday` is not a time deploybot reads"),
    ],
)
async def test_a_freeze_needs_a_time_to_come(story: Story, until: str, says: str) -> None:
    said = await answer(story, f"freeze acme/api until {until} release", user="U0ALICE")
    assert says in said
    async with story.sessions() as session:
        assert await freezes.active(session, repository=REPOSITORY, now=NOW) is None
    assert not [m for m in story.slack.messages if "froze" in m.get("text", "")]


async def test_a_rollback_while_frozen_goes(story: Story) -> None:
    await _succeed(story, "v1.2.0")
    await _succeed(story, "main")
    await answer(story, "freeze acme/api until +2h incident", user="U0ALICE")
    await _frozen(story)

    await story.slash("rollback acme/api stage", user="U0BOB")
    await story.eventually(
        lambda: any(v.get("callback_id") == modals.ROLLBACK for v in story.slack.views.values())
    )
    view = opened_view(story, modals.ROLLBACK)
    values = {
        modals.TARGET_BLOCK: {
            modals.TARGET_ACTION: {"type": "radio_buttons", "selected_option": {"value": RELEASE}}
        }
    }
    await story.submit(view, user="U0BOB", values=values)
    await story.eventually(lambda: len(story.deployments("stage")) == 3)
    assert story.deployments("stage")[0]["sha"] == RELEASE
    assert not any("frozen" in t for t in private_to(story, "U0BOB"))
