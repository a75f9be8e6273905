"""Required checks: whether a commit's statuses and check runs let it be deployed. Pure.

A commit carries two kinds of checks on GitHub: commit statuses (one per `context`, the
latest state of each: `success`, `pending`, `failure`, `error`) and check runs (one per
`name`, with a `status`, and a `conclusion` once `completed`). `verdict` reads both:

- a status `success` passes, `pending` is pending, `failure` and `error` fail;
- a check run not yet `completed` (`queued`, `in_progress`, `waiting`, `requested`,
  `pending`) is pending; completed, `success`, `neutral` and `skipped` pass, and every
  other conclusion (`failure`, `cancelled`, `timed_out`, `action_required`,
  `startup_failure`, `stale`) fails;
- a state or conclusion GitHub may add later fails: it cannot be shown to be green;
- several entries under one name (a status and a check run, or two check suites with a
  job of the same name) count as their worst;
- a commit with no statuses and no check runs at all is green: nothing is required of it.
  (GitHub's own combined `state` says `pending` then, so it is not used.)

`machine.request_deploy` refuses a deploy to an environment with `checks: required` unless
the verdict is green, naming what fails and what is still running.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class State(StrEnum):
    """One check's outcome, and a verdict's: worst first when ordered by `_RANK`."""

    GREEN = "green"
    PENDING = "pending"
    FAILING = "failing"


_RANK = {State.GREEN: 0, State.PENDING: 1, State.FAILING: 2}

STATUS_STATES: Mapping[str, State] = {
    "success": State.GREEN,
    "pending": State.PENDING,
    "failure": State.FAILING,
    "error": State.FAILING,
}
CHECK_RUN_STATUSES = ("queued", "in_progress", "completed", "waiting", "requested", "pending")
PASSING_CONCLUSIONS = frozenset({"success", "neutral", "skipped"})
FAILING_CONCLUSIONS = frozenset(
    {"failure", "cancelled", "timed_out", "action_required", "startup_failure", "stale"}
)
SHOWN = 10  # names listed in a refusal before "and N more"
LONGEST = 80  # characters of one name shown


@dataclass(frozen=True)
class CheckRun:
    """A check run on the commit: `status`, and `conclusion` once it is `completed`."""

    name: str
    status: str
    conclusion: str | None = None

    @property
    def state(self) -> State:
        if self.status != "completed":
            return State.PENDING
        if self.conclusion in PASSING_CONCLUSIONS:
            return State.GREEN
        return State.FAILING  # the failing conclusions, and any GitHub adds later


def status_state(state: str) -> State:
    """A commit status's state as a check's outcome (an unknown state fails)."""
    return STATUS_STATES.get(state, State.FAILING)


@dataclass(frozen=True)
class Checks:
    """What GitHub says of a commit: the latest commit status of each context, and its check
    runs."""

    statuses: Mapping[str, str] = field(default_factory=dict)
    check_runs: tuple[CheckRun, ...] = ()

    def outcomes(self) -> Iterable[tuple[str, State]]:
        for context, state in self.statuses.items():
            yield context, status_state(state)
        for run in self.check_runs:
            yield run.name, run.state


@dataclass(frozen=True)
class Verdict:
    """The checks that fail and those still pending, each named once, sorted."""

    failing: tuple[str, ...] = ()
    pending: tuple[str, ...] = ()

    @property
    def state(self) -> State:
        if self.failing:
            return State.FAILING
        return State.PENDING if self.pending else State.GREEN

    @property
    def green(self) -> bool:
        return self.state is State.GREEN

    def describe(self) -> str:
        """The names by outcome, e.g. failing: `ci/build`, `lint`; pending: `e2e` (empty when
        green)."""
        parts = [
            f"{label}: {_names(names)}"
            for label, names in (("failing", self.failing), ("pending", self.pending))
            if names
        ]
        return "; ".join(parts)

    def refusal(self, environment: str, short_sha: str) -> str:
        """Why a deploy of `short_sha` to `environment` is refused, and what to do."""
        return (
            f"`{environment}` needs green checks on {short_sha}: {self.describe()}. "
            f"Fix them or wait, then deploy again (or `--force`)."
        )


GREEN = Verdict()


def verdict(checks: Checks) -> Verdict:
    """Green, or the names of the checks that fail and of those still pending."""
    worst: dict[str, State] = {}
    for name, state in checks.outcomes():
        if name not in worst or _RANK[state] > _RANK[worst[name]]:
            worst[name] = state
    return Verdict(
        failing=_sorted(name for name, state in worst.items() if state is State.FAILING),
        pending=_sorted(name for name, state in worst.items() if state is State.PENDING),
    )


def _sorted(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted(names, key=lambda name: (name.casefold(), name)))


def _names(names: tuple[str, ...]) -> str:
    shown = ", ".join(_code(name) for name in names[:SHOWN])
    more = len(names) - SHOWN
    return f"{shown} and {more} more" if more > 0 else shown


def _code(name: str) -> str:
    """A check's name as inline code: names come from CI files a pull request can change, so
    they must not mention anyone, link or break out of the span on GitHub or in Slack."""
    flat = " ".join(name.replace("`", "'").split())
    if len(flat) > LONGEST:
        flat = flat[: LONGEST - 1] + "…"
    return f"`{flat or '?'}`"
