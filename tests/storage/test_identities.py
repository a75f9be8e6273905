"""Identity links on SQLite and PostgreSQL: asked in Slack, confirmed on GitHub, once."""

import asyncio
import math
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import db, identities
from storage.identities import CODE_ALPHABET, CODE_LENGTH, LinkOutcome, LinkResult
from storage.models import IdentityLink

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


async def _start(sessions, slack_user: str, login: str, *, now: datetime = NOW, **kw) -> str:
    async with sessions.begin() as session:
        return await identities.start_link(
            session, slack_user=slack_user, github_login=login, now=now, **kw
        )


async def _confirm(sessions, code: str, login: str, *, now: datetime = NOW) -> LinkResult:
    async with sessions.begin() as session:
        return await identities.confirm_link(session, code=code, github_login=login, now=now)


async def _linked(sessions, slack_user: str) -> str | None:
    async with sessions() as session:
        return await identities.linked_login(session, slack_user=slack_user)


async def _row(sessions, slack_user: str) -> IdentityLink | None:
    async with sessions() as session:
        return (
            await session.execute(
                sa.select(IdentityLink).where(IdentityLink.slack_user == slack_user)
            )
        ).scalar_one_or_none()


def test_codes_are_short_unambiguous_and_unguessable() -> None:
    codes = {identities.new_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(c) == CODE_LENGTH and set(c) <= set(CODE_ALPHABET) for c in codes)
    assert not set("ILOU") & set(CODE_ALPHABET)
    assert CODE_LENGTH * math.log2(len(CODE_ALPHABET)) >= 50


def test_typing_slips_are_forgiven() -> None:
    assert identities.normalize_code(" 7k3qd-9xw2m ") == "7K3QD9XW2M"
    assert identities.code_hash("O1IL0") == identities.code_hash("01110")
    assert identities.code_hash("ABC") != identities.code_hash("ABD")


async def test_a_code_links_the_login_it_was_made_for_once(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    code = await _start(sessions, "U0MONA", "Octocat")
    assert await _linked(sessions, "U0MONA") is None  # pending is not trusted

    row = await _row(sessions, "U0MONA")
    assert row is not None and row.pending_login == "Octocat"
    assert row.code_hash == identities.code_hash(code) and code not in row.code_hash
    assert row.code_expires_at == NOW + timedelta(hours=1)

    result = await _confirm(sessions, code.lower(), "octocat", now=NOW + timedelta(minutes=5))
    assert result == LinkResult(LinkOutcome.CONFIRMED, slack_user="U0MONA", login="octocat")
    assert result.confirmed
    assert await _linked(sessions, "U0MONA") == "octocat"  # as GitHub spells it
    row = await _row(sessions, "U0MONA")
    assert row is not None
    assert (row.pending_login, row.code_hash, row.code_expires_at) == (None, None, None)
    assert row.confirmed_at == NOW + timedelta(minutes=5)

    again = await _confirm(sessions, code, "octocat", now=NOW + timedelta(minutes=6))
    assert again == LinkResult(LinkOutcome.UNKNOWN)


async def test_another_login_cannot_use_the_code(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    code = await _start(sessions, "U0MONA", "octocat")
    result = await _confirm(sessions, code, "mallory")
    assert result == LinkResult(LinkOutcome.WRONG_LOGIN)  # whose code it was stays unsaid
    assert not result.confirmed
    assert await _linked(sessions, "U0MONA") is None
    # Still pending: the right login can still confirm it.
    assert (await _confirm(sessions, code, "octocat")).confirmed


async def test_an_expired_code_is_refused_and_forgotten(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    code = await _start(sessions, "U0MONA", "octocat", ttl=timedelta(minutes=10))
    late = NOW + timedelta(minutes=10)
    assert await _confirm(sessions, code, "octocat", now=late) == LinkResult(LinkOutcome.EXPIRED)
    assert await _linked(sessions, "U0MONA") is None
    row = await _row(sessions, "U0MONA")
    assert row is not None and row.code_hash is None
    assert await _confirm(sessions, code, "octocat", now=late) == LinkResult(LinkOutcome.UNKNOWN)


async def test_unknown_codes_are_refused(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    await _start(sessions, "U0MONA", "octocat")
    assert await _confirm(sessions, "NOTACODE00", "octocat") == LinkResult(LinkOutcome.UNKNOWN)


async def test_a_new_code_replaces_the_old_and_the_confirmed_login_stays_until_then(
    engine: AsyncEngine,
) -> None:
    sessions = db.session_factory(engine)
    assert (
        await _confirm(sessions, await _start(sessions, "U0MONA", "octocat"), "octocat")
    ).confirmed

    first = await _start(sessions, "U0MONA", "mona", now=NOW + timedelta(minutes=1))
    second = await _start(sessions, "U0MONA", "monalisa", now=NOW + timedelta(minutes=2))
    assert first != second
    assert await _linked(sessions, "U0MONA") == "octocat"
    assert (await _confirm(sessions, first, "mona")).outcome is LinkOutcome.UNKNOWN
    assert (await _confirm(sessions, second, "monalisa")).confirmed
    assert await _linked(sessions, "U0MONA") == "monalisa"
    async with sessions() as session:
        rows = (await session.execute(sa.select(sa.func.count(IdentityLink.id)))).scalar_one()
    assert rows == 1


async def test_a_login_belongs_to_one_slack_user(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    assert (
        await _confirm(sessions, await _start(sessions, "U0OLD", "octocat"), "octocat")
    ).confirmed
    code = await _start(sessions, "U0NEW", "octocat")
    assert await _linked(sessions, "U0OLD") == "octocat"  # until the new one is confirmed
    assert (await _confirm(sessions, code, "OctoCat")).confirmed
    assert await _linked(sessions, "U0NEW") == "OctoCat"
    assert await _linked(sessions, "U0OLD") is None


async def test_unlink(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    assert (
        await _confirm(sessions, await _start(sessions, "U0MONA", "octocat"), "octocat")
    ).confirmed
    pending = await _start(sessions, "U0MONA", "monalisa")
    async with sessions.begin() as session:
        assert await identities.unlink(session, slack_user="U0MONA") is True
    assert await _linked(sessions, "U0MONA") is None
    assert (await _confirm(sessions, pending, "monalisa")).outcome is LinkOutcome.UNKNOWN
    async with sessions.begin() as session:
        assert await identities.unlink(session, slack_user="U0MONA") is False


async def test_two_requests_at_once_leave_one_row_and_the_last_code(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    codes = await asyncio.gather(*(_start(sessions, "U0MONA", "octocat") for _ in range(4)))
    async with sessions() as session:
        rows = (await session.execute(sa.select(IdentityLink))).scalars().all()
    assert len(rows) == 1
    live = [c for c in codes if identities.code_hash(c) == rows[0].code_hash]
    assert len(live) == 1
    assert (await _confirm(sessions, live[0], "octocat")).confirmed


async def test_a_code_confirms_once_under_a_race(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    code = await _start(sessions, "U0MONA", "octocat")
    results = await asyncio.gather(*(_confirm(sessions, code, "octocat") for _ in range(4)))
    assert sorted(r.outcome for r in results) == [LinkOutcome.CONFIRMED] + [LinkOutcome.UNKNOWN] * 3
