"""The tables: what deploybot keeps between requests.

Times are timezone-aware UTC everywhere; `UTCDateTime` makes SQLite (which stores naive
text) give them back aware, so comparisons never mix naive and aware values.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel

from bot.pipeline.models import Status

# Named constraints, so later migrations can drop or alter them (SQLite batch mode needs names).
SQLModel.metadata.naming_convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A DateTime that is always stored as UTC and read back timezone-aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # The two methods below do what SQLAlchemy's TypeDecorator would do with the ones above
    # and the dialect's own DateTime processing, in one call a value: a scheduler tick binds
    # and reads tens of thousands of times (`bench/scheduler_scale.py`).

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
        impl = self.impl_instance.dialect_impl(dialect)
        inner = impl.bind_processor(dialect)
        if inner is None:  # asyncpg and psycopg take aware datetimes as they are

            def aware(value: datetime | None) -> datetime | None:
                if value is None:
                    return None
                if value.tzinfo is None:
                    raise ValueError("naive datetime given to a UTC column")
                return value.astimezone(UTC)  # the same object when already in UTC

            return aware
        if dialect.name == "sqlite" and getattr(impl, "_storage_format", None) == _SQLITE_TEXT:

            def text(value: datetime | None) -> str | None:
                if value is None:
                    return None
                if value.tzinfo is None:
                    raise ValueError("naive datetime given to a UTC column")
                # _SQLITE_TEXT exactly: the first 26 characters leave out "+00:00".
                return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]

            return text
        return super().bind_processor(dialect)

    def result_processor(
        self, dialect: sa.Dialect, coltype: object
    ) -> Callable[[Any], datetime | None]:
        inner = self.impl_instance.dialect_impl(dialect).result_processor(dialect, coltype)
        if inner is None:

            def aware(value: datetime | None) -> datetime | None:
                if value is None:
                    return None
                return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

            return aware

        def parsed(value: Any) -> datetime | None:
            if value is None:
                return None
            value = inner(value)
            return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

        return parsed


# How SQLAlchemy's SQLite DateTime stores a value (its default `storage_format`).
_SQLITE_TEXT = (
    "%(year)04d-%(month)02d-%(day)02d %(hour)02d:%(minute)02d:%(second)02d.%(microsecond)06d"
)


def _when(*, nullable: bool = True, index: bool = False, **kwargs: Any) -> Any:
    return Field(sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index), **kwargs)


def _created() -> Any:
    return Field(default_factory=utcnow, sa_column=sa.Column(UTCDateTime(), nullable=False))


def _github_id(*args: Any, nullable: bool = False, index: bool = False, **kwargs: Any) -> Any:
    """GitHub ids outgrow 32 bits; they are GitHub's, so never autoincremented here."""
    primary_key = kwargs.pop("primary_key", False)
    column = sa.Column(
        sa.BigInteger(),
        *args,
        primary_key=primary_key,
        autoincrement=False,
        nullable=nullable,
        index=index,
    )
    return Field(sa_column=column, **kwargs)


def _json(*, nullable: bool = False) -> Any:
    return Field(default_factory=dict, sa_column=sa.Column(sa.JSON(), nullable=nullable))


class Installation(SQLModel, table=True):
    """A GitHub App installation (an organisation or user account)."""

    id: int = _github_id(primary_key=True)
    account_login: str = Field(index=True)
    account_type: str = "Organization"
    suspended: bool = False
    removed: bool = False
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Repository(SQLModel, table=True):
    """A repository the App can see, keyed by GitHub's id; `full_name` is `owner/name`."""

    id: int = _github_id(primary_key=True)
    full_name: str = Field(unique=True)
    installation_id: int | None = _github_id(
        sa.ForeignKey("installation.id"), default=None, nullable=True, index=True
    )
    default_branch: str = "main"
    removed: bool = False
    created_at: datetime = _created()
    updated_at: datetime = _created()


class ChannelSubscription(SQLModel, table=True):
    """The Slack channel that carries a repository's threads, and who chose it."""

    id: int | None = Field(default=None, primary_key=True)
    repository: str = Field(unique=True)
    channel_id: str
    created_by: str  # the Slack user who subscribed
    created_by_github: str | None = None  # their GitHub login, whose admin permission was checked
    created_at: datetime = _created()


