"""The `/deploy` slash command: every subcommand of CONTRACT §5, after Slack's 3-second ack.

`immediate()` answers what needs nothing looked up (help, a malformed command) inside the
ack. Everything else is acknowledged at once and worked out afterwards: the repository
must be installed, the person's GitHub login known (the pipeline file's `users:` or a
confirmed `/deploy link`) and their permission on the repository enough for the
subcommand. Results that concern everyone go to the channel; refusals and errors go only
to the person, saying what was wrong and what to type instead. Production-like actions
and overrides ask for confirmation in a modal first.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import conductor
from bot.github.checks import required_verdict
from bot.github.context import approver_facts, thread_channel
from bot.pipeline import freezes as freeze_rules
from bot.pipeline import locks as lock_rules
from bot.pipeline.commands import (
    SLACK_USAGE,
    Command,
    CommandError,
    Flag,
    Verb,
    parse_slash,
)
from bot.pipeline.policy import may_force, needs_confirmation
from bot.slack import modals
from bot.slack.access import Access, Invocation, Refused, Reply, Repo, quietly
from bot.slack.blocks import escape
from bot.slack.home import status_message
from bot.slack.rollbacks import Rollbacks
from integrations.github_app import (
    GitHubError,
    GitHubNotFound,
    GitHubValidationFailed,
)
from storage import audit, freezes, identities, locks, releases, subscriptions
from storage.models import utcnow
from storage.overview import environments_of

log = structlog.get_logger(__name__)


class SlashCommands:
    """Runs `/deploy` subcommands against the database, GitHub and the pipeline core."""

    def __init__(
        self,
        *,
        access: Access,
        rollbacks: Rollbacks,
        sessions: async_sessionmaker[AsyncSession],
        on_change: Callable[[], None],
        clock: Callable[[], datetime] = utcnow,
        readers: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.access = access
        self.rollbacks = rollbacks
        self.sessions = sessions
        self.readers = readers or sessions  # for reads only: on SQLite they take no write lock
        self.on_change = on_change
        self.clock = clock

    @staticmethod
    def immediate(text: str) -> str | None:
        """The answer that needs nothing looked up (help, a malformed command), for the ack;
        None when the command must be worked out after it."""
        command = parse_slash(text)
        if isinstance(command, CommandError):
            return escape(command.text)
        if command.verb is Verb.HELP:
            return escape(SLACK_USAGE)
        return None

    async def run(self, invocation: Invocation, client: AsyncWebClient) -> None:
        """Work out an acknowledged command and answer it; never raises."""
        reply = Reply(invocation, client, self.access.home)
        command = parse_slash(invocation.text)
        try:
            if isinstance(command, CommandError):
                raise Refused(escape(command.text))
            await self._dispatch(command, invocation, reply, client)
        except Refused as refusal:
            if not refusal.audited:
                await self._audit_refusal(invocation, command, str(refusal))
            await quietly(reply.private(str(refusal)))
        except GitHubError as exc:
            log.warning("slash command: GitHub failed", error=str(exc))
            await quietly(
                reply.private("GitHub did not answer deploybot just now; try again in a minute.")
            )
        except Exception:
            log.exception("slash command failed")
            await quietly(reply.private("Something went wrong in deploybot; it was logged."))

    async def audit_malformed(self, inv: Invocation) -> None:
        """A malformed command, answered in the ack itself: into the audit log after it."""
        command = parse_slash(inv.text)
        if isinstance(command, CommandError):
            await self._audit_refusal(inv, command, escape(command.text))

    async def _audit_refusal(
        self, inv: Invocation, command: Command | CommandError, refusal: str
    ) -> None:
        """A command refused before the rules were asked (no permission, bad usage)."""
        parsed = command if isinstance(command, Command) else None
        try:
            async with self.sessions.begin() as session:
                audit.record(
                    session,
                    actor=inv.user,
                    source="slack",
                    action=f"/deploy {parsed.verb.value}" if parsed else "/deploy",
                    repository=parsed.repository if parsed else None,
                    environment=parsed.environment if parsed else None,
                    detail={"refused": refusal, "text": inv.text},
                )
        except Exception:
            log.exception("could not audit a refused command")

    async def _dispatch(
        self, command: Command, inv: Invocation, reply: Reply, client: AsyncWebClient
    ) -> None:
        if command.verb is Verb.HELP:
            await reply.private(escape(SLACK_USAGE))
        elif command.verb is Verb.LINK:
            await self._link(command, inv, reply)
        else:
            repo = await self.access.repo(command, inv)
            handler = {
                Verb.SUBSCRIBE: self._subscribe,
                Verb.UNSUBSCRIBE: self._unsubscribe,
                Verb.STATUS: self._status,
                Verb.DEPLOY: self._deploy,
                Verb.ROLLBACK: self._rollback,
                Verb.LOCK: self._lock,
                Verb.UNLOCK: self._unlock,
                Verb.FREEZE: self._freeze,
                Verb.UNFREEZE: self._unfreeze,
                Verb.PAUSE: self._steer,
                Verb.RESUME: self._steer,
            }[command.verb]
            await handler(command, inv, reply, client, repo)

    # --- what every repository command needs ------------------------------------------

    async def _confirm(
        self,
        client: AsyncWebClient,
        inv: Invocation,
        *,
        title: str,
        text: str,
        verb: str,
        expect: str,
    ) -> None:
        """Ask in a modal; the submission runs the same command again, confirmed, and it is
        refused if what was shown (`expect`) has changed meanwhile."""
        if not inv.trigger_id:
            raise Refused("This needs a confirmation, and Slack sent no way to ask for one.")
        view = modals.confirm(title=title, text=text, verb=verb, meta=inv.meta(expect))
        try:
            await client.views_open(trigger_id=inv.trigger_id, view=view)
        except SlackApiError as exc:
            if exc.response.get("error") in {"expired_trigger_id", "invalid_trigger_id"}:
                raise Refused(
                    "Slack's time to ask for a confirmation ran out; run the command again."
                ) from None
            raise

    # --- subcommands -------------------------------------------------------------------

    async def _link(self, command: Command, inv: Invocation, reply: Reply) -> None:
        assert command.login is not None
        async with self.sessions.begin() as session:
            code = await identities.start_link(
                session, slack_user=inv.user, github_login=command.login, now=self.clock()
            )
        await reply.private(
            f"To prove that you are *{escape(command.login)}* on GitHub, sign in to GitHub as "
            f"{escape(command.login)} and comment\n`/deploy link {code}`\non any pull request "
            "of a repository where deploybot is installed, within the hour. Until then "
            "deploybot goes on acting on what it knew before. Keep the code to yourself."
        )

    async def _subscribe(
        self, command: Command, inv: Invocation, reply: Reply, _c: AsyncWebClient, repo: Repo
    ) -> None:
        if repo.pipeline.slack is not None:
            raise Refused(
                f"The pipeline file of {escape(repo.full_name)} sends its threads to "
                f"<#{escape(repo.pipeline.slack.channel)}> (`slack.channel`); change or remove "
                "that line to use a subscription instead."
            )
        assert repo.person.github is not None
        async with self.sessions.begin() as session:
            replaced = await subscriptions.subscribe(
                session,
                repository=repo.full_name,
                channel=inv.channel,
                slack_user=inv.user,
                github_login=repo.person.github,
            )
        moved = f" (it moved here from <#{escape(replaced)}>)" if replaced else ""
        await reply.public(
            f"<@{inv.user}> subscribed this channel to *{escape(repo.full_name)}*{moved}: "
            "each pull request gets a thread here with its status board. Make sure deploybot "
            "is in this channel (`/invite @deploybot`)."
        )

    async def _unsubscribe(
        self, command: Command, inv: Invocation, reply: Reply, _c: AsyncWebClient, repo: Repo
    ) -> None:
        async with self.sessions.begin() as session:
            previous = await subscriptions.unsubscribe(session, repository=repo.full_name)
        if previous is None:
            raise Refused(f"No channel is subscribed to {escape(repo.full_name)}.")
        where = "this channel" if previous == inv.channel else f"<#{escape(previous)}>"
        await reply.public(
            f"<@{inv.user}> unsubscribed {where} from *{escape(repo.full_name)}*: new pull "
            "requests get no thread until a channel subscribes again."
        )

    async def _status(
        self, command: Command, inv: Invocation, reply: Reply, _c: AsyncWebClient, repo: Repo
    ) -> None:
        async with self.readers() as session:
            overview = await environments_of(session, repository=repo.full_name, now=self.clock())
        message = status_message(overview)
        await reply.private(message.text, blocks=message.blocks)

    async def _deploy(
        self, command: Command, inv: Invocation, reply: Reply, client: AsyncWebClient, repo: Repo
    ) -> None:
        env = self.access.environment(repo, command)
        force = Flag.FORCE in command.flags
        if force and not await self._may_force(repo, env):
            raise Refused(
                "`--force` overrides ordering rules, windows, freezes, checks and locks, so "
                f"it is for the approvers of `{escape(env)}` and the admins of "
                f"{escape(repo.full_name)}; {escape(repo.person.github or '')} is neither."
            )
        ref = command.ref or repo.default_branch
        owner, name = repo.owner_and_name
        try:
            commit = await repo.client.get_commit(owner=owner, repo=name, ref=ref)
        except (GitHubValidationFailed, GitHubNotFound):
            raise Refused(
                f"`{escape(ref)}` is not a branch, tag or commit of {escape(repo.full_name)}."
            ) from None
        what = f"{escape(repo.full_name)}@{escape(ref)} ({commit.sha[:7]})"
        if inv.confirmed and inv.expect != commit.sha:
            raise Refused(
                f"`{escape(ref)}` moved to {commit.sha[:7]} after you confirmed "
                f"{escape((inv.expect or '')[:7])}, so nothing was deployed. Run the command "
                "again to deploy what it is now."
            )
        if Flag.DRY_RUN in command.flags:
            await reply.private(f"Dry run, nothing deployed: {what} would go to `{env}`.")
            return
        if not inv.confirmed and (force or needs_confirmation(repo.pipeline, env)):
            forced = " overriding ordering rules, windows, freezes and locks" if force else ""
            await self._confirm(
                client,
                inv,
                title=f"Deploy to {env}",
                text=f"Deploy {what} to `{escape(env)}`{forced}?",
                verb="Deploy",
                expect=commit.sha,
            )
            return
        # Looked up before the transaction, also for `--force`: what it overrides is audited.
        checks = await required_verdict(
            repo.client,
            pipeline=repo.pipeline,
            environment=env,
            repository=repo.full_name,
            sha=commit.sha,
        )
        async with self.sessions.begin() as session:
            channel = await thread_channel(
                session, repository=repo.full_name, pipeline=repo.pipeline
            )
            if channel is None:
                raise Refused(
                    f"{escape(repo.full_name)} has no Slack channel for its threads yet: run "
                    f"`/deploy subscribe {escape(repo.full_name)}` in the channel where they "
                    "should go."
                )
            release = await releases.release_for_commit(
                session,
                repository=repo.full_name,
                commit_sha=commit.sha,
                title=commit.title,
                author=commit.author_login or "",
                head_ref=None if commit.sha.startswith(ref.lower()) else ref,
                commit_url=commit.html_url or None,
            )
            release.pipeline = repo.pipeline_text
            release.thread_channel = release.thread_channel or channel
            await session.flush()
            outcome = await conductor.deploy(
                session,
                source="slack",
                release=release,
                environment=env,
                requester=repo.person,
                now=self.clock(),
                force=force,
                checks=checks,
                queue=Flag.QUEUE in command.flags,
                wait=Flag.WAIT in command.flags,
            )
        if outcome.refused:
            raise Refused(escape(outcome.refusal or ""), audited=True)
        self.on_change()
        await reply.public(
            f"<@{inv.user}> asked to deploy {what} to `{escape(env)}`; the thread in "
            f"<#{escape(channel)}> follows it."
        )

    async def _may_force(self, repo: Repo, environment: str) -> bool:
        env = repo.pipeline.environment(environment)
        if env is None:
            return False
        member_of, is_admin = await approver_facts(
            repo.client,
            repository=repo.full_name,
            env=env,
            login=repo.person.github,
            permission=repo.permission,
        )
        return may_force(
            env, repo.person, member_of=member_of, is_admin=is_admin or repo.permission == "admin"
        )

    async def _rollback(
        self, command: Command, inv: Invocation, reply: Reply, client: AsyncWebClient, repo: Repo
    ) -> None:
        env = self.access.environment(repo, command)
        if command.flags & {Flag.QUEUE}:
            raise Refused("`--queue` is not available yet; rollbacks never wait anyway.")
        if Flag.DRY_RUN in command.flags:
            target = await self.rollbacks.targets(repo, env)
            what = f"back to {target[0].sha[:7]}" if target else "nowhere: nothing to go back to"
            await reply.private(f"Dry run, nothing rolled back: `{escape(env)}` would go {what}.")
            return
        if not inv.trigger_id:
            raise Refused("Slack sent no way to open the rollback dialog; try again.")
        await self.rollbacks.open(
            client,
            trigger_id=inv.trigger_id,
            repo=repo,
            env=env,
            meta={"channel": inv.channel, "response_url": inv.response_url},
        )

    async def _lock(
        self, command: Command, inv: Invocation, reply: Reply, _c: AsyncWebClient, repo: Repo
    ) -> None:
        env = self.access.environment(repo, command)
        now = self.clock()
        async with self.sessions.begin() as session:
            decision = await conductor.lock(
                session,
                source="slack",
                repository=repo.full_name,
                pipeline=repo.pipeline,
                environment=env,
                person=repo.person,
                reason=command.reason,
                now=now,
            )
        if decision.refused:
            raise Refused(escape(decision.refusal or ""), audited=True)
        await reply.public(f"{escape(repo.full_name)}: {escape(decision.announcement)}")

    async def _unlock(
        self, command: Command, inv: Invocation, reply: Reply, client: AsyncWebClient, repo: Repo
    ) -> None:
        env = self.access.environment(repo, command)
        now = self.clock()
        async with self.readers() as session:
            existing = await locks.get(session, repository=repo.full_name, environment=env)
        shown = lock_rules.describe(existing) if existing is not None else ""
        if inv.confirmed and inv.expect != shown:
            raise Refused(
                f"The lock on `{escape(env)}` changed after you confirmed"
                + (f": it is now {escape(shown)}" if shown else "")
                + ". Nothing was unlocked; run the command again if you still mean it."
            )
        if not inv.confirmed and lock_rules.overrides(existing, repo.person, now):
            decision = lock_rules.release(
                repo.pipeline,
                environment=env,
                person=repo.person,
                existing=existing,
                is_admin=repo.permission == "admin",
                now=now,
            )
            if decision.refused:
                raise Refused(escape(decision.refusal or ""))
            assert existing is not None
            await self._confirm(
                client,
                inv,
                title=f"Unlock {env}",
                text=f"`{escape(env)}` of {escape(repo.full_name)} is "
                f"{escape(shown)}. Take the lock away?",
                verb="Unlock",
                expect=shown,
            )
            return
        async with self.sessions.begin() as session:
            decision = await conductor.unlock(
                session,
                source="slack",
                repository=repo.full_name,
                pipeline=repo.pipeline,
                environment=env,
                person=repo.person,
                is_admin=repo.permission == "admin",
                now=now,
            )
        if decision.refused:
            raise Refused(escape(decision.refusal or ""), audited=True)
        await reply.public(f"{escape(repo.full_name)}: {escape(decision.announcement)}")

    async def _freeze(
        self, command: Command, inv: Invocation, reply: Reply, _c: AsyncWebClient, repo: Repo
    ) -> None:
        now = self.clock()
        until = freeze_rules.parse_until(command.until or "", now=now)
        if until.at is None:
            raise Refused(escape(until.error or ""))
        freeze = freeze_rules.Freeze(
            repository=repo.full_name,
            by=repo.person,
            reason=command.reason or "",
            until=until.at,
            since=now,
        )
        async with self.sessions.begin() as session:
            replaced = await freezes.active(session, repository=repo.full_name, now=now)
            await freezes.put(session, freeze)
            audit.record(
                session,
                actor=repo.person.label,
                source="slack",
                action="freeze",
                repository=repo.full_name,
                detail={"until": until.at.isoformat(), "reason": freeze.reason},
            )
        self.on_change()
        await reply.public(escape(freeze_rules.announce(freeze, replaced=replaced)))

    async def _unfreeze(
        self, command: Command, inv: Invocation, reply: Reply, _c: AsyncWebClient, repo: Repo
    ) -> None:
        now = self.clock()
        async with self.sessions.begin() as session:
            lifted = await freezes.lift(session, repository=repo.full_name, now=now)
            if lifted is not None:
                audit.record(
                    session,
                    actor=repo.person.label,
                    source="slack",
                    action="unfreeze",
                    repository=repo.full_name,
                )
        said = freeze_rules.announce_lifted(lifted, repo.person, repo.full_name)
        if said is None:
            raise Refused(f"{escape(repo.full_name)} is not frozen.")
        self.on_change()
        await reply.public(escape(said))

    async def _steer(
        self, command: Command, inv: Invocation, reply: Reply, _c: AsyncWebClient, repo: Repo
    ) -> None:
        env = self.access.environment(repo, command)
        async with self.sessions.begin() as session:
            outcome = await conductor.steer(
                session,
                source="slack",
                action="pause" if command.verb is Verb.PAUSE else "resume",
                person=repo.person,
                now=self.clock(),
                repository=repo.full_name,
                environment=env,
            )
        if outcome.refused:
            raise Refused(escape(outcome.refusal or ""), audited=True)
        self.on_change()
        done = "paused" if command.verb is Verb.PAUSE else "resumed"
        await reply.public(f"<@{inv.user}> {done} `{escape(env)}` of {escape(repo.full_name)}.")
