"""`pull_request`: each pull request gets one Slack thread whose parent is its status board."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import conductor
from bot.github.context import Context, parsed, thread_channel
from bot.github.payloads import PullRequestEvent, parse
from bot.pipeline import machine
from bot.pipeline.config import Pipeline, PipelineError
from bot.pipeline.effects import RefreshBoard, ThreadReply
from bot.worker import Apply
from storage import releases

ACTIONS = {"opened", "reopened", "synchronize", "closed", "edited", "ready_for_review"}


async def handle(context: Context, payload: dict[str, Any]) -> Apply | None:
    if payload.get("action") not in ACTIONS:
        return None
    event = parse(PullRequestEvent, payload)
    if event.installation is None:
        return None
    text = await context.read_pipeline(event.installation.id, event.repository)

    async def apply(session: AsyncSession) -> None:
        await record(session, context=context, event=event, pipeline_text=text)

    return apply


async def record(
    session: AsyncSession, *, context: Context, event: PullRequestEvent, pipeline_text: str
) -> None:
    """Bring the PR's release and board up to date and say what happened in its thread."""
    pr = event.pull_request
    pipeline = parsed(pipeline_text)
    on_merge = machine.deployed_on_merge(pipeline) if isinstance(pipeline, Pipeline) else None
    commit = pr.head.sha
    if on_merge is not None and pr.pr_state == "merged":
        # Deployed from the default branch: what ships is the merge commit, not the head.
        known = await releases.release_for_pr(
            session, repository=event.repository.full_name, pr_number=pr.number
        )
        commit = pr.merge_commit_sha or (known.commit_sha if known else pr.head.sha)
    release, _ = await releases.upsert_pull_request(
        session,
        repository=event.repository.full_name,
        pr_number=pr.number,
        head_sha=commit,
        title=pr.title,
        author=pr.user.login if pr.user else "",
        head_ref=pr.head.ref,
        pr_url=pr.html_url,
        pr_state=pr.pr_state,
    )
    release.pipeline = pipeline_text
    if release.thread_channel is None:
        release.thread_channel = await thread_channel(
            session, repository=release.repository, pipeline=pipeline
        )
    await session.flush()
    assert release.id is not None
    # The title is part of the cause: a second edit of it on the same commit must refresh too.
    title = hashlib.sha256(pr.title.encode()).hexdigest()[:8]
    cause = f"pr:{event.action}:{pr.head.sha}:{pr.pr_state}:{title}"
    effects: list[Any] = [RefreshBoard(release.id, cause)]
    await conductor.head_moved(session, release=release)
    if event.action == "synchronize":
        effects.append(
            ThreadReply(release.id, f"push:{pr.head.sha}", f"New commit {pr.head.sha[:7]} pushed.")
        )
    if event.action == "closed":
        verb = "merged" if pr.pr_state == "merged" else "closed without merging"
        effects.append(ThreadReply(release.id, cause, f"The pull request was {verb}."))
    for effect in effects:
        await releases.enqueue(session, effect)
    if isinstance(pipeline, PipelineError):
        outcome = conductor.pipeline_problem(release, pipeline, context.config_path)
        for effect in outcome.effects:
            await releases.enqueue(session, effect)
    elif on_merge is not None and event.action == "closed" and pr.pr_state == "merged":
        await conductor.deploy_on_its_own(
            session, release=release, environment=on_merge, now=context.clock(), source="github"
        )
