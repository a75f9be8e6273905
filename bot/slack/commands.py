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

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot import conductor
from bot.github.context import github_good_commits, parsed, thread_channel
from bot.identity import person_for_slack
from bot.pipeline import locks as lock_rules
from bot.pipeline.commands import (
    SLACK_USAGE,
    Command,
    CommandError,
    Flag,
    Verb,
    parse_slash,
    render_slash,
)
from bot.pipeline.config import DEFAULT_PIPELINE, Pipeline, PipelineError
from bot.pipeline.models import Person
from bot.pipeline.policy import needs_confirmation, permits
from bot.slack import modals
from bot.slack.blocks import escape
from bot.slack.home import home_for, status_message
from integrations.github_app import (
    GitHubApp,
    GitHubError,
    GitHubNotFound,
    GitHubValidationFailed,
    InstallationClient,
)
from storage import identities, installations, locks, releases, subscriptions
from storage.models import utcnow
from storage.overview import RepositoryOverview, environments_of

log = structlog.get_logger(__name__)

_NEEDS = {
    Verb.SUBSCRIBE: "admin",
    Verb.UNSUBSCRIBE: "admin",
    Verb.DEPLOY: "write",
    Verb.ROLLBACK: "write",
    Verb.LOCK: "write",
    Verb.UNLOCK: "write",
    Verb.STATUS: "read",
}
_LATER = {
    Verb.FREEZE: "Freezes arrive with deploy windows",
    Verb.UNFREEZE: "Freezes arrive with deploy windows",
    Verb.PAUSE: "Pausing arrives with canary rollouts",
    Verb.RESUME: "Pausing arrives with canary rollouts",
}
_CANDIDATES = 10
_READ_CACHE_SECONDS = 300


@dataclass(frozen=True)
class Invocation:
    """One `/deploy` as Slack sent it (or as a confirmation modal carried it back)."""

    text: str
    user: str
    channel: str
    response_url: str | None = None
    trigger_id: str | None = None
    confirmed: bool = False
    expect: str | None = None  # what the person confirmed (a commit, a lock), checked again

    @classmethod
    def from_command(cls, command: dict[str, Any]) -> Invocation:
        return cls(
            text=str(command.get("text") or ""),
            user=str(command.get("user_id") or ""),
            channel=str(command.get("channel_id") or ""),
            response_url=command.get("response_url"),
            trigger_id=command.get("trigger_id"),
        )

    def meta(self, expect: str) -> dict[str, Any]:
        """What a confirmation modal must carry back to run this again, and what it showed."""
        return {
            "text": self.text,
            "channel": self.channel,
            "response_url": self.response_url,
            "expect": expect,
        }

    @classmethod
    def confirmed_from(cls, meta: dict[str, Any], *, user: str) -> Invocation | None:
        if not isinstance(meta.get("text"), str) or not isinstance(meta.get("channel"), str):
            return None
        return cls(
            text=meta["text"],
            user=user,
            channel=meta["channel"],
            response_url=meta.get("response_url"),
            confirmed=True,
            expect=str(meta.get("expect") or ""),
        )


Home = Callable[[str, str | None], Awaitable[dict[str, Any]]]


class Reply:
    """Answers to one invocation: through its `response_url` (works in any channel the
    command was typed in, bot invited or not), else through the Web API, else (a click on
    the Home tab) by drawing the tab again with the answer at the top."""

    def __init__(self, invocation: Invocation, client: AsyncWebClient, home: Home) -> None:
        self.invocation = invocation
        self.client = client
        self.home = home

    async def private(self, text: str, **extra: Any) -> None:
        await self._send(text, "ephemeral", extra)

    async def public(self, text: str, **extra: Any) -> None:
        await self._send(text, "in_channel", extra)

    async def _send(self, text: str, response_type: str, extra: dict[str, Any]) -> None:
        inv = self.invocation
        if inv.response_url:
            await AsyncRespond(response_url=inv.response_url)(
                text=text, response_type=response_type, **extra
            )
        elif not inv.channel:
            view = await self.home(inv.user, text)
            await self.client.views_publish(user_id=inv.user, view=view)
        elif response_type == "ephemeral":
            await self.client.chat_postEphemeral(channel=inv.channel, user=inv.user, text=text)
        else:
            await self.client.chat_postMessage(channel=inv.channel, text=text)


