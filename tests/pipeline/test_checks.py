"""Required checks (issue 5, item 7): the verdict on a commit's statuses and check runs, and
the deploy rule that uses it. Pure: tables for GitHub's every state, hypothesis for the
verdict's invariants."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.pipeline.checks import (
    CHECK_RUN_STATUSES,
    FAILING_CONCLUSIONS,
    GREEN,
    PASSING_CONCLUSIONS,
    SHOWN,
    CheckRun,
    Checks,
    State,
    Verdict,
    verdict,
)
from bot.pipeline.config import parse_pipeline
from bot.pipeline.effects import CreateDeployment
from bot.pipeline.machine import Release, request_deploy
from bot.pipeline.models import EnvironmentHistory, Person, Status

# --- one check at a time ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("success", State.GREEN),
        ("pending", State.PENDING),
        ("failure", State.FAILING),
        ("error", State.FAILING),
        ("something-new", State.FAILING),  # cannot be shown to be green
    ],
)
def test_a_commit_status(state: str, expected: State) -> None:
    found = verdict(Checks(statuses={"ci/build": state}))
    assert found.state is expected
    assert found.failing == (("ci/build",) if expected is State.FAILING else ())
    assert found.pending == (("ci/build",) if expected is State.PENDING else ())


@pytest.mark.parametrize(
    ("status", "conclusion", "expected"),
    [
        ("queued", None, State.PENDING),
        ("in_progress", None, State.PENDING),
        ("waiting", None, State.PENDING),
        ("requested", None, State.PENDING),
        ("pending", None, State.PENDING),
        ("completed", "success", State.GREEN),
        ("completed", "neutral", State.GREEN),
        ("completed", "skipped", State.GREEN),
        ("completed", "failure", State.FAILING),
        ("completed", "cancelled", State.FAILING),
        ("completed", "timed_out", State.FAILING),
        ("completed", "action_required", State.FAILING),
        ("completed", "startup_failure", State.FAILING),
        ("completed", "stale", State.FAILING),
        ("completed", None, State.FAILING),  # completed without a conclusion: not green
        ("completed", "something-new", State.FAILING),
    ],
)
def test_a_check_run(status: str, conclusion: str | None, expected: State) -> None:
    found = verdict(Checks(check_runs=(CheckRun("e2e", status, conclusion),)))
    assert found.state is expected
    assert (found.failing, found.pending) == {
        State.GREEN: ((), ()),
        State.PENDING: ((), ("e2e",)),
        State.FAILING: (("e2e",), ()),
    }[expected]


def test_nothing_at_all_is_green() -> None:
    assert verdict(Checks()) == GREEN
    assert GREEN.green and GREEN.state is State.GREEN and GREEN.describe() == ""


# --- many checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("statuses", "runs", "failing", "pending"),
    [
        ({"ci/build": "success"}, [("lint", "completed", "success")], (), ()),
        ({"ci/build": "failure"}, [("lint", "completed", "success")], ("ci/build",), ()),
        ({"ci/build": "success"}, [("e2e", "in_progress", None)], (), ("e2e",)),
        (
            {"ci/build": "error", "deploy/preview": "pending"},
            [("lint", "completed", "timed_out"), ("e2e", "queued", None)],
            ("ci/build", "lint"),
            ("deploy/preview", "e2e"),
        ),
        # A name reported twice (two suites, or a status and a check run) counts as its worst.
        (
            {},
            [("build", "completed", "success"), ("build", "completed", "failure")],
            ("build",),
            (),
        ),
        ({}, [("build", "queued", None), ("build", "completed", "success")], (), ("build",)),
        ({"build": "success"}, [("build", "in_progress", None)], (), ("build",)),
        ({"build": "failure"}, [("build", "in_progress", None)], ("build",), ()),
        # Sorted without regard to case, each name once.
        (
            {"Zeta": "failure", "alpha": "failure", "Beta": "failure"},
            [],
            ("alpha", "Beta", "Zeta"),
            (),
        ),
    ],
)
def test_the_verdict_names_what_fails_and_what_runs(
    statuses: dict[str, str],
    runs: list[tuple[str, str, str | None]],
    failing: tuple[str, ...],
    pending: tuple[str, ...],
) -> None:
    found = verdict(Checks(statuses=statuses, check_runs=tuple(CheckRun(*r) for r in runs)))
    assert (found.failing, found.pending) == (failing, tuple(sorted(pending, key=str.casefold)))
    expected = State.FAILING if failing else State.PENDING if pending else State.GREEN
    assert found.state is expected and found.green is (expected is State.GREEN)


def test_the_refusal_reads_as_the_issue_asks() -> None:
    found = verdict(
        Checks(
            statuses={"ci/build": "failure"},
            check_runs=(CheckRun("lint", "completed", "failure"), CheckRun("e2e", "queued")),
        )
    )
    assert found.refusal("production", "abc1234") == (
        "`production` needs green checks on abc1234: failing: `ci/build`, `lint`; "
        "pending: `e2e`. Fix them or wait, then deploy again (or `--force`)."
    )
    assert Verdict(pending=("e2e",)).describe() == "pending: `e2e`"


def test_long_lists_are_cut_and_names_cannot_break_out() -> None:
    many = Verdict(failing=tuple(f"job-{n:02}" for n in range(SHOWN + 3)))
    assert many.describe().endswith("`job-09` and 3 more")
    odd = Verdict(failing=("a`b @acme/sre\nline two", "x" * 200, ""))
    text = odd.describe()
    assert "`a'b @acme/sre line two`" in text and "\n" not in text
    assert "`" + "x" * 79 + "…`" in text and "`?`" in text


# --- properties ------------------------------------------------------------------------

NAMES = st.sampled_from(["ci/build", "lint", "e2e", "Docs", "security/scan", "deploy"])
STATUS_STATES = st.sampled_from(["success", "pending", "failure", "error"])
RUNS = st.one_of(
    st.builds(
        CheckRun,
        NAMES,
        st.sampled_from([s for s in CHECK_RUN_STATUSES if s != "completed"]),
        st.none(),
    ),
    st.builds(
        CheckRun,
        NAMES,
        st.just("completed"),
        st.sampled_from(sorted(PASSING_CONCLUSIONS | FAILING_CONCLUSIONS)),
    ),
)
CHECKS = st.builds(
    Checks,
    statuses=st.dictionaries(NAMES, STATUS_STATES, max_size=6),
    check_runs=st.lists(RUNS, max_size=8).map(tuple),
)


@given(CHECKS)
def test_every_name_is_judged_once_by_its_worst(checks: Checks) -> None:
    found = verdict(checks)
    names = {name for name, _ in checks.outcomes()}
    assert not set(found.failing) & set(found.pending)
    assert set(found.failing) | set(found.pending) <= names
    for name in names:
        states = {state for n, state in checks.outcomes() if n == name}
        if State.FAILING in states:
            assert name in found.failing
        elif State.PENDING in states:
            assert name in found.pending
        else:
            assert name not in found.failing and name not in found.pending
    assert found.green is (not found.failing and not found.pending)


@given(CHECKS, st.randoms())
def test_the_order_github_lists_them_in_does_not_matter(checks: Checks, random) -> None:
    runs = list(checks.check_runs)
    random.shuffle(runs)
    items = list(checks.statuses.items())
    random.shuffle(items)
    assert verdict(Checks(statuses=dict(items), check_runs=tuple(runs))) == verdict(checks)


@given(CHECKS, RUNS)
def test_one_more_check_never_makes_it_greener(checks: Checks, extra: CheckRun) -> None:
    rank = {State.GREEN: 0, State.PENDING: 1, State.FAILING: 2}
    before = verdict(checks)
    after = verdict(Checks(statuses=checks.statuses, check_runs=(*checks.check_runs, extra)))
    assert rank[after.state] >= rank[before.state]
    assert set(before.failing) <= set(after.failing)


@given(CHECKS)
def test_all_passing_is_green(checks: Checks) -> None:
    passing = Checks(
        statuses=dict.fromkeys(checks.statuses, "success"),
        check_runs=tuple(CheckRun(r.name, "completed", "success") for r in checks.check_runs),
    )
    assert verdict(passing) == GREEN


# --- the deploy rule -------------------------------------------------------------------

PIPELINE = parse_pipeline(
    """
