"""Canary steps (`canary: {steps: [1, 10, 25, 50, 100], pause: 5m}`): where a rollout
starts, which step is next, and how far along it is. Pure.

A rollout remembers the index and weight of its step; the pipeline file may change under
it, so a step the file no longer has counts as the last one (the rollout finishes as a
plain deploy instead of guessing a weight).
"""

from __future__ import annotations

from bot.pipeline.config import Canary, CanaryStep
from bot.pipeline.models import Kind, Rollout


def first(canary: Canary | None) -> tuple[int | None, int | None]:
    """The step index and weight a new deploy starts at; (None, None) without a canary."""
    if canary is None:
        return None, None
    return 0, canary.steps[0].weight


def current(canary: Canary | None, rollout: Rollout) -> CanaryStep | None:
    """The rollout's step while it is short of 100 %: what is verified for `pause` before
    the next step. None for a plain deploy, a rollback and the last step."""
    if canary is None or rollout.kind is not Kind.DEPLOY or rollout.step is None:
        return None
    if rollout.step >= len(canary.steps) - 1 or (rollout.weight or 0) >= 100:
        return None
    return canary.steps[rollout.step]


def following(canary: Canary, rollout: Rollout) -> tuple[int, int]:
    """The index and weight of the step after the rollout's (which is not the last)."""
    index = (rollout.step or 0) + 1
    return index, canary.steps[index].weight


def position(canary: Canary | None, rollout: Rollout) -> str:
    """`step 2 of 5`, or empty when the rollout is no canary step."""
    if canary is None or rollout.step is None:
        return ""
    return f"step {rollout.step + 1} of {len(canary.steps)}"


def orphaned(canary: Canary | None, rollout: Rollout) -> bool:
    """A canary deploy short of 100 % whose step the pipeline file no longer has (the canary
    or the step was removed): it must still reach 100 %."""
    return (
        rollout.kind is Kind.DEPLOY
        and rollout.step is not None
        and (rollout.weight or 0) < 100
        and current(canary, rollout) is None
    )
