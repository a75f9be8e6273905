"""Button clicks on deploybot's messages: Approve, Reject, Promote, Rollback, Pause, Resume.

Approve and Reject are decided in the database (two clicks at once give one deployment);
Promote deploys the thread's commit to the next environment, or moves a canary that holds
at a manual step on; Pause and Resume stop and continue a rollout's timers; Rollback opens
a modal to pick the commit to go back to. A click whose moment has passed (decided,
superseded, moved on) is answered ephemerally and the board is drawn again, so the buttons
match the state.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import structlog
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import conductor
from bot.github.checks import required_verdict
from bot.github.context import approver_facts
from bot.identity import person_for_slack
from bot.pipeline.commands import Command, Verb
from bot.pipeline.config import PipelineError
from bot.pipeline.effects import RefreshBoard
from bot.pipeline.policy import may_approve
from bot.slack.access import Access, Invocation, Refused
from bot.slack.blocks import escape
from bot.slack.rollbacks import Rollbacks
from integrations.github_app import GitHubApp, GitHubError
from storage import audit, installations, releases
from storage.models import Release as ReleaseRow
from storage.models import utcnow

log = structlog.get_logger(__name__)
_DIGITS = re.compile(r"[0-9]{1,18}")  # str.isdigit() takes "²", which int() refuses


def rollout_id_of(value: str) -> int | None:
    """The rollout a button's opaque value names (`rollout:<id>`, `step:<id>`)."""
    kind, _, number = value.partition(":")
    return int(number) if kind in {"rollout", "step"} and _DIGITS.fullmatch(number) else None