class IdentityLink(SQLModel, table=True):
    """Which GitHub login a Slack user is. `github_login` is trusted: it was confirmed on
    GitHub by that login commenting a one-time code. `pending_login` waits for that comment;
    only a hash of the code is kept."""

    __tablename__ = "identity_link"

    id: int | None = Field(default=None, primary_key=True)
    slack_user: str = Field(unique=True)
    github_login: str | None = Field(default=None, index=True)
    confirmed_at: datetime | None = _when()
    pending_login: str | None = None
    code_hash: str | None = Field(default=None, unique=True)
    code_expires_at: datetime | None = _when()
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Release(SQLModel, table=True):
    """A pull request (or a commit pushed without one) on its way through the environments,
    with its Slack thread. `commit_sha` is the head now; each rollout keeps its own commit.

    A commit deployed by name without a pull request has one release of its own
    (`pr_number` NULL), kept to one per commit by `ux_release_commit`: the unique
    constraint on `(repository, pr_number)` never compares NULLs."""

    __table_args__ = (
        sa.UniqueConstraint("repository", "pr_number"),
        sa.Index(
            "ux_release_commit",
            "repository",
            "commit_sha",
            unique=True,
            sqlite_where=sa.text("pr_number IS NULL"),
            postgresql_where=sa.text("pr_number IS NULL"),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    repository: str = Field(index=True)
    commit_sha: str
    pr_number: int | None = Field(default=None, index=True)
    pr_state: str = "open"
    pr_url: str | None = None
    title: str = ""
    author: str = ""
    head_ref: str | None = None
    # The pipeline file as last read from the default branch ("" = none: the default
    # pipeline), so the scheduler and the board need not ask GitHub again.
    pipeline: str = Field(default="", sa_column=sa.Column(sa.Text(), nullable=False))
    thread_channel: str | None = None
    thread_ts: str | None = None
    created_at: datetime = _created()
    updated_at: datetime = _created()


# Statuses that hold an environment; the partial unique index below keeps it to one rollout.
ACTIVE_STATUSES = tuple(status.value for status in Status if status.active)
_ACTIVE_SQL = "status IN ({})".format(", ".join(f"'{value}'" for value in ACTIVE_STATUSES))


class Rollout(SQLModel, table=True):
    """One environment of a release (or a rollback): status, GitHub deployment, scheduler lease."""

    __table_args__ = (
        sa.Index("ix_rollout_due", "status", "next_check_at"),
        sa.Index("ix_rollout_commit", "repository", "commit_sha"),
        sa.Index(
            "ux_rollout_active_environment",
            "repository",
            "environment",
            unique=True,
            sqlite_where=sa.text(_ACTIVE_SQL),
            postgresql_where=sa.text(_ACTIVE_SQL),
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    release_id: int = Field(foreign_key="release.id", index=True)
    repository: str
    environment: str
    commit_sha: str
    kind: str = "deploy"
    status: str = Status.PENDING.value
    github_deployment_id: int | None = _github_id(default=None, nullable=True, index=True)
    requested_by_github: str | None = None
    requested_by_slack: str | None = None
    requested_via: str = "github"
    replaces: int | None = Field(default=None, foreign_key="rollout.id")
    note: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    failure_streak: int = 0
    healthy_since: datetime | None = _when()
    canary_step: int | None = None
    canary_weight: int | None = None
    paused_at: datetime | None = _when()
    held_at: datetime | None = _when()
    forced: bool = False
    wait_checks: bool = False
    gate_run_id: int | None = _github_id(default=None, nullable=True)
    version: int = 0
    next_check_at: datetime | None = _when()
    lease_owner: str | None = None
    lease_until: datetime | None = _when()
    created_at: datetime = _created()
    updated_at: datetime = _created()


class Approval(SQLModel, table=True):
    """One person's decision on a rollout, for the commit it was asked for; a person counts once."""

    __table_args__ = (sa.UniqueConstraint("rollout_id", "approver"),)

    id: int | None = Field(default=None, primary_key=True)
    rollout_id: int = Field(foreign_key="rollout.id", index=True)
    approver: str  # "github:<login>" or "slack:<id>": one row per identity
    approver_github: str | None = None
    approver_slack: str | None = None
    approve: bool = True
    commit_sha: str
    reason: str | None = None
    created_at: datetime = _created()


class Lock(SQLModel, table=True):
    """An environment lock; at most one per repository and environment."""

    __table_args__ = (sa.UniqueConstraint("repository", "environment"),)

    id: int | None = Field(default=None, primary_key=True)
    repository: str
    environment: str
    holder_github: str | None = None
    holder_slack: str | None = None
    reason: str | None = None
    created_at: datetime = _created()
    expires_at: datetime | None = _when()


class Freeze(SQLModel, table=True):
    """A repository-wide deploy freeze; at most one per repository (an ended one holds
    nothing and is replaced by the next). Not named `freeze`: a reserved word in PostgreSQL."""

    __tablename__ = "repository_freeze"
    __table_args__ = (sa.UniqueConstraint("repository"),)

    id: int | None = Field(default=None, primary_key=True)
    repository: str
    by_github: str | None = None
    by_slack: str | None = None
    reason: str
    until: datetime = _when(nullable=False)
    created_at: datetime = _created()


class AuditEvent(SQLModel, table=True):
    """Who did what, when, from where, to which commit."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(
        default_factory=utcnow, sa_column=sa.Column(UTCDateTime(), nullable=False, index=True)
    )
    actor: str
    source: str
    action: str
    repository: str | None = Field(default=None, index=True)
    environment: str | None = None
    commit_sha: str | None = None
    detail: dict[str, Any] = _json()


class InboxStatus(StrEnum):
    PENDING = "pending"
    DONE = "done"
    IGNORED = "ignored"
    DEAD = "dead"


class InboxItem(SQLModel, table=True):
    """A verified delivery (GitHub webhook, later Slack too), stored before it is answered."""

    __tablename__ = "inbox"
    __table_args__ = (
        sa.UniqueConstraint("source", "delivery_id"),
        sa.Index("ix_inbox_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    source: str
    delivery_id: str
    event: str
    action: str | None = None
    status: str = InboxStatus.PENDING.value
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    received_at: datetime = _created()
    next_attempt_at: datetime = _created()
    processed_at: datetime | None = _when()
    lease_owner: str | None = None
    lease_until: datetime | None = _when()


class InboxBody(SQLModel, table=True):
    """A delivery's body, kept apart from its inbox row (`id` is the row's): the row's status
    and lease change as it is worked off, and on SQLite each change rewrites the whole row, a
    15 kB body with it. Written once with its row, read once by the worker that claims it.

    No foreign key: SQLite alters `inbox` by copying it and dropping the old table, and that
    drop would delete every body through a cascading key (or be refused by a plain one)."""

    __tablename__ = "inbox_body"

    id: int = Field(sa_column=sa.Column(sa.Integer(), primary_key=True, autoincrement=False))
    body: str = Field(sa_column=sa.Column(sa.Text(), nullable=False))


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


class OutboxEffect(SQLModel, table=True):
    """A side effect to send (Slack message, GitHub call), written with the state that caused it.

    Effects that share an `ordering_key` (the replies of one Slack thread; the board updates
    of one release) are sent one at a time in id order: a row waits while an earlier one with
    its key is pending. `ix_outbox_ordering` answers "is an earlier one pending?"."""

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_due", "status", "next_attempt_at"),
        sa.Index("ix_outbox_ordering", "ordering_key", "status", "id"),
    )

    id: int | None = Field(default=None, primary_key=True)
    kind: str
    payload: dict[str, Any] = _json()
    idempotency_key: str = Field(unique=True)
    ordering_key: str | None = None
    # A claim took it from an owner that never finished it (a crash, a lost lease), or it came
    # back from the dead letters: what was sent before may have reached Slack or GitHub, so
    # look before sending again.
    interrupted: bool = False
    status: str = OutboxStatus.PENDING.value
    attempts: int = 0
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text()))
    result: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(sa.JSON()))
    created_at: datetime = _created()
    next_attempt_at: datetime = _created()
    sent_at: datetime | None = _when()
    lease_owner: str | None = None
    lease_until: datetime | None = _when()


class HookRedelivery(SQLModel, table=True):
    """A failed webhook delivery attempt (GitHub's delivery id) that the reconciler claimed,
    and when it asked GitHub to deliver it again (`requested_at`). The row is the claim: the
    replica that inserts it asks, the others skip it. A claim with no `requested_at` whose
    `claimed_at` is older than the reconciler's lease was left by a replica that died asking."""

    __tablename__ = "hook_redelivery"

    delivery_id: int = _github_id(primary_key=True)
    guid: str = Field(index=True)  # the X-GitHub-Delivery header; shared by its redeliveries
    event: str
    action: str | None = None
    status_code: int | None = None
    delivered_at: datetime = _when(nullable=False)
    claimed_by: str
    claimed_at: datetime = _when(nullable=False)
    requested_at: datetime | None = _when()
