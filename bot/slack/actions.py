"""Button clicks on deploybot's messages: Approve, Reject, Promote, Rollback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import conductor
from bot.github.context import approver_facts
from bot.pipeline.config import PipelineError
from bot.pipeline.policy import identify, may_approve
from bot.slack.blocks import escape
from integrations.github_app import GitHubApp, GitHubError
from storage import installations, releases
from storage.models import utcnow

log = structlog.get_logger(__name__)


def rollout_id_of(value: str) -> int | None:
    """The rollout a button's opaque value names (`rollout:<id>`)."""
    kind, _, number = value.partition(":")
    return int(number) if kind == "rollout" and number.isdigit() else None


class ButtonActions:
    """Decides each click in the database (two clicks at once give one deployment) and tells
    the clicker, ephemerally, when it changed nothing and why."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        github: GitHubApp,
        on_change: Callable[[], None],
    ) -> None:
        self.sessions = sessions
        self.github = github
        self.on_change = on_change

    async def click(
        self, *, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        if action.get("action_id") in {"rollback", "promote"}:
            refusal = await self._release_action(user, action)
        else:
            refusal = await self._decide(user, action)
        if refusal is not None and channel:
            await client.chat_postEphemeral(channel=channel, user=user, text=escape(refusal))

    async def _decide(self, user: str, action: dict[str, Any]) -> str | None:
        rollout_id = rollout_id_of(str(action.get("value", "")))
        if rollout_id is None:
            return "That button is not one of deploybot's."
        async with self.sessions() as session:
            found = await releases.get_rollout(session, rollout_id=rollout_id)
            release = (
                await releases.get_release(session, release_id=found[0].release_id)
                if found
                else None
            )
            installation_id = (
                await installations.installation_for(session, full_name=release.repository)
                if release
                else None
            )
        if found is None or release is None:
            return "That deploy request no longer exists."
        try:
            pipeline = conductor.pipeline_of(release)
        except PipelineError:
            return "The repository's pipeline file is invalid; fix it before approving."
        env = pipeline.environment(found[1].environment)
        person = identify(pipeline, slack=user)
        member_of, is_admin = frozenset(), False
        if env is not None and installation_id is not None and person.github:
            try:
                member_of, is_admin = await approver_facts(
                    self.github.installation(installation_id),
                    repository=release.repository,
                    env=env,
                    login=person.github,
                )
            except GitHubError as exc:
                log.warning("approver lookup failed", error=str(exc))
                return "GitHub could not confirm who may approve; try again in a minute."
        authorised = env is not None and may_approve(
            env, person, member_of=member_of, is_admin=is_admin
        )
        async with self.sessions.begin() as session:
            fresh = await releases.get_release(session, release_id=release.id or 0)
            assert fresh is not None
            outcome = await conductor.decide(
                session,
                release=fresh,
                rollout_id=rollout_id,
                person=person,
                approve=action.get("action_id") == "approve",
                authorised=authorised,
                now=utcnow(),
            )
        if outcome.effects:
            self.on_change()
        return outcome.refusal

    async def _release_action(self, user: str, action: dict[str, Any]) -> str | None:
        """Promote (`promote:<release>:<env>`) or roll back (`rollback:<release>:<env>`), for
        someone whose GitHub login the pipeline file knows and who may write to the repo."""
        kind, _, rest = str(action.get("value", "")).partition(":")
        release_id, _, environment = rest.partition(":")
        if kind != action.get("action_id") or not release_id.isdigit() or not environment:
            return "That button is not one of deploybot's."
        async with self.sessions() as session:
            release = await releases.get_release(session, release_id=int(release_id))
            installation_id = (
                await installations.installation_for(session, full_name=release.repository)
                if release is not None
                else None
            )
        if release is None or installation_id is None:
            return "That repository is no longer deployed by deploybot."
        try:
            pipeline = conductor.pipeline_of(release)
        except PipelineError:
            return "The repository's pipeline file is invalid; fix it first."
        person = identify(pipeline, slack=user)
        if not person.github:
            return (
                "deploybot does not know your GitHub login, so it cannot check your permission. "
                "Ask for it to be added under `users:` in the pipeline file."
            )
        owner, name = release.repository.split("/", 1)
        try:
            permission = await self.github.installation(installation_id).get_permission(
                owner=owner, repo=name, username=person.github
            )
        except GitHubError as exc:
            log.warning("permission lookup failed", error=str(exc))
            return "GitHub could not confirm your permission; try again in a minute."
        if permission not in {"admin", "maintain", "write"}:
            return f"This needs write permission on {release.repository}."
        async with self.sessions.begin() as session:
            if kind == "rollback":
                outcome, _ = await conductor.rollback(
                    session,
                    repository=release.repository,
                    environment=environment,
                    requester=person,
                    now=utcnow(),
                    from_release=int(release_id),
                )
            else:
                fresh = await releases.get_release(session, release_id=int(release_id))
                assert fresh is not None
                outcome = await conductor.deploy(
                    session, release=fresh, environment=environment, requester=person, now=utcnow()
                )
        if outcome.effects:
            self.on_change()
        return outcome.refusal
