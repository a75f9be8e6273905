"""The pipeline's state, as plain immutable values (no I/O, no database rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class Status(StrEnum):
    """An environment's status for one release (CONTRACT §7)."""

    PENDING = "pending"
    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"
    IN_PROGRESS = "in_progress"
    VERIFYING = "verifying"
    SUCCESS = "success"
    FAILURE = "failure"
    ROLLED_BACK = "rolled_back"
    REJECTED = "rejected"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"

    @property
    def active(self) -> bool:
        """Holds the environment: at most one active rollout per environment."""
        return self in _ACTIVE

    @property
    def finished(self) -> bool:
        return not self.active and self is not Status.QUEUED


_ACTIVE = frozenset(
    {Status.PENDING, Status.AWAITING_APPROVAL, Status.IN_PROGRESS, Status.VERIFYING}
)


class Kind(StrEnum):
    DEPLOY = "deploy"
    ROLLBACK = "rollback"


@dataclass(frozen=True)
class Person:
    """Someone, as far as we know them: a GitHub login, a Slack user id, or both."""

    github: str | None = None
    slack: str | None = None

    def same_as(self, other: Person) -> bool:
        """True when any known identity matches (GitHub logins are case-insensitive)."""
        if self.github and other.github and self.github.lower() == other.github.lower():
            return True
        return bool(self.slack and other.slack and self.slack == other.slack)

    def comparable(self, other: Person) -> bool:
        """Whether `same_as` can tell: both have a GitHub login, or both a Slack id."""
        return bool((self.github and other.github) or (self.slack and other.slack))

    @property
    def label(self) -> str:
        return self.github or self.slack or "someone"


@dataclass(frozen=True)
class Decision:
    """One person's approval or rejection of a rollout, bound to the commit it was asked for."""

    person: Person
    approve: bool
    commit_sha: str
    at: datetime
    reason: str | None = None


@dataclass(frozen=True)
class Rollout:
    """One environment of one release (or a rollback of an environment to an older commit)."""

    id: int
    repository: str
    environment: str
    commit_sha: str
    status: Status
    requested_by: Person
    created_at: datetime
    kind: Kind = Kind.DEPLOY
    deployment_id: int | None = None
    decisions: tuple[Decision, ...] = ()
    failure_streak: int = 0
    healthy_since: datetime | None = None
    next_check_at: datetime | None = None
    replaces: int | None = None  # a rollback: the failed rollout it undoes
    note: str | None = None  # why it ended the way it did, in a person's words
    step: int | None = None  # a canary: the index of its current step in `canary.steps`
    weight: int | None = None  # a canary: the weight (percent) of its current step
    paused_at: datetime | None = None  # paused by someone: its timers stand still
    held_at: datetime | None = None  # a verified manual canary step, waiting for promote
    forced: bool = False  # queued with `--force`: the override holds when it starts
    wait_checks: bool = False  # queued with `--wait`: waits while checks are pending
    gate_run_id: int | None = None  # a GitHub Actions run waiting on our protection rule

    def approvals(self) -> tuple[Decision, ...]:
        """Approvals that still count: for this commit, one per person."""
        counted: list[Decision] = []
        for decision in self.decisions:
            if decision.approve and decision.commit_sha == self.commit_sha:
                if not any(d.person.same_as(decision.person) for d in counted):
                    counted.append(decision)
        return tuple(counted)

    def rejection(self) -> Decision | None:
        return next((d for d in self.decisions if not d.approve), None)


@dataclass(frozen=True)
class Evidence:
    """What a health probe saw: `detail` is one line over every check; `checks` is each
    check's verdict and line (the HTTP check, each Prometheus query with the value it
    measured), empty when the probe does not tell its checks apart."""

    healthy: bool
    detail: str
    at: datetime
    checks: tuple[tuple[bool, str], ...] = ()

    @property
    def failed(self) -> tuple[str, ...]:
        """The lines of the checks that failed."""
        return tuple(line for healthy, line in self.checks if not healthy)

    @property
    def passed(self) -> tuple[str, ...]:
        """The lines of the checks that passed."""
        return tuple(line for healthy, line in self.checks if healthy)


@dataclass(frozen=True)
class EnvironmentHistory:
    """What the core must know about an environment beyond one release."""

    active: Rollout | None = None  # the rollout holding the environment, if any
    lock_holder: Person | None = None
    lock_reason: str | None = None
    waiting: int = 0  # requests queued there that are ready to go (not waiting for checks)
