"""Environment locks (pure): taking, renewing, releasing, expiring, overriding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.pipeline.config import parse_pipeline
from bot.pipeline.locks import DEFAULT_TTL, Lock, describe, overrides, release, take
from bot.pipeline.models import Person

PIPELINE = parse_pipeline("environments: [{name: stage}, {name: production}]")
NOW = datetime(2026, 11, 22, 9, 0, tzinfo=UTC)
ALICE = Person(github="alice", slack="U0ALICE")
BOB = Person(github="bob")


def held_by(person: Person, *, since: datetime = NOW, ttl: timedelta = DEFAULT_TTL) -> Lock:
    return Lock("stage", person, since=since, expires_at=since + ttl, reason="migration")


def test_locking_a_free_environment() -> None:
    decision = take(
        PIPELINE, environment="STAGE", person=ALICE, existing=None, reason="db", now=NOW
    )
    assert decision.lock == Lock("stage", ALICE, NOW, NOW + DEFAULT_TTL, "db")
    assert "alice locked `stage` until 2026-11-23 09:00 UTC: db" in decision.announcement


def test_unknown_environment_names_the_real_ones() -> None:
    decision = take(PIPELINE, environment="qa", person=ALICE, existing=None, reason=None, now=NOW)
    assert decision.refusal == "`qa` is not an environment here: `stage`, `production`."


def test_someone_elses_lock_is_refused_with_who_and_since() -> None:
    decision = take(
        PIPELINE, environment="stage", person=BOB, existing=held_by(ALICE), reason=None, now=NOW
    )
    assert decision.refused and decision.lock is None
    assert "locked by alice since 2026-11-22 09:00 UTC (migration)" in (decision.refusal or "")


def test_the_holder_renews_keeping_since() -> None:
    later = NOW + timedelta(hours=3)
    decision = take(
        PIPELINE,
        environment="stage",
        person=Person(slack="U0ALICE"),
        existing=held_by(ALICE),
        reason="still migrating",
        now=later,
    )
    assert decision.lock is not None and decision.lock.since == NOW
    assert decision.lock.expires_at == later + DEFAULT_TTL
    assert "renewed" in decision.announcement


def test_an_expired_lock_holds_nothing() -> None:
    expired = held_by(ALICE, since=NOW - timedelta(days=2))
    assert not expired.held_at(NOW)
    decision = take(
        PIPELINE, environment="stage", person=BOB, existing=expired, reason=None, now=NOW
    )
    assert decision.lock is not None and decision.lock.holder == BOB and decision.lock.since == NOW
    assert (
        release(
            PIPELINE, environment="stage", person=BOB, existing=expired, is_admin=False, now=NOW
        ).refusal
        == "`stage` is not locked."
    )


@pytest.mark.parametrize(
    ("person", "is_admin", "allowed", "says"),
    [
        (ALICE, False, True, "alice unlocked `stage`. "),
        (Person(github="ALICE"), False, True, "unlocked `stage`. "),
        (BOB, False, False, "Only they or a repository admin"),
        (BOB, True, True, "bob unlocked `stage` (held by alice)"),
    ],
)
def test_who_may_unlock(person: Person, is_admin: bool, allowed: bool, says: str) -> None:
    decision = release(
        PIPELINE,
        environment="stage",
        person=person,
        existing=held_by(ALICE),
        is_admin=is_admin,
        now=NOW,
    )
    assert decision.refused is not allowed
    assert says in (decision.announcement if allowed else decision.refusal or "")


def test_overrides_only_someone_elses_held_lock() -> None:
    assert overrides(held_by(ALICE), BOB, NOW)
    assert not overrides(held_by(ALICE), ALICE, NOW)
    assert not overrides(None, BOB, NOW)
    assert not overrides(held_by(ALICE, since=NOW - timedelta(days=2)), BOB, NOW)
    assert describe(held_by(ALICE)) == "locked by alice since 2026-11-22 09:00 UTC (migration)"


people = st.sampled_from([ALICE, BOB, Person(slack="U0ALICE"), Person(github="carol")])


@given(holder=people, asker=people, admin=st.booleans(), hours=st.integers(0, 48))
def test_only_the_holder_or_an_admin_ever_takes_a_held_lock_away(
    holder: Person, asker: Person, admin: bool, hours: int
) -> None:
    now = NOW + timedelta(hours=hours)
    existing = held_by(holder)
    taken = take(
        PIPELINE, environment="stage", person=asker, existing=existing, reason=None, now=now
    )
    freed = release(
        PIPELINE, environment="stage", person=asker, existing=existing, is_admin=admin, now=now
    )
    if existing.held_at(now) and not holder.same_as(asker):
        assert taken.refused
        assert freed.refused is not admin
    if not existing.held_at(now):
        assert not taken.refused and freed.refused
