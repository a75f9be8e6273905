"""Button clicks on deploybot's messages: Approve, Reject, Promote, Rollback, Pause, Resume.

Approve and Reject are decided in the database (two clicks at once give one deployment);
Promote deploys the thread's commit to the next environment, or moves a canary that holds
at a manual step on; Pause and Resume stop and continue a rollout's timers; Rollback opens
a modal to pick the commit to go back to. A click whose moment has passed (decided,
superseded, moved on) is answered ephemerally and the board is drawn again, so the buttons
match the state. The drawing is queued in the transaction that records the refusal, so a
refused click costs one write, and a burst of stale clicks on one board draws it once: the
drawing shows the release as it is when it is made, and a change after it queues its own.
The writes of clicks that come together share transactions (`SharedWrites`).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import structlog
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import conductor
from bot.github.checks import required_verdict
from bot.github.context import approver_facts, parsed
from bot.identity import person_for_slack
from bot.pipeline.commands import Command, Verb
from bot.pipeline.config import Environment, GitHubTeam, PipelineError
from bot.pipeline.effects import RefreshBoard
from bot.pipeline.machine import Outcome
from bot.pipeline.policy import may_approve, needs_admin_check, teams_to_check
from bot.slack.access import Access, Invocation, Refused
from bot.slack.blocks import escape
from bot.slack.rollbacks import Rollbacks
from bot.slack.writes import SharedWrites
from integrations.github_app import GitHubApp, GitHubError
from storage import audit, installations, releases
from storage.models import Release as ReleaseRow
from storage.models import utcnow

log = structlog.get_logger(__name__)
_DIGITS = re.compile(r"[0-9]{1,18}")  # str.isdigit() takes "²", which int() refuses
# Stale clicks on one board within this many seconds of the one that queued its drawing
# need none of their own.
REDRAW_SECONDS = 2.0
_REDRAWS_QUEUED = "slack-redraws-queued"  # in `session.info`: boards queued in a transaction


def rollout_id_of(value: str) -> int | None:
    """The rollout a button's opaque value names (`rollout:<id>`, `step:<id>`)."""
    kind, _, number = value.partition(":")
    return int(number) if kind in {"rollout", "step"} and _DIGITS.fullmatch(number) else None


@dataclass(frozen=True)
class Clicked:
    """What of a block_actions payload the work after the ack needs: a click waiting for its
    turn keeps this, not the clicked message with all its blocks."""

    user: str
    channel: str | None
    home: bool  # on the App Home tab, not in a channel
    trigger_id: str

    @classmethod
    def of(cls, body: dict[str, Any]) -> Clicked:
        return cls(
            user=body["user"]["id"],
            channel=(body.get("channel") or {}).get("id")
            or (body.get("container") or {}).get("channel_id"),
            home=(body.get("view") or {}).get("type") == "home",
            trigger_id=str(body.get("trigger_id") or ""),
        )


@dataclass
class _ClickState:
    """One click being worked out. `redraw`: refused in a channel, the clicked thread's board
    is drawn again (a Home tab is drawn again instead); `redraw_tried`: that was seen to in
    the refusal's transaction; `redrawn`: the board whose drawing it queued there."""

    user: str
    action: dict[str, Any]
    stamp: str
    redraw: bool
    redraw_tried: bool = False
    redrawn: int | None = None

    @property
    def value(self) -> str:
        return str(self.action.get("value", ""))


@dataclass(frozen=True)
class _Ask:
    """What GitHub must say before a decision: which of the environment's approver teams
    `login` is in, and whether they administer the repository."""

    installation_id: int
    repository: str
    env: Environment
    login: str