class ButtonActions:
    """Decides each click in the database (two clicks at once give one deployment) and tells
    the clicker, ephemerally, when it changed nothing and why."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        github: GitHubApp,
        on_change: Callable[[], None],
        access: Access,
        rollbacks: Rollbacks,
    ) -> None:
        self.sessions = sessions
        self.github = github
        self.on_change = on_change
        self.access = access
        self.rollbacks = rollbacks

    async def click(
        self, *, body: dict[str, Any], action: dict[str, Any], client: AsyncWebClient
    ) -> None:
        user = body["user"]["id"]
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        action_id = action.get("action_id")
        value = str(action.get("value", ""))
        if action_id == "rollback":
            refusal = await self._rollback(user, action, body, client)
        elif action_id in {"pause", "resume"} or value.startswith("step:"):
            refusal = await self._steer(user, action)
        elif action_id == "promote":
            refusal = await self._promote(user, action)
        else:
            refusal = await self._decide(user, action)
        if (body.get("view") or {}).get("type") == "home":
            # A home tab cannot show an ephemeral message: draw it again, saying why.
            await client.views_publish(user_id=user, view=await self.access.home(user, refusal))
            return
        if refusal is not None and channel:
            await client.chat_postEphemeral(channel=channel, user=user, text=refusal)
            await self._refresh(action, stamp=str(action.get("action_ts") or utcnow().timestamp()))

    async def _refresh(self, action: dict[str, Any], *, stamp: str) -> None:
        """Draw the clicked thread's board again, so stale buttons give way to current ones."""
        release_id = _release_id_of(str(action.get("value", "")))
        if release_id is None:
            rollout_id = rollout_id_of(str(action.get("value", "")))
            if rollout_id is None:
                return
            async with self.sessions() as session:
                found = await releases.get_rollout(session, rollout_id=rollout_id)
            release_id = found[0].release_id if found else None
        if release_id is None:
            return
        async with self.sessions.begin() as session:
            if await releases.get_release(session, release_id=release_id) is None:
                return
            await releases.enqueue(session, RefreshBoard(release_id, f"stale-click:{stamp}"))
        self.on_change()

    async def _decide(self, user: str, action: dict[str, Any]) -> str | None:
        refusal = await self._decision(user, action)
        return escape(refusal) if refusal is not None else None

    async def _decision(self, user: str, action: dict[str, Any]) -> str | None:
        rollout_id = rollout_id_of(str(action.get("value", "")))
        if rollout_id is None:
            return await self._refused(user, action, "That button is not one of deploybot's.")
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
            return await self._refused(user, action, "That deploy request no longer exists.")
        try:
            pipeline = conductor.pipeline_of(release)
        except PipelineError:
            return "The repository's pipeline file is invalid; fix it before approving."
        env = pipeline.environment(found[1].environment)
        async with self.sessions() as session:
            person = await person_for_slack(session, pipeline=pipeline, slack_user=user)
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
                source="slack",
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

    async def _rollback(
        self, user: str, action: dict[str, Any], body: dict[str, Any], client: AsyncWebClient
    ) -> str | None:
        """Open the rollback modal (`rollback:<release>:<env>`) for someone who may roll back."""
        found = await self._release_of(action, "rollback")
        if isinstance(found, str):
            return await self._refused(user, action, escape(found))
        release, environment = found
        channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get(
            "channel_id"
        )
        return await self.rollbacks.start(
            client,
            user=user,
            trigger_id=str(body.get("trigger_id") or ""),
            repository=release.repository,
            environment=environment,
            meta={"channel": channel, "release": release.id},
        )

    async def _promote(self, user: str, action: dict[str, Any]) -> str | None:
        """Deploy the thread's commit to the next environment (`promote:<release>:<env>`), for
        someone deploybot knows on GitHub who may write to the repository."""
        found = await self._release_of(action, "promote")
        if isinstance(found, str):
            return await self._refused(user, action, escape(found))
        release, environment = found
        command = Command(Verb.DEPLOY, repository=release.repository, environment=environment)
        try:
            repo = await self.access.repo(command, Invocation(text="", user=user, channel=""))
        except Refused as refusal:
            return await self._refused(user, action, str(refusal), release.repository, environment)
        except GitHubError as exc:
            log.warning("permission lookup failed", error=str(exc))
            return "GitHub could not confirm your permission; try again in a minute."
        try:
            checks = await required_verdict(
                repo.client,
                pipeline=repo.pipeline,
                environment=environment,
                repository=release.repository,
                sha=release.commit_sha,
            )
        except GitHubError as exc:
            log.warning("checks lookup failed", error=str(exc))
            return "GitHub could not say whether the commit's checks are green; try again soon."
        async with self.sessions.begin() as session:
            fresh = await releases.get_release(session, release_id=release.id or 0)
            assert fresh is not None
            if checks is not None and fresh.commit_sha != release.commit_sha:
                return "The thread's commit changed just now; click Promote again."
            fresh.pipeline = repo.pipeline_text  # as read from the default branch just now
            outcome = await conductor.deploy(
                session,
                source="slack",
                release=fresh,
                environment=environment,
                requester=repo.person,
                now=utcnow(),
                checks=checks,
            )
        if outcome.effects:
            self.on_change()
        return escape(outcome.refusal) if outcome.refusal is not None else None

    async def _steer(self, user: str, action: dict[str, Any]) -> str | None:
        """Pause or resume a rollout (`rollout:<id>`), or promote a canary that holds at a
        manual step (`step:<id>`), for someone who may write to the repository."""
        value = str(action.get("value", ""))
        kind, _, number = value.partition(":")
        steer = {"pause": "pause", "resume": "resume"}.get(str(action.get("action_id")))
        expected = "step" if steer is None else "rollout"
        if kind != expected or not _DIGITS.fullmatch(number):
            return await self._refused(user, action, "That button is not one of deploybot's.")
        async with self.sessions() as session:
            found = await releases.get_rollout(session, rollout_id=int(number))
        if found is None:
            return await self._refused(user, action, "That rollout no longer exists.")
        rollout = found[1]
        verb = Verb.PAUSE if steer == "pause" else Verb.RESUME if steer else Verb.DEPLOY
        command = Command(verb, repository=rollout.repository, environment=rollout.environment)
        try:
            repo = await self.access.repo(command, Invocation(text="", user=user, channel=""))
        except Refused as refusal:
            return await self._refused(
                user, action, str(refusal), rollout.repository, rollout.environment
            )
        except GitHubError as exc:
            log.warning("permission lookup failed", error=str(exc))
            return "GitHub could not confirm your permission; try again in a minute."
        async with self.sessions.begin() as session:
            outcome = await conductor.steer(
                session,
                source="slack",
                action=steer or "promote",
                person=repo.person,
                now=utcnow(),
                rollout_id=rollout.id,
            )
        if outcome.effects:
            self.on_change()
        return escape(outcome.refusal) if outcome.refusal is not None else None

    async def _refused(
        self,
        user: str,
        action: dict[str, Any],
        text: str,
        repository: str | None = None,
        environment: str | None = None,
    ) -> str:
        """A click refused before the rules are asked (no permission, a button that is not
        deploybot's or whose moment is gone): audited, then said to the clicker."""
        async with self.sessions.begin() as session:
            audit.record(
                session,
                actor=user,
                source="slack",
                action=f"button {action.get('action_id')}",
                repository=repository,
                environment=environment,
                detail={"refused": text, "value": str(action.get("value", ""))[:200]},
            )
        return text

    async def _release_of(self, action: dict[str, Any], kind: str) -> tuple[ReleaseRow, str] | str:
        value = str(action.get("value", ""))
        release_id = _release_id_of(value)
        environment = value.split(":", 2)[2] if release_id is not None else ""
        if release_id is None or not value.startswith(f"{kind}:") or not environment:
            return "That button is not one of deploybot's."
        async with self.sessions() as session:
            release = await releases.get_release(session, release_id=release_id)
        if release is None:
            return "That release no longer exists."
        return release, environment


def _release_id_of(value: str) -> int | None:
    """The release a promote or rollback button names (`<kind>:<release>:<env>`)."""
    kind, _, rest = value.partition(":")
    release_id, _, environment = rest.partition(":")
    if kind not in {"promote", "rollback"} or not _DIGITS.fullmatch(release_id) or not environment:
        return None
    return int(release_id)
