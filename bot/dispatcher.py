"""The outbox dispatcher: sends each effect to Slack or GitHub, once, with retries.

Network calls happen outside database transactions (a slow Slack must not hold SQLite's
write lock); what an effect produced (a deployment id, a thread's ts) is then recorded in
the same short transaction that marks the effect sent. A deployment is looked up by the
rollout id in its payload before one is created, so a retry after a crash does not deploy
twice.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import conductor
from bot.pipeline import effects
from bot.pipeline.config import PipelineError, parse_pipeline
from bot.pipeline.effects import (
    ApprovalDecided,
    ApprovalRequest,
    CreateDeployment,
    PullRequestComment,
    Reaction,
    RefreshBoard,
    ThreadReply,
)
from bot.pipeline.models import Rollout
from bot.slack import blocks
from bot.slack.board import board_for
from bot.worker import Permanent, QueueWorker
from integrations.github_app import GitHubApp, GitHubNotFound, GitHubValidationFailed
from storage import installations, outbox, releases
from storage.models import OutboxEffect, OutboxStatus
from storage.models import Release as ReleaseRow

# Slack errors that no retry can fix.
_SLACK_PERMANENT = {
    "channel_not_found",
    "not_in_channel",
    "is_archived",
    "invalid_blocks",
    "msg_too_long",
    "invalid_auth",
    "account_inactive",
    "missing_scope",
}


class OutboxDispatcher(QueueWorker):
    """Sends outbox effects; `wake()` after writing effects sends them at once."""

    name = "outbox"

    def __init__(self, *, github: GitHubApp, slack: AsyncWebClient, **kwargs: Any) -> None:
        super().__init__(queue=outbox.QUEUE, **kwargs)
        self.github = github
        self.slack = slack

    def describe(self, item: OutboxEffect) -> dict[str, Any]:
        return {"effect": item.kind, "key": item.idempotency_key}

    def count_failure(self, item: OutboxEffect, *, dead: bool) -> None:
        if self.metrics is not None:
            self.metrics.dispatch_failures.labels(item.kind).inc()
        super().count_failure(item, dead=dead)

    async def on_dead(self, item: OutboxEffect, error: str) -> None:
        if item.kind != CreateDeployment.__name__:
            return
        effect = effects.effect_from(item.kind, item.payload)
        assert isinstance(effect, CreateDeployment)
        async with self.sessions.begin() as session:
            await conductor.abandon(
                session, rollout_id=effect.rollout_id, reason=f"GitHub refused it ({error})"
            )
        self.wake()

    async def complete(self, item: OutboxEffect) -> str:
        effect = effects.effect_from(item.kind, item.payload)
        try:
            if isinstance(effect, CreateDeployment):
                return await self._deploy(item, effect)
            if isinstance(effect, PullRequestComment):
                return await self._comment(item, effect)
            if isinstance(effect, Reaction):
                return await self._react(item, effect)
            return await self._slack(item, effect)
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error in _SLACK_PERMANENT:
                raise Permanent(f"Slack refused: {error}") from None
            raise
        except (GitHubNotFound, GitHubValidationFailed) as exc:
            raise Permanent(str(exc)) from None

    # --- GitHub ----------------------------------------------------------------------

    async def _installation(self, repository: str) -> Any:
        async with self.sessions() as session:
            installation_id = await installations.installation_for(session, full_name=repository)
        if installation_id is None:
            raise Permanent(f"the GitHub App is not installed on {repository}")
        return self.github.installation(installation_id)

    async def _deploy(self, item: OutboxEffect, effect: CreateDeployment) -> str:
        client = await self._installation(effect.repository)
        owner, repo = effect.repository.split("/", 1)
        existing = await client.list_deployments(
            owner=owner, repo=repo, environment=effect.environment, sha=effect.commit_sha
        )
        deployment = next(
            (d for d in existing if d.payload.get("rollout") == effect.rollout_id), None
        )
        if deployment is None:
            deployment = await client.create_deployment(
                owner=owner,
                repo=repo,
                ref=effect.commit_sha,
                environment=effect.environment,
                payload=effect.payload,
                task=effect.task,
                description=f"deploybot rollout {effect.rollout_id}",
            )
        async with self.sessions.begin() as session:
            await releases.record_deployment(
                session, rollout_id=effect.rollout_id, deployment_id=deployment.id
            )
            await self.finish(
                session, item, OutboxStatus.SENT.value, result={"deployment_id": deployment.id}
            )
        return f"deployment {deployment.id}"

    async def _comment(self, item: OutboxEffect, effect: PullRequestComment) -> str:
        client = await self._installation(effect.repository)
        owner, repo = effect.repository.split("/", 1)
        comment_id = await client.create_issue_comment(
            owner=owner, repo=repo, issue_number=effect.pr_number, body=effect.body
        )
        async with self.sessions.begin() as session:
            await self.finish(session, item, OutboxStatus.SENT.value, result={"id": comment_id})
        return f"comment {comment_id}"

    async def _react(self, item: OutboxEffect, effect: Reaction) -> str:
        client = await self._installation(effect.repository)
        owner, repo = effect.repository.split("/", 1)
        await client.add_reaction(
            owner=owner, repo=repo, comment_id=effect.comment_id, content=effect.content
        )
        async with self.sessions.begin() as session:
            await self.finish(session, item, OutboxStatus.SENT.value)
        return f"reacted {effect.content}"

    # --- Slack -----------------------------------------------------------------------

    async def _slack(
        self,
        item: OutboxEffect,
        effect: ThreadReply | RefreshBoard | ApprovalRequest | ApprovalDecided,
    ) -> str:
        async with self.sessions() as session:
            release = await releases.get_release(session, release_id=effect.release_id)
            rollouts = await releases.rollouts_of_release(session, release_id=effect.release_id)
        if release is None or not release.thread_channel:
            async with self.sessions.begin() as session:
                await self.finish(
                    session, item, OutboxStatus.SENT.value, result={"skipped": "no channel"}
                )
            return "skipped: no Slack channel for this repository"
        board = blocks.status_board(board_for(release, rollouts))
        thread_ts = release.thread_ts
        if thread_ts is None:
            thread_ts = await self._open_thread(release, board)
        elif isinstance(effect, RefreshBoard):
            await self.slack.chat_update(
                channel=release.thread_channel, ts=thread_ts, **board.as_kwargs()
            )
            async with self.sessions.begin() as session:
                await self.finish(session, item, OutboxStatus.SENT.value, result={"ts": thread_ts})
            return "board refreshed"
        if isinstance(effect, RefreshBoard):
            async with self.sessions.begin() as session:
                await self.finish(session, item, OutboxStatus.SENT.value, result={"ts": thread_ts})
            return "thread opened"
        if isinstance(effect, ApprovalDecided):
            return await self._close_request(item, release, rollouts, effect)
        message = (
            blocks.approval_request(_request(release, rollouts, effect.rollout_id))
            if isinstance(effect, ApprovalRequest)
            else blocks.Message(text=blocks.escape(effect.text))
        )
        answer = await self.slack.chat_postMessage(
            channel=release.thread_channel, thread_ts=thread_ts, **message.as_kwargs()
        )
        async with self.sessions.begin() as session:
            await self.finish(
                session, item, OutboxStatus.SENT.value, result={"ts": answer.get("ts")}
            )
        return "reply posted"

    async def _open_thread(self, release: ReleaseRow, board: blocks.Message) -> str:
        answer = await self.slack.chat_postMessage(
            channel=release.thread_channel, **board.as_kwargs()
        )
        ts = str(answer["ts"])
        async with self.sessions.begin() as session:
            assert release.id is not None
            winner = await releases.set_thread(
                session, release_id=release.id, channel=str(answer["channel"]), ts=ts
            )
        if winner != ts:  # another dispatcher opened the thread meanwhile: keep one board
            await self.slack.chat_delete(channel=release.thread_channel, ts=ts)
        return winner

    async def _close_request(
        self,
        item: OutboxEffect,
        release: ReleaseRow,
        rollouts: list[Rollout],
        effect: ApprovalDecided,
    ) -> str:
        async with self.sessions() as session:
            posted = await outbox.sent_result(
                session, idempotency_key=f"approval-request:{effect.rollout_id}"
            )
        ts = (posted or {}).get("ts")
        if posted is None:
            raise RuntimeError("the approval request is not posted yet; closing it later")
        if ts:
            request = _request(release, rollouts, effect.rollout_id)
            rollout = next(r for r in rollouts if r.id == effect.rollout_id)
            rejection = rollout.rejection()
            by = (
                [rejection.person.label]
                if rejection
                else [d.person.label for d in rollout.approvals()]
            )
            message = blocks.decided(
                request,
                effect.outcome,  # type: ignore[arg-type]
                by=by,
                reason=rejection.reason if rejection else rollout.note,
            )
            await self.slack.chat_update(
                channel=release.thread_channel, ts=ts, **message.as_kwargs()
            )
        async with self.sessions.begin() as session:
            await self.finish(session, item, OutboxStatus.SENT.value, result={"ts": ts})
        return "approval request closed" if ts else "no approval request to close"


def _request(
    release: ReleaseRow, rollouts: list[Rollout], rollout_id: int
) -> blocks.ApprovalRequest:
    """The approval request of a rollout, as the thread shows it."""
    rollout = next((r for r in rollouts if r.id == rollout_id), None)
    environment = rollout.environment if rollout is not None else ""
    try:
        env = parse_pipeline(release.pipeline).environment(environment)
    except PipelineError:
        env = None
    value = f"rollout:{rollout_id}"
    return blocks.ApprovalRequest(
        repository=release.repository,
        environment=environment,
        commit_sha=rollout.commit_sha if rollout is not None else release.commit_sha,
        requested_by=rollout.requested_by.label if rollout is not None else "someone",
        required=env.approvals if env is not None else 1,
        approve=blocks.Button("approve", value),
        reject=blocks.Button("reject", value),
        approved_by=tuple(d.person.label for d in rollout.approvals()) if rollout else (),
        approvers=tuple(str(a) for a in env.approvers) if env is not None else (),
        pr_number=release.pr_number,
        pr_url=release.pr_url,
        requested_at=rollout.created_at if rollout is not None else None,
    )
