"""GitHub deliveries → what deploybot does with them.

Payloads are read leniently: each event names only the fields it uses (pydantic models
that ignore the rest), so GitHub adding fields never breaks a delivery. Events and actions
without a handler are recorded in the inbox as ignored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.worker import MalformedDelivery
from storage import installations
from storage.installations import RepositoryRef


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Account(_Lenient):
    login: str
    type: str = "Organization"


class _Installation(_Lenient):
    id: int
    account: _Account | None = None

    @property
    def owner(self) -> _Account:
        return self.account or _Account(login=str(self.id))


class _Repository(_Lenient):
    id: int
    full_name: str


class InstallationEvent(_Lenient):
    action: str
    installation: _Installation
    repositories: list[_Repository] | None = None


class InstallationRepositoriesEvent(_Lenient):
    action: str
    installation: _Installation
    repositories_added: list[_Repository] = []
    repositories_removed: list[_Repository] = []


Handler = Callable[[AsyncSession, dict[str, Any]], Awaitable[bool]]


Event = TypeVar("Event", bound=_Lenient)


def _parse(model: type[Event], payload: dict[str, Any]) -> Event:
    """The fields `model` names; a payload without them can never be handled."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise MalformedDelivery(str(exc)) from None


async def _on_installation(session: AsyncSession, payload: dict[str, Any]) -> bool:
    event = _parse(InstallationEvent, payload)
    account = event.installation.owner
    await installations.upsert_installation(
        session,
        installation_id=event.installation.id,
        account_login=account.login,
        account_type=account.type,
        suspended=event.action == "suspend",
        removed=event.action == "deleted",
    )
    if event.action == "created" and event.repositories:
        await installations.add_repositories(
            session,
            installation_id=event.installation.id,
            repositories=[RepositoryRef(r.id, r.full_name) for r in event.repositories],
        )
    if event.action == "deleted" and event.repositories:
        await installations.remove_repositories(
            session,
            installation_id=event.installation.id,
            repository_ids=[r.id for r in event.repositories],
        )
    return True


async def _on_installation_repositories(session: AsyncSession, payload: dict[str, Any]) -> bool:
    event = _parse(InstallationRepositoriesEvent, payload)
    account = event.installation.owner
    await installations.upsert_installation(
        session,
        installation_id=event.installation.id,
        account_login=account.login,
        account_type=account.type,
    )
    await installations.add_repositories(
        session,
        installation_id=event.installation.id,
        repositories=[RepositoryRef(r.id, r.full_name) for r in event.repositories_added],
    )
    await installations.remove_repositories(
        session,
        installation_id=event.installation.id,
        repository_ids=[r.id for r in event.repositories_removed],
    )
    return True


async def _on_ping(_session: AsyncSession, _payload: dict[str, Any]) -> bool:
    return True


HANDLERS: dict[str, Handler] = {
    "installation": _on_installation,
    "installation_repositories": _on_installation_repositories,
    "ping": _on_ping,
}


async def handle(session: AsyncSession, *, event: str, payload: dict[str, Any]) -> bool:
    """Act on one delivery inside `session`'s transaction; False when nothing handles it."""
    handler = HANDLERS.get(event)
    if handler is None:
        return False
    return await handler(session, payload)