@dataclass(frozen=True)
class _Facts:
    question: _Ask
    member_of: Collection[GitHubTeam]
    is_admin: bool


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
        readers: async_sessionmaker[AsyncSession] | None = None,
        writes: SharedWrites | None = None,
    ) -> None:
        self.sessions = sessions
        self.readers = readers or sessions  # for reads only: on SQLite they take no write lock
        self.writes = writes or SharedWrites(sessions)
        self.github = github
        self.on_change = on_change
        self.access = access
        self.rollbacks = rollbacks
        self._redrawn_at: dict[int, float] = {}  # release id -> when a stale click queued it

    async def click(self, clicked: Clicked, action: dict[str, Any], client: AsyncWebClient) -> None:
        user, channel, home = clicked.user, clicked.channel, clicked.home
        click = _ClickState(
            user,
            action,
            stamp=str(action.get("action_ts") or utcnow().timestamp()),
            redraw=bool(channel) and not home,
        )
        action_id = action.get("action_id")
        if action_id == "rollback":
            refusal = await self._rollback(click, clicked, client)
        elif action_id in {"pause", "resume"} or click.value.startswith("step:"):
            refusal = await self._steer(click)
        elif action_id == "promote":
            refusal = await self._promote(click)
        else:
            refusal = await self._decide(click)
        if home:
            # A home tab cannot show an ephemeral message: draw it again, saying why.
            await client.views_publish(user_id=user, view=await self.access.home(user, refusal))
            return
        if refusal is not None and channel:
            await client.chat_postEphemeral(channel=channel, user=user, text=refusal)
            if not click.redraw_tried:  # refused without a write (GitHub did not answer, ...)
                await self.writes.run(lambda session: self._redraw(session, click))
                self._committed(click)

    def _committed(self, click: _ClickState, *, changed: bool = False) -> None:
        """The click's writes are committed: wake the dispatcher for what they queued (the
        core's effects when `changed`, a drawing of the board), and remember the drawing."""
        if click.redrawn is not None:
            now = time.monotonic()
            if len(self._redrawn_at) > 1000:  # forget the boards nobody clicked for a while
                self._redrawn_at = {
                    k: at for k, at in self._redrawn_at.items() if now - at < REDRAW_SECONDS
                }
            self._redrawn_at[click.redrawn] = now
        if changed or click.redrawn is not None:
            self.on_change()

    async def _redraw(
        self, session: AsyncSession, click: _ClickState, release_id: int | None = None
    ) -> None:
        """Queue the clicked thread's board to be drawn again, in `session`'s transaction (the
        one that records the refusal), so stale buttons give way to current ones; unless a
        stale click queued it a moment ago. Made again if that transaction is (see
        `SharedWrites`); the caller calls `_committed` once it is committed."""
        click.redraw_tried, click.redrawn = True, None
        if not click.redraw:
            return
        if release_id is None:
            release_id = _release_id_of(click.value)
        if release_id is None:
            rollout_id = rollout_id_of(click.value)
            found = (
                await releases.get_rollout(session, rollout_id=rollout_id)
                if rollout_id is not None
                else None
            )
            release_id = found[0].release_id if found else None
        if release_id is None:
            return
        last = self._redrawn_at.get(release_id)
        if last is not None and time.monotonic() - last < REDRAW_SECONDS:
            return
        queued: set[int] = session.info.setdefault(_REDRAWS_QUEUED, set())
        if release_id in queued:  # by another click in this shared transaction
            return
        if await releases.get_release(session, release_id=release_id) is None:
            return
        await releases.enqueue(session, RefreshBoard(release_id, f"stale-click:{click.stamp}"))
        queued.add(release_id)
        click.redrawn = release_id

    async def _decide(self, click: _ClickState) -> str | None:
        refusal = await self._decision(click)
        return escape(refusal) if refusal is not None else None

    async def _decision(self, click: _ClickState) -> str | None:
        """Approve or reject, decided in one shared write (`_decide_in`); GitHub is asked
        between two of them only when the environment's approvers need it (a team, the
        repository's admins)."""
        rollout_id = rollout_id_of(click.value)
        if rollout_id is None:
            return await self._refused(click, "That button is not one of deploybot's.")
        facts: _Facts | None = None
        for _ in range(3):  # the question may change under us (a new pipeline file): ask again
            answer = await self.writes.run(
                lambda session, facts=facts: self._decide_in(session, click, rollout_id, facts)
            )
            if not isinstance(answer, _Ask):
                break
            try:
                member_of, is_admin = await approver_facts(
                    self.github.installation(answer.installation_id),
                    repository=answer.repository,
                    env=answer.env,
                    login=answer.login,
                )
            except GitHubError as exc:
                log.warning("approver lookup failed", error=str(exc))
                return "GitHub could not confirm who may approve; try again in a minute."
            facts = _Facts(answer, member_of, is_admin)
        else:
            return "GitHub could not confirm who may approve; try again in a minute."
        if isinstance(answer, str):
            self._committed(click)
            return answer
        self._committed(click, changed=bool(answer.effects))
        return answer.refusal

    async def _decide_in(
        self, session: AsyncSession, click: _ClickState, rollout_id: int, facts: _Facts | None
    ) -> Outcome | str | _Ask:
        """A decision on the rollout, in a shared write: its outcome; or a refusal made before
        the rules are asked; or the question for GitHub it needs answered first (`facts`)."""
        found = await releases.get_rollout(session, rollout_id=rollout_id)
        release = (
            await releases.get_release(session, release_id=found[0].release_id) if found else None
        )
        if found is None or release is None:
            return await self._record_refusal(
                session, click, "That deploy request no longer exists."
            )
        pipeline = parsed(release.pipeline)
        if isinstance(pipeline, PipelineError):
            return "The repository's pipeline file is invalid; fix it before approving."
        person = await person_for_slack(session, pipeline=pipeline, slack_user=click.user)
        env = pipeline.environment(found[1].environment)
        member_of: Collection[GitHubTeam] = frozenset()
        is_admin = False
        if (
            env is not None
            and person.github
            and (teams_to_check(env) or needs_admin_check(env))
            and (
                installation_id := await installations.installation_for(
                    session, full_name=release.repository
                )
            )
            is not None
        ):
            question = _Ask(installation_id, release.repository, env, person.github)
            if facts is None or facts.question != question:
                return question
            member_of, is_admin = facts.member_of, facts.is_admin
        outcome = await conductor.decide(
            session,
            source="slack",
            release=release,
            rollout_id=rollout_id,
            person=person,
            approve=click.action.get("action_id") == "approve",
            authorised=env is not None
            and may_approve(env, person, member_of=member_of, is_admin=is_admin),
            now=utcnow(),
        )
        if outcome.refusal is not None:
            await self._redraw(session, click, release_id=release.id)
        return outcome

    async def _rollback(
        self, click: _ClickState, clicked: Clicked, client: AsyncWebClient
    ) -> str | None:
        """Open the rollback modal (`rollback:<release>:<env>`) for someone who may roll back."""
        found = await self._release_of(click.action, "rollback")
        if isinstance(found, str):
            return await self._refused(click, escape(found))
        release, environment = found

        async def redraw(session: AsyncSession) -> None:
            await self._redraw(session, click, release_id=release.id)

        refusal = await self.rollbacks.start(
            client,
            user=click.user,
            trigger_id=clicked.trigger_id,
            repository=release.repository,
            environment=environment,
            meta={"channel": clicked.channel, "release": release.id},
            on_refused=redraw,
        )
        self._committed(click)
        return refusal

    async def _promote(self, click: _ClickState) -> str | None:
        """Deploy the thread's commit to the next environment (`promote:<release>:<env>`), for
        someone deploybot knows on GitHub who may write to the repository."""
        found = await self._release_of(click.action, "promote")
        if isinstance(found, str):
            return await self._refused(click, escape(found))
        release, environment = found
        command = Command(Verb.DEPLOY, repository=release.repository, environment=environment)
        try:
            repo = await self.access.repo(command, Invocation(text="", user=click.user, channel=""))
        except Refused as refusal:
            return await self._refused(click, str(refusal), release.repository, environment)
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

        async def deploy(session: AsyncSession) -> Outcome | str:
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
            if outcome.refusal is not None:
                await self._redraw(session, click, release_id=fresh.id)
            return outcome

        outcome = await self.writes.run(deploy)
        if isinstance(outcome, str):
            return outcome
        self._committed(click, changed=bool(outcome.effects))
        return escape(outcome.refusal) if outcome.refusal is not None else None

    async def _steer(self, click: _ClickState) -> str | None:
        """Pause or resume a rollout (`rollout:<id>`), or promote a canary that holds at a
        manual step (`step:<id>`), for someone who may write to the repository."""
        kind, _, number = click.value.partition(":")
        steer = {"pause": "pause", "resume": "resume"}.get(str(click.action.get("action_id")))
        expected = "step" if steer is None else "rollout"
        if kind != expected or not _DIGITS.fullmatch(number):
            return await self._refused(click, "That button is not one of deploybot's.")
        async with self.readers() as session:
            found = await releases.get_rollout(session, rollout_id=int(number))
        if found is None:
            return await self._refused(click, "That rollout no longer exists.")
        rollout = found[1]
        verb = Verb.PAUSE if steer == "pause" else Verb.RESUME if steer else Verb.DEPLOY
        command = Command(verb, repository=rollout.repository, environment=rollout.environment)
        try:
            repo = await self.access.repo(command, Invocation(text="", user=click.user, channel=""))
        except Refused as refusal:
            return await self._refused(click, str(refusal), rollout.repository, rollout.environment)
        except GitHubError as exc:
            log.warning("permission lookup failed", error=str(exc))
            return "GitHub could not confirm your permission; try again in a minute."

        async def steer_it(session: AsyncSession) -> Outcome:
            outcome = await conductor.steer(
                session,
                source="slack",
                action=steer or "promote",
                person=repo.person,
                now=utcnow(),
                rollout_id=rollout.id,
            )
            if outcome.refusal is not None:
                await self._redraw(session, click, release_id=found[0].release_id)
            return outcome

        outcome = await self.writes.run(steer_it)
        self._committed(click, changed=bool(outcome.effects))
        return escape(outcome.refusal) if outcome.refusal is not None else None

    async def _refused(
        self,
        click: _ClickState,
        text: str,
        repository: str | None = None,
        environment: str | None = None,
    ) -> str:
        """A click refused before the rules are asked (no permission, a button that is not
        deploybot's or whose moment is gone): audited, then said to the clicker."""
        await self.writes.run(
            lambda session: self._record_refusal(session, click, text, repository, environment)
        )
        self._committed(click)
        return text

    async def _record_refusal(
        self,
        session: AsyncSession,
        click: _ClickState,
        text: str,
        repository: str | None = None,
        environment: str | None = None,
    ) -> str:
        audit.record(
            session,
            actor=click.user,
            source="slack",
            action=f"button {click.action.get('action_id')}",
            repository=repository,
            environment=environment,
            detail={"refused": text, "value": click.value[:200]},
        )
        await self._redraw(session, click)
        return text

    async def _release_of(self, action: dict[str, Any], kind: str) -> tuple[ReleaseRow, str] | str:
        value = str(action.get("value", ""))
        release_id = _release_id_of(value)
        environment = value.split(":", 2)[2] if release_id is not None else ""
        if release_id is None or not value.startswith(f"{kind}:") or not environment:
            return "That button is not one of deploybot's."
        async with self.readers() as session:
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