@dataclass(frozen=True)
class _Repo:
    """An installed repository as one command sees it, and who is asking."""

    full_name: str
    client: InstallationClient
    default_branch: str
    pipeline: Pipeline
    pipeline_text: str
    person: Person
    permission: str

    @property
    def owner_and_name(self) -> tuple[str, str]:
        owner, name = self.full_name.split("/", 1)
        return owner, name


class _Refused(Exception):
    """A command that cannot run; the message is mrkdwn, outside text already escaped."""


def usage_of(command: Command) -> str:
    """The usage line of a command's verb, from the parser's own error for its bare form."""
    error = parse_slash(command.verb.value if command.verb is not Verb.DEPLOY else "a/b")
    return escape(error.usage if isinstance(error, CommandError) else SLACK_USAGE)


class SlashCommands:
    """Runs `/deploy` subcommands against the database, GitHub and the pipeline core."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        github: GitHubApp,
        on_change: Callable[[], None],
        config_path: str = ".github/deploybot.yml",
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.sessions = sessions
        self.github = github
        self.on_change = on_change
        self.config_path = config_path
        self.clock = clock
        self._readable: dict[tuple[str, str], tuple[bool, float]] = {}

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
        reply = Reply(invocation, client, self.home)
        command = parse_slash(invocation.text)
        try:
            if isinstance(command, CommandError):
                raise _Refused(escape(command.text))
            await self._dispatch(command, invocation, reply, client)
        except _Refused as refusal:
            await self._try(reply.private(str(refusal)))
        except GitHubError as exc:
            log.warning("slash command: GitHub failed", error=str(exc))
            await self._try(
                reply.private("GitHub did not answer deploybot just now; try again in a minute.")
            )
        except Exception:
            log.exception("slash command failed")
            await self._try(reply.private("Something went wrong in deploybot; it was logged."))

    async def _try(self, sending: Awaitable[Any]) -> None:
        try:
            await sending
        except Exception as exc:  # the person cannot be told; the log can
            log.warning("could not answer a slash command", error=type(exc).__name__)

    async def _dispatch(
        self, command: Command, inv: Invocation, reply: Reply, client: AsyncWebClient
    ) -> None:
        if command.verb is Verb.HELP:
            await reply.private(escape(SLACK_USAGE))
        elif command.verb is Verb.LINK:
            await self._link(command, inv, reply)
        elif command.verb in _LATER:
            raise _Refused(
                f"`/deploy {command.verb.value}` is not available yet: {_LATER[command.verb]}."
            )
        else:
            repo = await self._repo(command, inv)
            handler = {
                Verb.SUBSCRIBE: self._subscribe,
                Verb.UNSUBSCRIBE: self._unsubscribe,
                Verb.STATUS: self._status,
                Verb.DEPLOY: self._deploy,
                Verb.ROLLBACK: self._rollback,
                Verb.LOCK: self._lock,
                Verb.UNLOCK: self._unlock,
            }[command.verb]
            await handler(command, inv, reply, client, repo)

    # --- what every repository command needs ------------------------------------------

    async def _repo(self, command: Command, inv: Invocation) -> _Repo:
        assert command.repository is not None
        async with self.sessions() as session:
            row = await installations.find_repository(session, name=command.repository)
        if row is None or row.installation_id is None:
            raise _Refused(
                f"deploybot is not installed on `{escape(command.repository)}`, or cannot see "
                "it. Install the GitHub App on that repository first."
            )
        client = self.github.installation(row.installation_id)
        owner, name = row.full_name.split("/", 1)
        text = (
            await client.get_file(
                owner=owner, repo=name, path=self.config_path, ref=row.default_branch
            )
            or ""
        )
        pipeline = parsed(text)
        if isinstance(pipeline, PipelineError):
            raise _Refused(
                f"`{self.config_path}` on `{escape(row.default_branch)}` of "
                f"{escape(row.full_name)} is invalid, so deploybot does nothing there:\n"
                f"{escape(str(pipeline))}"
            )
        async with self.sessions() as session:
            person = await person_for_slack(session, pipeline=pipeline, slack_user=inv.user)
        need = _NEEDS[command.verb]
        if person.github is None:
            raise _Refused(
                f"`/deploy {command.verb.value}` needs {need} permission on "
                f"{escape(row.full_name)}, and deploybot does not know your GitHub login. "
                "Link it with `/deploy link &lt;github-login&gt;` (you confirm it on GitHub), "
                "or ask for it to be added under `users:` in the pipeline file."
            )
        permission = await client.get_permission(owner=owner, repo=name, username=person.github)
        if not permits(permission, need):
            raise _Refused(
                f"`/deploy {command.verb.value}` needs {need} permission on "
                f"{escape(row.full_name)}; {escape(person.github)} has `{escape(permission)}`."
            )
        return _Repo(
            full_name=row.full_name,
            client=client,
            default_branch=row.default_branch,
            pipeline=pipeline,
            pipeline_text=text,
            person=person,
            permission=permission,
        )

    def _environment(self, repo: _Repo, command: Command) -> str:
        env = repo.pipeline.environment(command.environment or "")
        if env is None:
            names = ", ".join(f"`{e.name}`" for e in repo.pipeline.environments)
            raise _Refused(
                f"`{escape(command.environment or '')}` is not an environment of "
                f"{escape(repo.full_name)}. Choose one of {names}.\n{usage_of(command)}"
            )
        return env.name

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
            raise _Refused("This needs a confirmation, and Slack sent no way to ask for one.")
        view = modals.confirm(title=title, text=text, verb=verb, meta=inv.meta(expect))
        try:
            await client.views_open(trigger_id=inv.trigger_id, view=view)
        except SlackApiError as exc:
            if exc.response.get("error") in {"expired_trigger_id", "invalid_trigger_id"}:
                raise _Refused(
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
        self, command: Command, inv: Invocation, reply: Reply, _c: AsyncWebClient, repo: _Repo
    ) -> None:
        if repo.pipeline.slack is not None:
            raise _Refused(
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
        self, command: Command, inv: Invocation, reply: Reply, _c: AsyncWebClient, repo: _Repo
    ) -> None:
        async with self.sessions.begin() as session:
            previous = await subscriptions.unsubscribe(session, repository=repo.full_name)
        if previous is None:
            raise _Refused(f"No channel is subscribed to {escape(repo.full_name)}.")
        where = "this channel" if previous == inv.channel else f"<#{escape(previous)}>"
        await reply.public(
            f"<@{inv.user}> unsubscribed {where} from *{escape(repo.full_name)}*: new pull "
            "requests get no thread until a channel subscribes again."
        )

    async def _status(
        self, command: Command, inv: Invocation, reply: Reply, _c: AsyncWebClient, repo: _Repo
    ) -> None:
        async with self.sessions() as session:
            overview = await environments_of(session, repository=repo.full_name, now=self.clock())
        message = status_message(overview)
        await reply.private(message.text, blocks=message.blocks)

    async def _deploy(
        self, command: Command, inv: Invocation, reply: Reply, client: AsyncWebClient, repo: _Repo
    ) -> None:
        env = self._environment(repo, command)
        unsupported = sorted(f.option for f in command.flags & {Flag.QUEUE, Flag.WAIT})
        if unsupported:
            raise _Refused(
                f"{', '.join(f'`{u}`' for u in unsupported)} is not available yet: nothing was "
                "deployed. Run the command without it once the environment is free."
            )
        force = Flag.FORCE in command.flags
        if force and repo.permission != "admin":
            raise _Refused(
                f"`--force` overrides ordering rules, windows and locks, so it needs admin "
                f"permission on {escape(repo.full_name)}; {escape(repo.person.github or '')} "
                f"has `{repo.permission}`."
            )
        ref = command.ref or repo.default_branch
        owner, name = repo.owner_and_name
        try:
            commit = await repo.client.get_commit(owner=owner, repo=name, ref=ref)
        except (GitHubValidationFailed, GitHubNotFound):
            raise _Refused(
                f"`{escape(ref)}` is not a branch, tag or commit of {escape(repo.full_name)}."
            ) from None
        what = f"{escape(repo.full_name)}@{escape(ref)} ({commit.sha[:7]})"
        if inv.confirmed and inv.expect != commit.sha:
            raise _Refused(
                f"`{escape(ref)}` moved to {commit.sha[:7]} after you confirmed "
                f"{escape((inv.expect or '')[:7])}, so nothing was deployed. Run the command "
                "again to deploy what it is now."
            )
        if Flag.DRY_RUN in command.flags:
            await reply.private(f"Dry run, nothing deployed: {what} would go to `{env}`.")
            return
        if not inv.confirmed and (force or needs_confirmation(repo.pipeline, env)):
            forced = " overriding ordering rules, windows and locks" if force else ""
            await self._confirm(
                client,
                inv,
                title=f"Deploy to {env}",
                text=f"Deploy {what} to `{escape(env)}`{forced}?",
                verb="Deploy",
                expect=commit.sha,
            )
            return
        async with self.sessions.begin() as session:
            channel = await thread_channel(
                session, repository=repo.full_name, pipeline=repo.pipeline
            )
            if channel is None:
                raise _Refused(
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
                release=release,
                environment=env,
                requester=repo.person,
                now=self.clock(),
                force=force,
            )
        if outcome.refused:
            raise _Refused(escape(outcome.refusal or ""))
        self.on_change()
        await reply.public(
            f"<@{inv.user}> asked to deploy {what} to `{escape(env)}`; the thread in "
            f"<#{escape(channel)}> follows it."
        )

    async def _rollback(
        self, command: Command, inv: Invocation, reply: Reply, client: AsyncWebClient, repo: _Repo
    ) -> None:
        env = self._environment(repo, command)
        if command.flags & {Flag.QUEUE}:
            raise _Refused("`--queue` is not available yet; rollbacks never wait anyway.")
        if Flag.DRY_RUN in command.flags:
            target = await self.targets(repo, env)
            what = f"back to {target[0].sha[:7]}" if target else "nowhere: nothing to go back to"
            await reply.private(f"Dry run, nothing rolled back: `{escape(env)}` would go {what}.")
            return
        if not inv.trigger_id:
            raise _Refused("Slack sent no way to open the rollback dialog; try again.")
        await self.open_rollback(
            client,
            trigger_id=inv.trigger_id,
            repo=repo,
            env=env,
            meta={"channel": inv.channel, "response_url": inv.response_url},
        )

    async def _lock(
        self, command: Command, inv: Invocation, reply: Reply, _c: AsyncWebClient, repo: _Repo
    ) -> None:
        env = self._environment(repo, command)
        now = self.clock()
        async with self.sessions.begin() as session:
            decision = await conductor.lock(
                session,
                repository=repo.full_name,
                pipeline=repo.pipeline,
                environment=env,
                person=repo.person,
                reason=command.reason,
                now=now,
            )
        if decision.refused:
            raise _Refused(escape(decision.refusal or ""))
        await reply.public(f"{escape(repo.full_name)}: {escape(decision.announcement)}")

    async def _unlock(
        self, command: Command, inv: Invocation, reply: Reply, client: AsyncWebClient, repo: _Repo
    ) -> None:
        env = self._environment(repo, command)
        now = self.clock()
        async with self.sessions() as session:
            existing = await locks.get(session, repository=repo.full_name, environment=env)
        shown = lock_rules.describe(existing) if existing is not None else ""
        if inv.confirmed and inv.expect != shown:
            raise _Refused(
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
                raise _Refused(escape(decision.refusal or ""))
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
                repository=repo.full_name,
                pipeline=repo.pipeline,
                environment=env,
                person=repo.person,
                is_admin=repo.permission == "admin",
                now=now,
            )
        if decision.refused:
            raise _Refused(escape(decision.refusal or ""))
        await reply.public(f"{escape(repo.full_name)}: {escape(decision.announcement)}")

    # --- rollback targets (also for the Rollback button) -------------------------------

    async def targets(self, repo: _Repo, environment: str) -> list[modals.Candidate]:
        """Commits that succeeded in the environment, other than the one running there,
        newest first: deploybot's records, then GitHub's deployment history. A rollback
        skips approvals, so where approvals are needed it only goes back to commits that
        passed them here: GitHub's history (anyone with write access can add to it) is not
        offered there."""
        async with self.sessions() as session:
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

    async def start_rollback(
        self,
        client: AsyncWebClient,
        *,
        user: str,
        trigger_id: str,
        repository: str,
        environment: str,
        meta: dict[str, Any],
    ) -> str | None:
        """The Rollback button: check who asks, then open the modal. Returns the refusal
        (mrkdwn, outside text escaped) when it cannot."""
        command = Command(Verb.ROLLBACK, repository=repository, environment=environment)
        inv = Invocation(text=render_slash(command), user=user, channel=meta.get("channel") or "")
        try:
            repo = await self._repo(command, inv)
            env = self._environment(repo, command)
            await self.open_rollback(client, trigger_id=trigger_id, repo=repo, env=env, meta=meta)
        except _Refused as refusal:
            return str(refusal)
        except GitHubError as exc:
            log.warning("rollback: GitHub failed", error=str(exc))
            return "GitHub did not answer deploybot just now; try again in a minute."
        return None

    async def open_rollback(
        self,
        client: AsyncWebClient,
        *,
        trigger_id: str,
        repo: _Repo,
        env: str,
        meta: dict[str, Any],
    ) -> None:
        """Open the rollback modal within Slack's 3 seconds: with the candidates if they are
        found within a second, else saying it is looking and filling them in after."""
        async with self.sessions() as session:
            current = await releases.current_in_environment(
                session, repository=repo.full_name, environment=env
            )
        if current is None:
            raise _Refused(f"Nothing has been deployed to `{escape(env)}` yet.")
        if meta.get("release") not in (None, current[0].release_id):
            raise _Refused(  # a button on an older thread
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
                raise _Refused(
                    "Slack's time to open the rollback dialog ran out; click or run it again."
                ) from None
            raise
        if not done:
            await client.views_update(view_id=opened["view"]["id"], view=view(await looking))

    async def roll_back_to(
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
        reply = Reply(inv, client, self.home)
        try:
            command = parse_slash(inv.text)
            if isinstance(command, CommandError):
                raise _Refused(escape(command.text))
            repo = await self._repo(command, inv)
            env = self._environment(repo, command)
            allowed = {c.sha for c in await self.targets(repo, env)}
            if target not in allowed:
                raise _Refused(
                    f"{escape(target[:7])} is not a commit that succeeded in `{escape(env)}`; "
                    "open the rollback dialog again."
                )
            async with self.sessions.begin() as session:
                outcome, _ = await conductor.rollback(
                    session,
                    repository=repo.full_name,
                    environment=env,
                    requester=repo.person,
                    now=self.clock(),
                    from_release=from_release,
                    target_sha=target,
                )
            if outcome.refused:
                raise _Refused(escape(outcome.refusal or ""))
            self.on_change()
            if from_release is None:
                await reply.public(
                    f"<@{user}> is rolling `{escape(env)}` of {escape(repo.full_name)} back "
                    f"to {target[:7]}."
                )
        except _Refused as refusal:
            await self._try(reply.private(str(refusal)))
        except GitHubError as exc:
            log.warning("rollback: GitHub failed", error=str(exc))
            await self._try(reply.private("GitHub did not answer deploybot; try again."))
        except Exception:
            log.exception("rollback failed")
            await self._try(reply.private("Something went wrong in deploybot; it was logged."))

    # --- the Home tab --------------------------------------------------------------------

    async def home(self, user: str, notice: str | None = None) -> dict[str, Any]:
        """The Home tab for `user`: the repositories they may read on GitHub."""

        async def may_read(overview: RepositoryOverview) -> bool:
            return await self._may_read(user, overview)

        return await home_for(
            self.sessions,
            user=user,
            may_read=may_read,
            notice=f"⚠️ {notice}" if notice else None,
        )

    async def _may_read(self, user: str, overview: RepositoryOverview) -> bool:
        """Whether `user`'s GitHub login (known as for commands) may read the repository;
        remembered for a few minutes, since every Home tab asks for every repository."""
        key = (user, overview.repository)
        now = time.monotonic()
        cached = self._readable.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        allowed = False
        async with self.sessions() as session:
            row = await installations.find_repository(session, name=overview.repository)
            pipeline = overview.pipeline or DEFAULT_PIPELINE
            person = await person_for_slack(session, pipeline=pipeline, slack_user=user)
        if row is not None and row.installation_id is not None and person.github:
            owner, name = row.full_name.split("/", 1)
            try:
                permission = await self.github.installation(row.installation_id).get_permission(
                    owner=owner, repo=name, username=person.github
                )
            except GitHubError as exc:
                log.warning("home tab: permission lookup failed", error=str(exc))
                return False  # not remembered: GitHub may answer next time
            allowed = permits(permission, "read")
        self._readable[key] = (allowed, now + _READ_CACHE_SECONDS)
        return allowed
