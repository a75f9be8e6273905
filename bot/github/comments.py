"""`issue_comment`: commands typed on a pull request (`/deploy stage`, `/approve production`).

The commenter needs write permission. The bot reacts 👀 to every command it takes and
answers a refusal with a comment saying why and what to do instead. The pipeline file is
read from the default branch, never from the pull request's head.

`/deploy link <code>` is the exception: it confirms a Slack user's `/deploy link
<github-login>` and needs no permission, since the comment itself proves its author controls
that GitHub account. Any pull request of a repository deploybot is installed on will do, and
it asks GitHub nothing. Only newly created comments count (a maintainer can edit anyone's
comment), and the code is never echoed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import conductor
from bot.github.checks import required_verdict
from bot.github.context import Context, approver_facts, parsed
from bot.github.payloads import (
    Head,
    IssueCommentEvent,
    PullRequest,
    PullRequestEvent,
    User,
    parse,
)
from bot.github.pulls import record
from bot.pipeline.checks import Verdict
from bot.pipeline.commands import COMMENT_USAGE, Command, CommandError, Flag, Verb, parse_comment
from bot.pipeline.config import GitHubTeam, Pipeline, PipelineError
from bot.pipeline.effects import PullRequestComment, Reaction, ThreadReply
from bot.pipeline.policy import identify, may_approve, may_force, permits
from bot.worker import Apply
from storage import audit, identities, releases
from storage.identities import LinkOutcome

SUPPORTED = {
    Verb.DEPLOY,
    Verb.APPROVE,
    Verb.REJECT,
    Verb.ROLLBACK,
    Verb.HELP,
    Verb.STATUS,
    Verb.LOCK,
    Verb.UNLOCK,
    Verb.PAUSE,
    Verb.RESUME,
}


@dataclass(frozen=True)
class _Facts:
    """What the command's decision needs from GitHub, looked up before the transaction."""

    permission: str
    pull: PullRequest
    pipeline_text: str
    member_of: frozenset[GitHubTeam]
    is_admin: bool
    checks: Verdict | None = None  # the head commit's checks, for a deploy that needs them
    may_force: bool = False  # asked for `--force` and may use it (see `policy.may_force`)


async def handle(context: Context, payload: dict[str, Any]) -> Apply | None:
    if payload.get("action") != "created":
        return None
    event = parse(IssueCommentEvent, payload)
    if event.issue.pull_request is None or event.installation is None:
        return None
    if event.comment.user.is_bot:
        return None  # never answer ourselves or other bots
    command = parse_comment(event.comment.body)
    if command is None:
        return None
    if command.verb is Verb.LINK:
        return _link(context, event, command)
    facts = await _look_up(context, event, command)

    async def apply(session: AsyncSession) -> None:
        await _run(session, context=context, event=event, command=command, facts=facts)

    return apply


async def _look_up(
    context: Context, event: IssueCommentEvent, command: Command | CommandError
) -> _Facts:
    assert event.installation is not None
    client = context.client(event.installation.id)
    owner, name = event.repository.owner_and_name
    login = event.comment.user.login
    permission = await client.get_permission(owner=owner, repo=name, username=login)
    pull = await client.get_pull(owner=owner, repo=name, number=event.issue.number)
    text = await context.read_pipeline(event.installation.id, event.repository)
    member_of: frozenset[GitHubTeam] = frozenset()
    is_admin = False
    pipeline = parsed(text)
    forcing = isinstance(command, Command) and Flag.FORCE in command.flags
    env = (
        pipeline.environment(command.environment)
        if isinstance(command, Command) and isinstance(pipeline, Pipeline) and command.environment
        else None
    )
    if (
        isinstance(command, Command)
        and (command.verb in {Verb.APPROVE, Verb.REJECT} or forcing)
        and env is not None
    ):
        member_of, is_admin = await approver_facts(
            client,
            repository=event.repository.full_name,
            env=env,
            login=login,
            permission=permission,
        )
    forced = (
        forcing
        and env is not None
        and isinstance(pipeline, Pipeline)
        and may_force(
            env,
            identify(pipeline, github=login),
            member_of=member_of,
            is_admin=is_admin or permission == "admin",
        )
    )
    checks = None
    if (
        isinstance(command, Command)
        and command.verb is Verb.DEPLOY
        and Flag.DRY_RUN not in command.flags
        and permits(permission, "write")
    ):
        checks = await required_verdict(
            client,
            pipeline=pipeline,
            environment=command.environment,
            repository=event.repository.full_name,
            sha=pull.head_sha,
        )
    return _Facts(
        permission=permission,
        pull=PullRequest(
            number=pull.number,
            title=pull.title,
            html_url=pull.html_url,
            state=pull.state,
            merged=pull.merged,
            user=User(login=pull.user_login),
            head=Head(sha=pull.head_sha, ref=pull.head_ref),
        ),
        pipeline_text=text,
        member_of=member_of,
        is_admin=is_admin,
        checks=checks,
        may_force=forced,
    )


