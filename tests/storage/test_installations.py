"""Installations and their repositories, as GitHub's installation events describe them."""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from storage import db, installations
from storage.installations import RepositoryRef
from storage.models import Repository


async def _repositories(sessions) -> dict[int, tuple[str, bool, int | None]]:
    async with sessions() as session:
        rows = (await session.execute(sa.select(Repository))).scalars().all()
    return {r.id: (r.full_name, r.removed, r.installation_id) for r in rows}


async def test_grant_move_and_remove(engine: AsyncEngine) -> None:
    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        for installation_id in (1, 2):
            await installations.upsert_installation(
                session,
                installation_id=installation_id,
                account_login=f"org{installation_id}",
                account_type="Organization",
            )
        await installations.add_repositories(
            session,
            installation_id=1,
            repositories=[RepositoryRef(10, "org1/api"), RepositoryRef(11, "org1/web")],
        )
    async with sessions.begin() as session:
        await installations.add_repositories(
            session, installation_id=2, repositories=[RepositoryRef(11, "org2/web")]
        )
        await installations.remove_repositories(session, installation_id=1, repository_ids=[10])
    assert await _repositories(sessions) == {
        10: ("org1/api", True, 1),
        11: ("org2/web", False, 2),
    }


async def test_a_new_repository_may_take_an_old_name(engine: AsyncEngine) -> None:
    """GitHub lets a new repository reuse a deleted (or renamed-away) one's name."""
    sessions = db.session_factory(engine)
    async with sessions.begin() as session:
        await installations.upsert_installation(
            session, installation_id=1, account_login="org", account_type="Organization"
        )
        await installations.add_repositories(
            session, installation_id=1, repositories=[RepositoryRef(10, "org/api")]
        )
    async with sessions.begin() as session:
        await installations.add_repositories(
            session, installation_id=1, repositories=[RepositoryRef(99, "org/api")]
        )
    assert await _repositories(sessions) == {
        10: ("org/api#10", True, 1),
        99: ("org/api", False, 1),
    }
