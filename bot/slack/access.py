"""Who is asking from Slack, and whether they may: what every Slack request shares.

An `Invocation` is one `/deploy` (or a modal carrying one back); a `Reply` answers it. For a
command on a repository, `Access.repo` finds the installation, reads the pipeline file from
the default branch, works out the person's GitHub login (the file's `users:`, else a
confirmed `/deploy link`) and checks their permission on the repository, or raises `Refused`
with the reason. `Access.home` draws the Home tab with only the repositories the viewer
may read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.web.async_client import AsyncWebClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.github.context import parsed
from bot.identity import person_for_slack, slack_person
from bot.pipeline.commands import SLACK_USAGE, Command, CommandError, Verb, parse_slash
from bot.pipeline.config import DEFAULT_PIPELINE, Pipeline, PipelineError
from bot.pipeline.models import Person
from bot.pipeline.policy import permits
from bot.slack.blocks import escape
from bot.slack.home import home_for
from integrations.github_app import GitHubApp, GitHubError, InstallationClient
from storage import identities, installations
from storage.overview import RepositoryOverview

log = structlog.get_logger(__name__)

# The GitHub role each repository command needs.
_NEEDS = {
    Verb.SUBSCRIBE: "admin",
    Verb.UNSUBSCRIBE: "admin",
    Verb.DEPLOY: "write",
    Verb.ROLLBACK: "write",
    Verb.LOCK: "write",
    Verb.UNLOCK: "write",
    Verb.FREEZE: "admin",
    Verb.UNFREEZE: "admin",
    Verb.STATUS: "read",
    Verb.PAUSE: "write",
    Verb.RESUME: "write",
}
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
class Repo:
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


class Refused(Exception):
    """A command that cannot run; the message is mrkdwn, outside text already escaped.
    `audited`: the rules that refused it already wrote it to the audit log."""

    def __init__(self, message: str, *, audited: bool = False) -> None:
        super().__init__(message)
        self.audited = audited


def usage_of(command: Command) -> str:
    """The usage line of a command's verb, from the parser's own error for its bare form."""
    error = parse_slash(command.verb.value if command.verb is not Verb.DEPLOY else "a/b")
    return escape(error.usage if isinstance(error, CommandError) else SLACK_USAGE)


async def quietly(sending: Awaitable[Any]) -> None:
    """Send an answer; if even that fails, the person cannot be told, but the log can."""
    try:
        await sending
    except Exception as exc:
        log.warning("could not answer in Slack", error=type(exc).__name__)


class Access:
    """Looks up who is asking and checks what they may do, for commands, buttons and the
    Home tab alike."""

    def __init__(
        self,
        *,
        sessions: async_sessionmaker[AsyncSession],
        github: GitHubApp,
        config_path: str = ".github/deploybot.yml",
        readers: async_sessionmaker[AsyncSession] | None = None,
    ) -> None:
        self.sessions = sessions
        self.readers = readers or sessions  # for reads only: on SQLite they take no write lock
        self.github = github
        self.config_path = config_path
        self._readable: dict[tuple[str, str], tuple[bool, float]] = {}

    async def repo(self, command: Command, inv: Invocation) -> Repo:
        """The installed repository a command names, with the person asking, once their
        permission on it is enough for the command; else Refused, saying why."""
        assert command.repository is not None
        async with self.readers() as session:
            row = await installations.find_repository(session, name=command.repository)
            linked = await identities.linked_login(session, slack_user=inv.user)
        if row is None or row.installation_id is None:
            raise Refused(
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
            raise Refused(
                f"`{self.config_path}` on `{escape(row.default_branch)}` of "
                f"{escape(row.full_name)} is invalid, so deploybot does nothing there:\n"
                f"{escape(str(pipeline))}"
            )
        person = slack_person(pipeline, slack_user=inv.user, linked_login=linked)
        need = _NEEDS[command.verb]
        if person.github is None:
            raise Refused(
                f"`/deploy {command.verb.value}` needs {need} permission on "
                f"{escape(row.full_name)}, and deploybot does not know your GitHub login. "
                "Link it with `/deploy link &lt;github-login&gt;` (you confirm it on GitHub), "
                "or ask for it to be added under `users:` in the pipeline file."
            )
        permission = await client.get_permission(owner=owner, repo=name, username=person.github)
        if not permits(permission, need):
            raise Refused(
                f"`/deploy {command.verb.value}` needs {need} permission on "
                f"{escape(row.full_name)}; {escape(person.github)} has `{escape(permission)}`."
            )
        return Repo(
            full_name=row.full_name,
            client=client,
            default_branch=row.default_branch,
            pipeline=pipeline,
            pipeline_text=text,
            person=person,
            permission=permission,
        )

    @staticmethod
    def environment(repo: Repo, command: Command) -> str:
        """The pipeline's name for the command's environment; Refused, listing them, if none."""
        env = repo.pipeline.environment(command.environment or "")
        if env is None:
            names = ", ".join(f"`{e.name}`" for e in repo.pipeline.environments)
            raise Refused(
                f"`{escape(command.environment or '')}` is not an environment of "
                f"{escape(repo.full_name)}. Choose one of {names}.\n{usage_of(command)}"
            )
        return env.name

    async def home(self, user: str, notice: str | None = None) -> dict[str, Any]:
        """The Home tab for `user`: the repositories they may read on GitHub."""

        async def may_read(overview: RepositoryOverview) -> bool:
            return await self.may_read(user, overview)

        return await home_for(
            self.readers,
            user=user,
            may_read=may_read,
            notice=f"⚠️ {notice}" if notice else None,
        )

    async def may_read(self, user: str, overview: RepositoryOverview) -> bool:
        """Whether `user`'s GitHub login (known as for commands) may read the repository;
        remembered for a few minutes, since every Home tab asks for every repository."""
        key = (user, overview.repository)
        now = time.monotonic()
        cached = self._readable.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        allowed = False
        async with self.readers() as session:
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