async def _run(
    session: AsyncSession,
    *,
    context: Context,
    event: IssueCommentEvent,
    command: Command | CommandError,
    facts: _Facts,
) -> None:
    repository = event.repository.full_name
    comment_id = event.comment.id
    login = event.comment.user.login
    await record(
        session,
        context=context,
        event=PullRequestEvent(
            action="commented",
            pull_request=facts.pull,
            repository=event.repository,
            installation=event.installation,
        ),
        pipeline_text=facts.pipeline_text,
    )
    release = await releases.release_for_pr(
        session, repository=repository, pr_number=event.issue.number
    )
    assert release is not None and release.id is not None

    async def answer(text: str) -> None:
        await releases.enqueue(
            session,
            PullRequestComment(repository, event.issue.number, f"answer:{comment_id}", text),
        )

    async def refuse(text: str) -> None:
        """A refusal before the rules are asked (they audit their own): audited here."""
        verb = command.verb.value if isinstance(command, Command) else "deploy"
        audit.record(
            session,
            actor=login,
            source="github",
            action=f"/{verb}",
            repository=repository,
            environment=command.environment if isinstance(command, Command) else None,
            commit_sha=facts.pull.head.sha,
            detail={"refused": text, "comment": event.comment.body.split("\n", 1)[0][:200]},
        )
        await answer(text)

    if isinstance(command, CommandError):
        await refuse(f"@{login} {command.message}\n\n{command.usage}")
        return
    if not permits(facts.permission, "write"):
        await refuse(
            f"@{login} deploy commands need write permission on {repository}; you have "
            f"`{facts.permission}`. Ask a maintainer to run it, or to give you write access."
        )
        return
    await releases.enqueue(session, Reaction(repository, comment_id))
    if command.verb is Verb.HELP:
        await answer(COMMENT_USAGE)
        return
    if command.verb not in SUPPORTED:
        await refuse(
            f"@{login} `/{command.verb.value}` is not available yet. What works today:\n\n"
            f"{COMMENT_USAGE}"
        )
        return
    pipeline = parsed(facts.pipeline_text)
    if isinstance(pipeline, PipelineError):
        return  # pulls.record already explained the broken pipeline file
    if command.verb is Verb.STATUS:
        await answer(await _status(session, release_id=release.id, pipeline=pipeline))
        return
    assert command.environment is not None
    requester = identify(pipeline, github=login)
    now = context.clock()
    if Flag.FORCE in command.flags and not facts.may_force:
        await refuse(
            f"@{login} `--force` is for the approvers of `{command.environment}` and the "
            f"repository's admins, so nothing was done. Ask one of them, or run the command "
            f"without it."
        )
        return
    if command.verb in {Verb.LOCK, Verb.UNLOCK}:
        if command.verb is Verb.LOCK:
            decision = await conductor.lock(
                session,
                source="github",
                repository=repository,
                pipeline=pipeline,
                environment=command.environment,
                person=requester,
                reason=command.reason,
                now=now,
            )
        else:
            decision = await conductor.unlock(
                session,
                source="github",
                repository=repository,
                pipeline=pipeline,
                environment=command.environment,
                person=requester,
                is_admin=facts.permission == "admin",
                now=now,
            )
        if decision.refused:
            await answer(f"@{login} {decision.refusal}")
        else:
            await releases.enqueue(
                session, ThreadReply(release.id, f"lock:{comment_id}", decision.announcement)
            )
        return
    if command.verb in {Verb.PAUSE, Verb.RESUME}:
        outcome = await conductor.steer(
            session,
            source="github",
            action="pause" if command.verb is Verb.PAUSE else "resume",
            person=requester,
            now=now,
            repository=repository,
            environment=command.environment,
        )
    elif command.verb is Verb.ROLLBACK:
        if Flag.QUEUE in command.flags:
            await refuse(f"@{login} rollbacks never wait in the queue; run it without `--queue`.")
            return
        if Flag.DRY_RUN in command.flags:
            await answer(f"@{login} dry run: nothing rolled back.")
            return
        outcome, _ = await conductor.rollback(
            session,
            source="github",
            repository=repository,
            environment=command.environment,
            requester=requester,
            now=now,
        )
    elif command.verb is Verb.DEPLOY:
        if Flag.DRY_RUN in command.flags:
            await answer(f"@{login} dry run: nothing deployed. {_dry_run(pipeline, command)}")
            return
        outcome = await conductor.deploy(
            session,
            source="github",
            release=release,
            environment=command.environment,
            requester=requester,
            now=now,
            force=facts.may_force,
            checks=facts.checks,
            queue=Flag.QUEUE in command.flags,
            wait=Flag.WAIT in command.flags,
        )
    else:
        waiting = await conductor.awaiting_approval(
            session, release=release, environment=command.environment
        )
        env = pipeline.environment(command.environment)
        if waiting is None or env is None:
            await refuse(
                f"@{login} nothing in `{command.environment}` is waiting for approval on this "
                f"pull request."
            )
            return
        authorised = may_approve(
            env,
            requester,
            member_of=facts.member_of,
            is_admin=facts.is_admin,
        )
        outcome = await conductor.decide(
            session,
            source="github",
            release=release,
            rollout_id=waiting.id,
            person=requester,
            approve=command.verb is Verb.APPROVE,
            authorised=authorised,
            now=now,
            reason=command.reason,
        )
    if outcome.refused:
        await answer(f"@{login} {outcome.refusal}")


