"""What the core asks the outside world to do. The dispatcher sends them from the outbox.

Each effect has an idempotency `key`: the same decision, replayed after a crash, yields the
same key, so the outbox stores it once and it is sent once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class CreateDeployment:
    """A GitHub Deployment of `commit_sha` to `environment`; its payload names the rollout."""

    rollout_id: int
    repository: str
    environment: str
    commit_sha: str
    task: str = "deploy"
    payload: dict[str, Any] = field(default_factory=dict)
    step: int | None = None  # a canary's step: each step is its own deployment

    @property
    def key(self) -> str:
        if self.step is None:
            return f"deployment:{self.rollout_id}:{self.task}"
        return f"deployment:{self.rollout_id}:{self.task}:{self.step}:{self.payload.get('weight')}"


@dataclass(frozen=True)
class ReviewProtectionRule:
    """Answer a GitHub Actions run waiting on the App's deployment protection rule:
    `state` is `approved` or `rejected`, `comment` names who decided. Keyed by the run's
    deployment: a re-run keeps its run id but asks again with a new deployment."""

    repository: str
    run_id: int
    deployment_id: int
    environment: str
    state: str
    comment: str

    @property
    def key(self) -> str:
        return f"protection-rule:{self.deployment_id}:{self.state}"


@dataclass(frozen=True)
class ThreadReply:
    """A reply in the release's Slack thread (created first if there is none yet)."""

    release_id: int
    event: str  # what happened, unique within the release: part of the key
    text: str

    @property
    def key(self) -> str:
        return f"reply:{self.release_id}:{self.event}"


@dataclass(frozen=True)
class ApprovalRequest:
    """The thread message with Approve and Reject buttons for a rollout."""

    release_id: int
    rollout_id: int
    environment: str
    requested_by: str
    approvals_needed: int

    @property
    def key(self) -> str:
        return f"approval-request:{self.rollout_id}"


@dataclass(frozen=True)
class ApprovalDecided:
    """Replace an approval request's buttons with its outcome (approved, rejected, cancelled)."""

    release_id: int
    rollout_id: int
    outcome: str

    @property
    def key(self) -> str:
        return f"approval-decided:{self.rollout_id}"


@dataclass(frozen=True)
class RefreshBoard:
    """Bring the thread's parent message (the status board) up to date. The board is drawn
    from the state when the effect is sent, so refreshes waiting together can be merged."""

    release_id: int
    cause: str  # the change that calls for it, unique within the release

    @property
    def key(self) -> str:
        return f"board:{self.release_id}:{self.cause}"


@dataclass(frozen=True)
class PullRequestComment:
    """A comment on the pull request (refusals, errors, outcomes)."""

    repository: str
    pr_number: int
    event: str
    body: str

    @property
    def key(self) -> str:
        return f"comment:{self.repository}#{self.pr_number}:{self.event}"


@dataclass(frozen=True)
class Reaction:
    """A reaction on a PR comment: 👀 says the bot took the command."""

    repository: str
    comment_id: int
    content: str = "eyes"

    @property
    def key(self) -> str:
        return f"reaction:{self.repository}:{self.comment_id}:{self.content}"


@dataclass(frozen=True)
class ChannelMessage:
    """A message in the repository's Slack channel, not in a thread (lock reminders). The
    channel is looked up when it is sent; `mention` is a Slack user id the text may mention
    as `<@mention>` (the rest of the text is escaped)."""

    repository: str
    event: str  # what happened, unique within the repository: part of the key
    text: str
    mention: str | None = None

    @property
    def key(self) -> str:
        return f"channel:{self.repository}:{self.event}"


Effect = (
    CreateDeployment
    | ThreadReply
    | ApprovalRequest
    | ApprovalDecided
    | RefreshBoard
    | PullRequestComment
    | Reaction
    | ChannelMessage
    | ReviewProtectionRule
)


EFFECT_TYPES: dict[str, type[Effect]] = {
    cls.__name__: cls
    for cls in (
        CreateDeployment,
        ThreadReply,
        ApprovalRequest,
        ApprovalDecided,
        RefreshBoard,
        PullRequestComment,
        Reaction,
        ChannelMessage,
        ReviewProtectionRule,
    )
}


def effect_from(kind: str, payload: dict[str, Any]) -> Effect:
    """The effect an outbox row holds (`kind` is the class name, `payload` its fields)."""
    return EFFECT_TYPES[kind](**payload)
