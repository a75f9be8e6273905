"""The outbox dispatcher: sends each effect to Slack or GitHub, once, with retries.

Network calls happen outside database transactions (a slow Slack must not hold SQLite's
write lock); what an effect produced (a deployment id, a thread's ts) is then recorded in
the same short transaction that marks the effect sent. A deployment is looked up by the
rollout id in its payload before one is created, so a retry after a crash does not deploy
twice; a Slack message or a PR comment an earlier try may have posted is looked for by the
outbox key it carries (message metadata; an invisible marker in the comment) before it is
posted again.

The replies of a thread come out of the outbox one at a time, in order (`storage.outbox`).
A board refresh draws the release as it is now, so it also serves every refresh of that
release already waiting; and it is not sent at all when the board drawn is the one the
thread already shows. Slack's 429s are retried by the client's retry handler, honouring
`Retry-After`; when those retries run out the effect waits out the last `Retry-After` in the
outbox, without counting toward dead-lettering (so does a GitHub rate limit too long for
the GitHub client to sleep through).
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

import sqlalchemy as sa
import structlog
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot import conductor
from bot.github.context import thread_channel
from bot.pipeline import effects
from bot.pipeline.config import Pipeline, PipelineError, parse_pipeline
from bot.pipeline.effects import (
    ApprovalDecided,
    ApprovalRequest,
    ChannelMessage,
    CreateDeployment,
    PullRequestComment,
    Reaction,
    RefreshBoard,
    ReviewProtectionRule,
    ThreadReply,
)
from bot.pipeline.models import Rollout
from bot.slack import blocks
from bot.slack.board import board_for, confirms
from bot.worker import Permanent, QueueWorker, RetryLater
from integrations.github_app import (
    GitHubApp,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubValidationFailed,
    InstallationClient,
)
from storage import installations, outbox, releases
from storage.models import OutboxEffect, OutboxStatus, utcnow
from storage.models import Release as ReleaseRow

log = structlog.get_logger(__name__)

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
# Slack's words for "too many": answered with HTTP 429 (and `Retry-After`), or in a 200.
_SLACK_RATE_LIMITED = {"ratelimited", "rate_limited"}
# A Slack user id, the only thing a channel message may mention.
_SLACK_ID = re.compile(r"[UW][A-Z0-9]+")
# Waiting less than this for a rate limit would only ask again at once.
_LEAST_WAIT = timedelta(seconds=1)


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
                session,
                rollout_id=effect.rollout_id,
                reason=f"GitHub refused it ({error})",
                now=utcnow(),
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
            if isinstance(effect, ChannelMessage):
                return await self._channel_message(item, effect)
            if isinstance(effect, ReviewProtectionRule):
                return await self._review_gate(item, effect)
            return await self._slack(item, effect)
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error in _SLACK_PERMANENT:
                raise Permanent(f"Slack refused: {error}") from None
            if exc.response.status_code == 429 or error in _SLACK_RATE_LIMITED:
                delay = retry_after(exc.response.headers)
                raise RetryLater(f"Slack is rate limiting ({error or 429})", delay=delay) from None
            raise
        except (GitHubNotFound, GitHubValidationFailed) as exc:
            raise Permanent(str(exc)) from None
        except GitHubRateLimited as exc:  # a wait longer than the client would sleep
            delay = max(timedelta(seconds=exc.retry_after), _LEAST_WAIT)
            raise RetryLater(str(exc), delay=delay) from None

    # --- GitHub ----------------------------------------------------------------------

    async def _installation(self, repository: str) -> Any:
        async with self.sessions() as session:
            installation_id = await installations.installation_for(session, full_name=repository)
        if installation_id is None:
            raise Permanent(f"the GitHub App is not installed on {repository}")
        return self.github.installation(installation_id)

    async def _deploy(self, item: OutboxEffect, effect: CreateDeployment) -> str:
        if await self._moved_on(effect):
            async with self.sessions.begin() as session:
                await self.finish(session, item, OutboxStatus.SENT.value, result={"skipped": True})
            return "skipped: the rollout moved on from that canary step"
        client = await self._installation(effect.repository)
        owner, repo = effect.repository.split("/", 1)
        existing = await client.list_deployments(
            owner=owner, repo=repo, environment=effect.environment, sha=effect.commit_sha
        )
        deployment = next((d for d in existing if _same_deployment(d.payload, effect)), None)
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
                session,
                rollout_id=effect.rollout_id,
                deployment_id=deployment.id,
                step=effect.step,
            )
            await self.finish(
                session, item, OutboxStatus.SENT.value, result={"deployment_id": deployment.id}
            )
        return f"deployment {deployment.id}"

    async def _moved_on(self, effect: CreateDeployment) -> bool:
        """A canary step's deployment whose rollout is no longer at that step (rolled back,
        failed, or past it) must not be created late: it would put traffic back on a commit
        that was taken away. Taking a canary to weight 0 is always sent."""
        if effect.step is None or effect.payload.get("weight") == 0:
            return False
        async with self.sessions() as session:
            found = await releases.get_rollout(session, rollout_id=effect.rollout_id)
        if found is None:
            return True
        row, rollout = found
        return not rollout.status.active or row.canary_step != effect.step

    async def _comment(self, item: OutboxEffect, effect: PullRequestComment) -> str:
        client = await self._installation(effect.repository)
        owner, repo = effect.repository.split("/", 1)
        comment_id = await self._commented_before(
            item, client, owner=owner, repo=repo, number=effect.pr_number
        )
        if comment_id is None:
            comment_id = await client.create_issue_comment(
                owner=owner,
                repo=repo,
                issue_number=effect.pr_number,
                body=_marked(effect.body, item.idempotency_key),
            )
        async with self.sessions.begin() as session:
            await self.finish(session, item, OutboxStatus.SENT.value, result={"id": comment_id})
        return f"comment {comment_id}"

    async def _commented_before(
        self, item: OutboxEffect, client: InstallationClient, *, owner: str, repo: str, number: int
    ) -> int | None:
        """The id of the comment an earlier try of this effect posted, if GitHub has one.

        GitHub takes no idempotency key, so each comment ends with its outbox key in an
        invisible marker. As for Slack (`_lookup_since`), only an effect whose earlier try may
        have reached GitHub is looked up, and only the comments updated since the effect was
        written, page by page."""
        since = _lookup_since(item)
        if since is None:
            return None
        page = 1
        for _ in range(_LOOKUP_PAGES):
            found = await client.list_issue_comments(
                owner=owner, repo=repo, issue_number=number, since=since, page=page
            )
            for comment in found.comments:
                if _carries(comment.body, item.idempotency_key):
                    return comment.id
            if found.next_page is None:
                return None
            page = found.next_page
        return None

    async def _react(self, item: OutboxEffect, effect: Reaction) -> str:
        client = await self._installation(effect.repository)
        owner, repo = effect.repository.split("/", 1)
        await client.add_reaction(
            owner=owner, repo=repo, comment_id=effect.comment_id, content=effect.content
        )
        async with self.sessions.begin() as session:
            await self.finish(session, item, OutboxStatus.SENT.value)
        return f"reacted {effect.content}"

    async def _review_gate(self, item: OutboxEffect, effect: ReviewProtectionRule) -> str:
        """Answer the Actions run waiting on our deployment protection rule. GitHub refuses
        (422) a run that is no longer waiting (already answered, cancelled, timed out): no
        retry can change that, so it is given up on with GitHub's reason."""
        client = await self._installation(effect.repository)
        owner, repo = effect.repository.split("/", 1)
        try:
            await client.review_protection_rule(
                owner=owner,
                repo=repo,
                run_id=effect.run_id,
                environment_name=effect.environment,
                state="approved" if effect.state == "approved" else "rejected",
                comment=effect.comment,
            )
        except GitHubValidationFailed as exc:
            raise Permanent(f"GitHub refused the answer to run {effect.run_id}: {exc}") from None
        async with self.sessions.begin() as session:
            await self.finish(session, item, OutboxStatus.SENT.value)
        return f"run {effect.run_id} {effect.state}"

    # --- Slack -----------------------------------------------------------------------

    async def _slack(
        self,
        item: OutboxEffect,
        effect: ThreadReply | RefreshBoard | ApprovalRequest | ApprovalDecided,
    ) -> str:
        if isinstance(effect, RefreshBoard):
            return await self._refresh_board(item, effect)
        async with self.sessions() as session:
            release = await releases.get_release(session, release_id=effect.release_id)
            rollouts = await releases.rollouts_of_release(session, release_id=effect.release_id)
        if release is None or not release.thread_channel:
            async with self.sessions.begin() as session:
                await self.finish(
                    session, item, OutboxStatus.SENT.value, result={"skipped": "no channel"}
                )
            return "skipped: no Slack channel for this repository"
        thread_ts = release.thread_ts
        if thread_ts is None:
            thread_ts, _ = await self._open_thread(release, _board(release, rollouts), item)
        if isinstance(effect, ApprovalDecided):
            return await self._close_request(item, release, rollouts, effect)
        key = item.idempotency_key
        posted = await self._posted_before(item, release.thread_channel, key, thread=thread_ts)
        if posted is None:
            message = (
                blocks.approval_request(_request(release, rollouts, effect.rollout_id))
                if isinstance(effect, ApprovalRequest)
                else blocks.Message(text=blocks.escape(effect.text))
            )
            answer = await self.slack.chat_postMessage(
                channel=release.thread_channel,
                thread_ts=thread_ts,
                metadata=_metadata(key),
                **message.as_kwargs(),
            )
            posted = str(answer.get("ts"))
        async with self.sessions.begin() as session:
            await self.finish(session, item, OutboxStatus.SENT.value, result={"ts": posted})
        return "reply posted"

    async def _posted_before(
        self, item: OutboxEffect, channel: str, key: str, *, thread: str | None = None
    ) -> str | None:
        """The ts of the message an earlier try of this effect posted, if Slack has one.

        Slack has no idempotency key, so each post carries its outbox key as message
        metadata. Only an effect whose earlier try may have reached Slack is looked up, and
        only messages since the effect was written (`_lookup_since`; Slack pages these calls
        small), page by page."""
        after = _lookup_since(item)
        if after is None:
            return None
        since = f"{after.timestamp():.6f}"
        cursor = None
        try:
            for _ in range(_LOOKUP_PAGES):
                if thread is not None:
                    found = await self.slack.conversations_replies(
                        channel=channel,
                        ts=thread,
                        oldest=since,
                        include_all_metadata=True,
                        cursor=cursor,
                    )
                else:
                    found = await self.slack.conversations_history(
                        channel=channel, oldest=since, include_all_metadata=True, cursor=cursor
                    )
                for message in found.get("messages") or []:
                    metadata = message.get("metadata") or {}
                    if (
                        metadata.get("event_type") == _EVENT_TYPE
                        and (metadata.get("event_payload") or {}).get("key") == key
                    ):
                        return str(message.get("ts"))
                cursor = (found.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return None
        except SlackApiError as exc:
            error = str(exc.response.get("error", ""))
            if error == "thread_not_found":
                return None  # no thread, so nothing was posted in it
            if error in _LOOKUP_NOT_ALLOWED:
                # An install from before the history scopes: post as before, and say why.
                log.warning("cannot look for an earlier post; posting", key=key, error=error)
                return None
            raise
        return None

    async def _channel_message(self, item: OutboxEffect, effect: ChannelMessage) -> str:
        """Post in the repository's channel as it is now (the pipeline file's, as last read
        on the newest release, else the subscribed one); none: skipped."""
        async with self.sessions() as session:
            newest = (
                await session.execute(
                    sa.select(ReleaseRow)
                    .where(ReleaseRow.repository == effect.repository)
                    .order_by(ReleaseRow.id.desc())
                    .limit(1)
                )
            ).scalar_one_or_none()
            try:
                pipeline: Pipeline | PipelineError = parse_pipeline(
                    newest.pipeline if newest is not None else ""
                )
            except PipelineError as exc:
                pipeline = exc
            channel = await thread_channel(session, repository=effect.repository, pipeline=pipeline)
        if channel is None:
            async with self.sessions.begin() as session:
                await self.finish(
                    session, item, OutboxStatus.SENT.value, result={"skipped": "no channel"}
                )
            return "skipped: no Slack channel for this repository"
        text = blocks.escape(effect.text)
        if effect.mention and _SLACK_ID.fullmatch(effect.mention):
            # Our own mention of the holder, the one markup the text may keep.
            text = text.replace(f"&lt;@{effect.mention}&gt;", f"<@{effect.mention}>")
        posted = await self._posted_before(item, channel, item.idempotency_key)
        if posted is None:
            answer = await self.slack.chat_postMessage(
                channel=channel, text=text, metadata=_metadata(item.idempotency_key)
            )
            posted = str(answer.get("ts"))
        async with self.sessions.begin() as session:
            await self.finish(session, item, OutboxStatus.SENT.value, result={"ts": posted})
        return "channel message posted"

    async def _refresh_board(self, item: OutboxEffect, effect: RefreshBoard) -> str:
        """Draw the board once for every refresh of the release waiting now; skip the
        `chat.update` when the thread already shows this very board."""
        line = item.ordering_key or outbox.board_key(effect.release_id)
        async with self.sessions() as session:
            # Which refreshes this drawing serves is settled before the release is read: a
            # change committed after this point has a refresh of its own that stays in line.
            waiting = await outbox.pending_ids(session, ordering_key=line)
            release = await releases.get_release(session, release_id=effect.release_id)
            rollouts = await releases.rollouts_of_release(session, release_id=effect.release_id)
            shown = await outbox.last_sent_result(session, ordering_key=line)
        result: dict[str, Any]
        if release is None or not release.thread_channel:
            result = {"skipped": "no channel"}
            outcome = "skipped: no Slack channel for this repository"
        else:
            board = _board(release, rollouts)
            digest = _digest(board)
            ts = release.thread_ts
            if ts is None:
                ts, opened = await self._open_thread(release, board, item)
                if not opened:  # the thread shows another sender's drawing: show this one
                    await self.slack.chat_update(
                        channel=release.thread_channel, ts=ts, **board.as_kwargs()
                    )
                outcome = "thread opened"
            elif (shown or {}).get("board") == digest:
                outcome = "board unchanged"
            else:
                await self.slack.chat_update(
                    channel=release.thread_channel, ts=ts, **board.as_kwargs()
                )
                outcome = "board refreshed"
            result = {"ts": ts, "board": digest}
        served = [effect_id for effect_id in waiting if effect_id != item.id]
        async with self.sessions.begin() as session:
            await self.finish(session, item, OutboxStatus.SENT.value, result=result)
            merged = await outbox.coalesce(
                session,
                item_ids=served,
                result={**result, "coalesced_into": item.id},
                now=self.clock(),
            )
        return f"{outcome} (and {merged} more refreshes)" if merged else outcome

    async def _open_thread(
        self, release: ReleaseRow, board: blocks.Message, item: OutboxEffect
    ) -> tuple[str, bool]:
        """Post the board as the thread's parent; returns the thread's ts and whether this
        post is it (False: another dispatcher opened the thread meanwhile). A parent an
        interrupted try posted is found in the channel and used, not posted again."""
        assert release.id is not None and release.thread_channel is not None
        key = f"thread:{release.id}"
        ts = await self._posted_before(item, release.thread_channel, key)
        if ts is None:
            answer = await self.slack.chat_postMessage(
                channel=release.thread_channel, metadata=_metadata(key), **board.as_kwargs()
            )
            ts = str(answer["ts"])
        async with self.sessions.begin() as session:
            winner = await releases.set_thread(
                session, release_id=release.id, channel=release.thread_channel, ts=ts
            )
            if winner == ts:  # what the board shows now, for the refreshes that follow
                opened = RefreshBoard(release.id, "thread-opened")
                await outbox.record_sent(
                    session,
                    kind=RefreshBoard.__name__,
                    payload={"release_id": opened.release_id, "cause": opened.cause},
                    idempotency_key=opened.key,
                    result={"ts": ts, "board": _digest(board)},
                    now=self.clock(),
                )
        if winner != ts:  # keep one board
            await self.slack.chat_delete(channel=release.thread_channel, ts=ts)
        return winner, winner == ts

    async def _close_request(
        self,
        item: OutboxEffect,
        release: ReleaseRow,
        rollouts: list[Rollout],
        effect: ApprovalDecided,
    ) -> str:
        request_key = ApprovalRequest(effect.release_id, effect.rollout_id, "", "", 0).key
        async with self.sessions() as session:
            posted = await outbox.sent_result(session, idempotency_key=request_key)
            status = await outbox.status_of(session, idempotency_key=request_key)
        if posted is None and status in {None, OutboxStatus.PENDING.value}:
            # The thread's order normally sends the request first; not so for a request
            # put back in line from the dead letters, or one not yet visible to us.
            raise RuntimeError("the approval request is not posted yet; closing it later")
        ts = (posted or {}).get("ts")  # none: the request was given up on, nothing to close
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


def retry_after(headers: Any) -> timedelta:
    """How long Slack asked us to wait (`Retry-After`: seconds or an HTTP date), at least
    a second; a second when it did not say."""
    value: Any = None
    for name, header in dict(headers or {}).items():
        if str(name).lower() == "retry-after":
            value = header[0] if isinstance(header, list | tuple) and header else header
            break
    wait = _LEAST_WAIT
    if value is not None:
        text = str(value).strip()
        try:
            wait = timedelta(seconds=float(text))
        except ValueError:
            try:
                wait = parsedate_to_datetime(text) - utcnow()
            except (TypeError, ValueError):
                wait = _LEAST_WAIT
    return max(wait, _LEAST_WAIT)


def _board(release: ReleaseRow, rollouts: list[Rollout]) -> blocks.Message:
    return blocks.status_board(board_for(release, rollouts))


def _digest(message: blocks.Message) -> str:
    """A fingerprint of a message as Slack would be sent it."""
    text = json.dumps(message.as_kwargs(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _request(
    release: ReleaseRow, rollouts: list[Rollout], rollout_id: int
) -> blocks.ApprovalRequest:
    """The approval request of a rollout, as the thread shows it."""
    rollout = next((r for r in rollouts if r.id == rollout_id), None)
    environment = rollout.environment if rollout is not None else ""
    try:
        pipeline: Pipeline | None = parse_pipeline(release.pipeline)
    except PipelineError:
        pipeline = None
    env = pipeline.environment(environment) if pipeline is not None else None
    value = f"rollout:{rollout_id}"
    confirm = confirms(pipeline, environment)
    return blocks.ApprovalRequest(
        repository=release.repository,
        environment=environment,
        commit_sha=rollout.commit_sha if rollout is not None else release.commit_sha,
        requested_by=rollout.requested_by.label if rollout is not None else "someone",
        required=env.approvals if env is not None else 1,
        approve=blocks.Button("approve", value, confirm=confirm),
        reject=blocks.Button("reject", value, confirm=confirm),
        approved_by=tuple(d.person.label for d in rollout.approvals()) if rollout else (),
        approvers=tuple(str(a) for a in env.approvers) if env is not None else (),
        pr_number=release.pr_number,
        pr_url=release.pr_url,
        requested_at=rollout.created_at if rollout is not None else None,
    )


def _same_deployment(payload: dict[str, Any], effect: CreateDeployment) -> bool:
    """Whether an existing deployment is this effect's, created before a crash: the same
    rollout and, for a canary, the same step and weight."""
    return all(
        payload.get(name) == effect.payload.get(name) for name in ("rollout", "step", "weight")
    )


_EVENT_TYPE = "deploybot_effect"
_LOOKUP_PAGES = 10


def _lookup_since(item: OutboxEffect) -> datetime | None:
    """Whence to look for what an earlier try of `item` sent, or None when none may have
    reached the other side: it is looked up only if a try failed (a 5xx or a timeout can
    hide a post that was taken), its sender died holding it, or it came back from the dead
    letters. A minute before it was written, for clock skew between us and them."""
    if not item.interrupted and item.attempts == 0:
        return None
    return item.created_at - timedelta(minutes=1)


# The app was installed before it asked for the history scopes, or is not in the channel.
_LOOKUP_NOT_ALLOWED = frozenset({"missing_scope", "not_in_channel", "channel_not_found"})


def _metadata(key: str) -> dict[str, Any]:
    """Message metadata naming the outbox effect that posted it (found again by it)."""
    return {"event_type": _EVENT_TYPE, "event_payload": {"key": key}}


def _marker(key: str) -> str:
    # An HTML comment: GitHub renders nothing of it, and the API returns it in the body.
    return f"<!-- deploybot:{key} -->"


def _marked(body: str, key: str) -> str:
    """A PR comment's body ending with a marker naming the outbox effect that posts it."""
    return f"{body}\n\n{_marker(key)}"


def _carries(body: str, key: str) -> bool:
    """Whether a comment's body has the marker of the effect `key` on a line of its own."""
    marker = _marker(key)
    return any(line.strip() == marker for line in body.splitlines())