_NEW_CODE = (
    "Run `/deploy link {login}` in Slack for a new code, then comment `/deploy link <code>` "
    "on any pull request here."
)


def _link(context: Context, event: IssueCommentEvent, command: Command | CommandError) -> Apply:
    """Confirm a pending `/deploy link` with the code the commenter typed."""
    repository, number = event.repository.full_name, event.issue.number
    comment_id, login = event.comment.id, event.comment.user.login
    new_code = _NEW_CODE.format(login=login)

    async def apply(session: AsyncSession) -> None:
        async def answer(text: str) -> None:
            await releases.enqueue(
                session, PullRequestComment(repository, number, f"answer:{comment_id}", text)
            )

        if isinstance(command, CommandError):
            await answer(f"@{login} {command.message}\n\n{command.usage}")
            return
        assert command.code is not None
        result = await identities.confirm_link(
            session,
            code=command.code,
            github_login=login,
            # When it was typed: a backlog in the inbox must not expire a code in time.
            now=event.comment.created_at or context.clock(),
        )
        if result.outcome is LinkOutcome.CONFIRMED:
            await releases.enqueue(session, Reaction(repository, comment_id))
            await answer(
                f"@{login} your Slack account is now linked to this GitHub login: deploys you "
                f"start from Slack act as @{login}, with your permission on each repository. "
                "The code is used up; you can delete this comment."
            )
        elif command.code.lower() == login.lower():
            await answer(
                f"@{login} on a pull request, `/deploy link` takes the code deploybot showed "
                f"you in Slack, not your login. {new_code}"
            )
        elif result.outcome is LinkOutcome.EXPIRED:
            await answer(f"@{login} that link code has expired, so nothing was linked. {new_code}")
        elif result.outcome is LinkOutcome.WRONG_LOGIN:
            await answer(
                f"@{login} that link code was made for a different GitHub login, so it cannot "
                f"link yours. To link @{login}: {_lower_first(new_code)}"
            )
        else:
            await answer(
                f"@{login} that is not a link code deploybot is waiting for (codes work once, "
                f"and asking again replaces the last one), so nothing was linked. {new_code}"
            )

    return apply


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _dry_run(pipeline: Pipeline, command: Command) -> str:
    env = pipeline.environment(command.environment or "")
    if env is None:
        return f"`{command.environment}` is not an environment here."
    if env.approvals:
        return f"It would ask for {env.approvals} approval(s) before deploying to `{env.name}`."
    return f"It would deploy this pull request's head to `{env.name}`."


async def _status(session: AsyncSession, *, release_id: int, pipeline: Pipeline) -> str:
    rollouts = await releases.rollouts_of_release(session, release_id=release_id)
    latest = {r.environment: r for r in rollouts}
    lines = ["| environment | status | commit | by |", "|---|---|---|---|"]
    for env in pipeline.environments:
        rollout = latest.get(env.name)
        if rollout is None:
            lines.append(f"| {env.name} | not deployed | | |")
        else:
            lines.append(
                f"| {env.name} | {rollout.status.value} | `{rollout.commit_sha[:7]}` | "
                f"{rollout.requested_by.label} |"
            )
    return "\n".join(lines)