environments:
  - name: stage
  - name: production
    approvals: 1
    approvers: [bob]
  - name: sandbox
    checks: ignore
"""
)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SHA = "abc1234" + "0" * 33
RELEASE = Release(id=7, repository="acme/api", commit_sha=SHA, pr_number=42)
FAILING = Verdict(failing=("ci/build", "lint"), pending=("e2e",))


def ask(environment: str, **kwargs):
    args = dict(
        pipeline=PIPELINE,
        release=RELEASE,
        environment=environment,
        requester=Person(github="alice"),
        target=EnvironmentHistory(),
        succeeded_here=frozenset({"stage", "production"}),
        rollout_id=100,
        now=NOW,
    )
    return request_deploy(**{**args, **kwargs})


@pytest.mark.parametrize(
    ("environment", "checks", "force", "refused"),
    [
        ("stage", FAILING, False, True),
        ("stage", Verdict(pending=("e2e",)), False, True),
        ("stage", GREEN, False, False),
        ("stage", None, False, False),  # not looked up: no gate
        ("stage", FAILING, True, False),  # --force overrides
        ("production", FAILING, False, True),  # before any approval is asked for
        ("production", GREEN, False, False),
        ("sandbox", FAILING, False, False),  # checks: ignore
    ],
)
def test_a_deploy_needs_green_checks_where_required(
    environment: str, checks: Verdict | None, force: bool, refused: bool
) -> None:
    outcome = ask(environment, checks=checks, force=force)
    assert outcome.refused is refused
    if refused:
        assert outcome.rollouts == () and outcome.effects == ()
        assert outcome.refusal.startswith(f"`{environment}` needs green checks on abc1234: ")
        assert "`--force`" in outcome.refusal
    else:
        (rollout,) = outcome.rollouts
        assert rollout.status in {Status.PENDING, Status.AWAITING_APPROVAL}


def test_the_refusal_names_the_environment_commit_and_checks() -> None:
    assert ask("stage", checks=FAILING).refusal == (
        "`stage` needs green checks on abc1234: failing: `ci/build`, `lint`; pending: `e2e`. "
        "Fix them or wait, then deploy again (or `--force`)."
    )


def test_a_forced_deploy_still_creates_the_deployment() -> None:
    outcome = ask("stage", checks=FAILING, force=True)
    assert any(isinstance(e, CreateDeployment) for e in outcome.effects)
