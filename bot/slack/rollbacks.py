"""Rolling back from Slack: a modal to choose the commit, then the rollback itself.

`/deploy rollback owner/repo env` and a board's **Roll back** button both open the modal
(`open`) listing the commits that succeeded in the environment; its submission (`choose`)
checks the person and the choice again, then rolls back through the conductor. The modal
is the confirmation, so the button has no dialog of its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import conductor
from bot.github.context import github_good_commits
from bot.pipeline.commands import Command, CommandError, Verb, parse_slash, render_slash
from bot.slack import modals
from bot.slack.access import Access, Invocation, Refused, Reply, Repo, quietly
from bot.slack.blocks import escape
from bot.slack.writes import SharedWrites
from integrations.github_app import GitHubError
from storage import audit, releases
from storage.models import utcnow

log = structlog.get_logger(__name__)

_CANDIDATES = 10  # a modal's radio buttons offer at most ten


class Rollbacks:
    """The rollback modal's flow, for commands and buttons."""

    def __init__(
        self,
        *,
        access: Access,
        sessions: async_sessionmaker[AsyncSession],
        on_change: Callable[[], None],
        clock: Callable[[], datetime] = utcnow,
        readers: async_sessionmaker[AsyncSession] | None = None,
        writes: SharedWrites | None = None,
    ) -> None:
        self.access = access
        self.sessions = sessions
        self.readers = readers or sessions  # for reads only: on SQLite they take no write lock
        self.writes = writes or SharedWrites(sessions)
        self.on_change = on_change
        self.clock = clock

    async def targets(self, repo: Repo, environment: str) -> list[modals.Candidate]:
        """Commits that succeeded in the environment, other than the one running there,
        newest first: deploybot's records, then GitHub's deployment history. A rollback
        skips approvals, so where approvals are needed it only goes back to commits that
        passed them here: GitHub's history (anyone with write access can add to it) is not
        offered there."""
        async with self.readers() as session:
            current = await releases.current_in_environment(
                session, repository=repo.full_name, environment=environment
            )
            running = current[1].commit_sha if current else ""
            ours = await releases.good_commits(
                session,
                repository=repo.full_name,
                environment=environment,
                other_than=running,
                limit=_CANDIDATES,
            )
        found = [
            modals.Candidate(sha=r.commit_sha, when=r.created_at, by=r.requested_by.label)
            for r in ours
        ]
        env = repo.pipeline.environment(environment)
        if len(found) < _CANDIDATES and env is not None and env.approvals == 0:
            theirs = await github_good_commits(
                repo.client,
                repository=repo.full_name,
                environment=environment,
                other_than=running,
                limit=_CANDIDATES,
            )
            known = {c.sha for c in found}
            found += [
                modals.Candidate(sha=d.sha, when=d.created_at, source="GitHub")
                for d in theirs
                if d.sha not in known
            ]
        return found[:_CANDIDATES]

    async def start(
        self,
        client: AsyncWebClient,
        *,
        user: str,
        trigger_id: str,
        repository: str,
        environment: str,
        meta: dict[str, Any],
        on_refused: Callable[[AsyncSession], Awaitable[None]] | None = None,
    ) -> str | None:
        """The Rollback button: check who asks, then open the modal. Returns the refusal
        (mrkdwn, outside text escaped) when it cannot; `on_refused` writes more in the
        transaction that records it."""
        command = Command(Verb.ROLLBACK, repository=repository, environment=environment)
        inv = Invocation(text=render_slash(command), user=user, channel=meta.get("channel") or "")
        try:
            repo = await self.access.repo(command, inv)
            env = self.access.environment(repo, command)
            await self.open(client, trigger_id=trigger_id, repo=repo, env=env, meta=meta)
        except Refused as refusal:
            text = str(refusal)

            async def record(session: AsyncSession) -> None:
                audit.record(
                    session,
                    actor=user,
                    source="slack",
                    action="button rollback",
                    repository=repository,
                    environment=environment,
                    detail={"refused": text},
                )
                if on_refused is not None:
                    await on_refused(session)

            await self.writes.run(record)
            return text
        except GitHubError as exc:
            log.warning("rollback: GitHub failed", error=str(exc))
            return "GitHub did not answer deploybot just now; try again in a minute."
        return None

    async def open(
        self,
        client: AsyncWebClient,
        *,
        trigger_id: str,
        repo: Repo,
        env: str,
        meta: dict[str, Any],
    ) -> None:
        """Open the rollback modal within Slack's 3 seconds: with the candidates if they are
        found within a second, else saying it is looking and filling them in after."""
        async with self.readers() as session:
            current = await releases.current_in_environment(
                session, repository=repo.full_name, environment=env
            )
        if current is None:
            raise Refused(f"Nothing has been deployed to `{escape(env)}` yet.")
        if meta.get("release") not in (None, current[0].release_id):
            raise Refused(  # a button on an older thread
                f"`{escape(env)}` now runs {current[1].commit_sha[:7]} from another "
                "pull request; roll back from that thread or with `/deploy rollback`."
            )
        meta = {**meta, "repository": repo.full_name, "environment": env}
        looking = asyncio.ensure_future(self.targets(repo, env))
        done, _ = await asyncio.wait({looking}, timeout=1.0)

        def view(candidates: list[modals.Candidate] | None) -> dict[str, Any]:
            return modals.rollback(
                repository=repo.full_name,
                environment=env,
                current_sha=current[1].commit_sha,
                candidates=candidates,
                meta=meta,
            )

        try:
            opened = await client.views_open(
                trigger_id=trigger_id, view=view(looking.result() if done else None)
            )
        except SlackApiError as exc:
            looking.cancel()
            if exc.response.get("error") in {"expired_trigger_id", "invalid_trigger_id"}:
                raise Refused(
                    "Slack's time to open the rollback dialog ran out; click or run it again."
                ) from None
            raise
        if not done:
            await client.views_update(view_id=opened["view"]["id"], view=view(await looking))

    async def choose(
        self,
        *,
        user: str,
        meta: dict[str, Any],
        target: str,
        client: AsyncWebClient,
    ) -> None:
        """A submitted rollback modal: check again, then roll back to the chosen commit. From
        a thread's button (`release` in `meta`) the thread tells the story; from `/deploy
        rollback` the channel hears it too."""
        from_release = meta.get("release") if isinstance(meta.get("release"), int) else None
        inv = Invocation(
            text=render_slash(
                Command(
                    Verb.ROLLBACK,
                    repository=str(meta.get("repository", "")),
                    environment=str(meta.get("environment", "")),
                )
            ),
            user=user,
            channel=str(meta.get("channel") or ""),
            response_url=meta.get("response_url"),
        )
        reply = Reply(inv, client, self.access.home)
        try:
            command = parse_slash(inv.text)
            if isinstance(command, CommandError):
                raise Refused(escape(command.text))
            repo = await self.access.repo(command, inv)
            env = self.access.environment(repo, command)
            allowed = {c.sha for c in await self.targets(repo, env)}
            if target not in allowed:
                raise Refused(
                    f"{escape(target[:7])} is not a commit that succeeded in `{escape(env)}`; "
                    "open the rollback dialog again."
                )
            async with self.sessions.begin() as session:
                outcome, _ = await conductor.rollback(
                    session,
                    source="slack",
                    repository=repo.full_name,
                    environment=env,
                    requester=repo.person,
                    now=self.clock(),
                    from_release=from_release,
                    target_sha=target,
                )
            if outcome.refused:
                raise Refused(escape(outcome.refusal or ""), audited=True)
            self.on_change()
            if from_release is None:
                await reply.public(
                    f"<@{user}> is rolling `{escape(env)}` of {escape(repo.full_name)} back "
                    f"to {target[:7]}."
                )
        except Refused as refusal:
            await quietly(reply.private(str(refusal)))
        except GitHubError as exc:
            log.warning("rollback: GitHub failed", error=str(exc))
            await quietly(reply.private("GitHub did not answer deploybot; try again."))
        except Exception:
            log.exception("rollback failed")
            await quietly(reply.private("Something went wrong in deploybot; it was logged."))
