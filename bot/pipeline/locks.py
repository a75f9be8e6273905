"""Environment locks (pure): who may take, renew or release one, and what to say.

A lock stops everyone but its holder from deploying to an environment (the rule itself is
in `machine.request_deploy`). It expires on its own (24 hours unless given a time), so a
forgotten lock never blocks a team for good. Anyone with write permission may lock a free
environment; only the holder or a repository admin may release someone else's lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.pipeline.config import Pipeline
from bot.pipeline.effects import ChannelMessage
from bot.pipeline.models import Person

DEFAULT_TTL = timedelta(hours=24)
# How long before a lock expires its holder is reminded (and how long after its expiry the
# release is still announced: a scheduler down longer than that announces nothing stale).
REMINDER_AHEAD = timedelta(hours=1)


@dataclass(frozen=True)
class Lock:
    """A held lock on one environment."""

    environment: str
    holder: Person
    since: datetime
    expires_at: datetime | None = None
    reason: str | None = None

    def held_at(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class LockDecision:
    """The lock to keep after a request (None: released), what to announce, or a refusal."""

    lock: Lock | None = None
    announcement: str = ""
    refusal: str | None = None

    @property
    def refused(self) -> bool:
        return self.refusal is not None


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def describe(lock: Lock) -> str:
    """`locked by alice since 2026-11-22 09:00 UTC (db migration)`."""
    why = f" ({lock.reason})" if lock.reason else ""
    return f"locked by {lock.holder.label} since {_when(lock.since)}{why}"


def take(
    pipeline: Pipeline,
    *,
    environment: str,
    person: Person,
    existing: Lock | None,
    reason: str | None,
    now: datetime,
    ttl: timedelta = DEFAULT_TTL,
) -> LockDecision:
    """`person` asks to lock `environment`; their own lock is renewed with the new reason."""
    env = pipeline.environment(environment)
    if env is None:
        names = ", ".join(f"`{e.name}`" for e in pipeline.environments)
        return LockDecision(refusal=f"`{environment}` is not an environment here: {names}.")
    if existing is not None and existing.held_at(now) and not existing.holder.same_as(person):
        return LockDecision(
            refusal=f"`{env.name}` is already {describe(existing)}. Ask them to unlock it."
        )
    renewed = existing is not None and existing.held_at(now)
    lock = Lock(
        environment=env.name,
        holder=person,
        since=existing.since if renewed and existing is not None else now,
        expires_at=now + ttl,
        reason=reason,
    )
    why = f": {reason}" if reason else ""
    verb = "renewed the lock on" if renewed else "locked"
    return LockDecision(
        lock=lock,
        announcement=f"🔒 {person.label} {verb} `{env.name}` until {_when(now + ttl)}{why}. "
        f"Only they can deploy there until it is unlocked.",
    )


def release(
    pipeline: Pipeline,
    *,
    environment: str,
    person: Person,
    existing: Lock | None,
    is_admin: bool,
    now: datetime,
) -> LockDecision:
    """`person` asks to unlock `environment`: the holder may, and so may an admin."""
    env = pipeline.environment(environment)
    name = env.name if env is not None else environment
    if existing is None or not existing.held_at(now):
        return LockDecision(refusal=f"`{name}` is not locked.")
    if not existing.holder.same_as(person) and not is_admin:
        return LockDecision(
            refusal=f"`{name}` is {describe(existing)}. Only they or a repository admin "
            f"can unlock it."
        )
    override = "" if existing.holder.same_as(person) else f" (held by {existing.holder.label})"
    return LockDecision(
        announcement=f"🔓 {person.label} unlocked `{name}`{override}. Deploys may go there again."
    )


def overrides(existing: Lock | None, person: Person, now: datetime) -> bool:
    """Whether releasing `existing` would take someone else's lock away."""
    return existing is not None and existing.held_at(now) and not existing.holder.same_as(person)


def _holder(lock: Lock) -> str:
    return f"<@{lock.holder.slack}>" if lock.holder.slack else lock.holder.label


def reminder_text(repository: str, lock: Lock) -> str:
    """`⏰ <@U1> your lock on `production` of acme/api (reason) expires at 10:00 UTC; ...`."""
    why = f" ({lock.reason})" if lock.reason else ""
    at = lock.expires_at.strftime("%H:%M UTC") if lock.expires_at is not None else "soon"
    return (
        f"⏰ {_holder(lock)} your lock on `{lock.environment}` of {repository}{why} expires "
        f"at {at}; `/deploy lock {repository} {lock.environment}` renews it."
    )


def expired_text(repository: str, lock: Lock) -> str:
    return (
        f"🔓 the lock on `{lock.environment}` of {repository} held by {lock.holder.label} "
        f"expired; deploys may go there again."
    )


def notices(
    locks: Iterable[tuple[str, Lock]], now: datetime, *, ahead: timedelta = REMINDER_AHEAD
) -> list[ChannelMessage]:
    """What to say about `(repository, lock)` pairs at `now`: a reminder to the holder of a
    lock still held that expires within `ahead`, and an announcement of a lock that expired
    less than `ahead` ago. Each message's key names the lock (repository, environment and
    when it was taken), so each lock is reminded and announced once however often asked;
    a renewal keeps `since` but moves the expiry, which is part of the key too."""
    said: list[ChannelMessage] = []
    for repository, lock in locks:
        if lock.expires_at is None:
            continue
        lock_id = f"{lock.environment.lower()}:{lock.since.isoformat()}"
        expiry = lock.expires_at.isoformat()
        if lock.held_at(now):
            if lock.expires_at - now <= ahead:
                said.append(
                    ChannelMessage(
                        repository,
                        f"lock-reminder:{lock_id}:{expiry}",
                        reminder_text(repository, lock),
                        mention=lock.holder.slack,
                    )
                )
        elif now - lock.expires_at < ahead:
            said.append(
                ChannelMessage(
                    repository,
                    f"lock-expired:{lock_id}:{expiry}",
                    expired_text(repository, lock),
                )
            )
    return said
