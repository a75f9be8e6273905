"""`deployment_protection_rule`: a GitHub Actions job waits for deploybot to approve its
deploy to an environment that has this App as a custom protection rule.

The run is answered in the thread of the pull request whose head it deploys, else in the
thread of the commit (as `/deploy owner/repo@ref` does), with the rules of any deploy
(`bot.pipeline.gates`). The run to answer is the one `deployment_callback_url` names; the
commit is the deployment's. A payload without them can never be answered: it is kept as a
dead letter (`MalformedDelivery`), like any other delivery its handler cannot read.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import conductor
from bot.github.context import Context, parsed, thread_channel
from bot.github.payloads import (
    InstallationRef,
    Lenient,
    PullRequest,
    PullRequestEvent,
    RepositoryRef,
    User,
    parse,
)
from bot.github.pulls import record
from bot.pipeline.config import Pipeline
from bot.pipeline.models import Person
from bot.pipeline.policy import identify
from bot.worker import Apply, MalformedDelivery
from integrations.github_app import Commit, GitHubError
from storage import releases

_CALLBACK = re.compile(r"/actions/runs/(\d+)/deployment_protection_rule/?$")


class GatedDeployment(Lenient):
    id: int
    sha: str
    ref: str = ""
    environment: str = ""
    creator: User | None = None


class ProtectionRuleEvent(Lenient):
    action: str
    environment: str | None = None
    deployment_callback_url: str | None = None
    deployment: GatedDeployment
    pull_requests: list[PullRequest] = []
    repository: RepositoryRef
    sender: User | None = None
    installation: InstallationRef | None = None

    @property
    def run_id(self) -> int | None:
        """The waiting workflow run: `.../actions/runs/{run_id}/deployment_protection_rule`."""
        found = _CALLBACK.search(self.deployment_callback_url or "")
        return int(found.group(1)) if found else None

    @property
    def requester(self) -> str | None:
        """Who started the run; for a run a bot started, who created the deployment."""
        people = [u for u in (self.sender, self.deployment.creator) if u is not None]
        person = next((u for u in people if not u.is_bot), people[0] if people else None)
        return person.login if person is not None else None


async def handle(context: Context, payload: dict[str, Any]) -> Apply | None:
    if payload.get("action") != "requested":
        return None
    event = parse(ProtectionRuleEvent, payload)
    if event.installation is None:
        return None
    run_id = event.run_id
    environment = event.environment or event.deployment.environment
    sha = event.deployment.sha
    if run_id is None or not environment or not sha:
        raise MalformedDelivery(
            "deployment_protection_rule needs a deployment_callback_url naming a workflow run, "
            "an environment and the deployment's sha"
        )
    text = await context.read_pipeline(event.installation.id, event.repository)
    pull = next(
        (p for p in event.pull_requests if p.head.sha == sha and p.pr_state == "open"), None
    )
    commit = None
    if pull is None:
        owner, name = event.repository.owner_and_name
        try:
            commit = await context.client(event.installation.id).get_commit(
                owner=owner, repo=name, ref=sha
            )
        except GitHubError:
            commit = None  # only the thread's title: the deployment's ref will do

    async def apply(session: AsyncSession) -> None:
        await _answer(
            session,
            context=context,
            event=event,
            pipeline_text=text,
            pull=pull,
            commit=commit,
            run_id=run_id,
            environment=environment,
        )

    return apply


async def _answer(
    session: AsyncSession,
    *,
    context: Context,
    event: ProtectionRuleEvent,
    pipeline_text: str,
    pull: PullRequest | None,
    commit: Commit | None,
    run_id: int,
    environment: str,
) -> None:
    deployment = event.deployment
    repository = event.repository.full_name
    pipeline = parsed(pipeline_text)
    if pull is not None:
        await record(
            session,
            context=context,
            event=PullRequestEvent(
                action="deployment_protection_rule",
                pull_request=pull,
                repository=event.repository,
                installation=event.installation,
            ),
            pipeline_text=pipeline_text,
        )
        release = await releases.release_for_pr(
            session, repository=repository, pr_number=pull.number
        )
        assert release is not None
    else:
        ref = deployment.ref if deployment.ref and deployment.ref != deployment.sha else None
        release = await releases.release_for_commit(
            session,
            repository=repository,
            commit_sha=deployment.sha,
            title=commit.title if commit else f"Deploy of {ref or deployment.sha[:7]}",
            author=(commit.author_login if commit else None) or event.requester or "",
            head_ref=ref,
            commit_url=commit.html_url if commit else None,
        )
        release.pipeline = pipeline_text
        release.thread_channel = release.thread_channel or await thread_channel(
            session, repository=repository, pipeline=pipeline
        )
        await session.flush()
    login = event.requester
    requester = (
        identify(pipeline, github=login) if isinstance(pipeline, Pipeline) else Person(github=login)
    )
    await conductor.gate(
        session,
        release=release,
        environment=environment,
        requester=requester,
        run_id=run_id,
        deployment_id=deployment.id,
        now=context.clock(),
    )
