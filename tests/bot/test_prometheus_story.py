"""Prometheus analysis (issue 5, item 6): `health.prometheus` instant queries with `max`/`min`
bounds, judged with the HTTP check, and the thread showing the values measured.

First the rules in the pure core (what the thread says, from a probe's evidence), then the
story through the real app in process, on both databases: GitHub and Slack emulators, a health
endpoint and the emulated Prometheus HTTP API (`integrations.emulators.prometheus`), the
scheduler ticking the probes.
"""

from __future__ import annotations

import html
import json
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from bot.pipeline.config import parse_pipeline
from bot.pipeline.effects import CreateDeployment, ThreadReply
from bot.pipeline.machine import Release, probed
from bot.pipeline.models import Evidence, Kind, Person, Rollout, Status
from integrations.emulators.prometheus import PrometheusEmulator
from tests.story import (
    CHANNEL,
    NAME,
    OWNER,
    HealthEndpoint,
    Story,
    comment,
    deployment_status,
    installation_created,
    pull_request,
)

ERRORS = "sum(rate(http_errors_total[5m])) / sum(rate(http_requests_total[5m]))"
P99 = "histogram_quantile(0.99, sum by (le) (rate(http_duration_seconds_bucket[5m])))"
UP = 'sum(up{job="api"})'

# --- the rules in the pure core -----------------------------------------------------------

PIPELINE = parse_pipeline(
    f"""
environments:
  - name: stage
    health:
      url: http://stage.test/healthz
      prometheus:
        - {{url: "http://prometheus.test:9090", query: '{ERRORS}', max: 0.02}}
        - {{url: "http://prometheus.test:9090", query: '{UP}', min: 2}}
      interval: 30s
      soak: 5m
      failures: 3
"""
)
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
GOOD, BAD = "a" * 40, "b" * 40
RELEASE = Release(id=7, repository="acme/api", commit_sha=BAD, pr_number=42)
HTTP_OK = "GET http://stage.test/healthz → 200 in 12 ms"


def verifying(**changes) -> Rollout:
    base = Rollout(
        id=100,
        repository="acme/api",
        environment="stage",
        commit_sha=BAD,
        status=Status.VERIFYING,
        requested_by=Person(github="alice"),
        created_at=NOW,
        next_check_at=NOW,
    )
    return replace(base, **changes)


def evidence(at: datetime, *checks: tuple[bool, str]) -> Evidence:
    return Evidence(
        all(ok for ok, _ in checks), "; ".join(line for _, line in checks), at, tuple(checks)
    )


def probe(rollout: Rollout, seen: Evidence):
    return probed(
        pipeline=PIPELINE,
        release=RELEASE,
        rollout=rollout,
        evidence=seen,
        now=seen.at,
        last_good_sha=GOOD,
        rollback_id=200,
    )


def replies(outcome) -> list[str]:
    return [effect.text for effect in outcome.effects if isinstance(effect, ThreadReply)]


def test_success_after_the_soak_shows_the_values_that_passed() -> None:
    healthy = (
        (True, HTTP_OK),
        (True, f"{ERRORS} = 0.004 ≤ max 0.02"),
        (True, f"{UP} = 3 ≥ min 2"),
    )
    r = verifying()
    for minute in range(5):
        outcome = probe(r, evidence(NOW + timedelta(minutes=minute), *healthy))
        assert replies(outcome) == [], "nothing to say while soaking"
        (r,) = outcome.rollouts
    outcome = probe(r, evidence(NOW + timedelta(minutes=5), *healthy))
    (done,) = outcome.rollouts
    assert done.status is Status.SUCCESS
    assert replies(outcome) == [
        f"`stage` is running bbbbbbb, healthy for 5m: {HTTP_OK}; {ERRORS} = 0.004 ≤ max 0.02; "
        f"{UP} = 3 ≥ min 2."
    ]


def test_the_first_failed_check_of_a_run_says_what_it_measured() -> None:
    bad = evidence(NOW, (True, HTTP_OK), (False, f"{ERRORS} = 0.05 > max 0.02"))
    outcome = probe(verifying(), bad)
    (r,) = outcome.rollouts
    assert (r.status, r.failure_streak) == (Status.VERIFYING, 1)
    assert replies(outcome) == [
        f"`stage` failed a health check (1 of 3 in a row fail the deploy): {ERRORS} = 0.05 > "
        f"max 0.02. Checking again in 30s."
    ]
    # The second failure of the run is quiet; a healthy probe ends the run, so the next
    # failure speaks again (a reply of its own: the event names the probe's time).
    outcome = probe(r, replace(bad, at=NOW + timedelta(seconds=30)))
    assert replies(outcome) == []
    (r,) = outcome.rollouts
    (r,) = probe(r, evidence(NOW + timedelta(minutes=1), (True, HTTP_OK))).rollouts
    again = probe(r, replace(bad, at=NOW + timedelta(minutes=2)))
    assert len(replies(again)) == 1
    keys = {e.key for e in outcome.effects} | {e.key for e in again.effects}
    assert len(keys) == len(outcome.effects) + len(again.effects)


@pytest.mark.parametrize(
    ("checks", "reason", "quote"),
    [
        (
            ((True, HTTP_OK), (False, f"{ERRORS} = 0.05 > max 0.02"), (True, f"{UP} = 3 ≥ min 2")),
            f"3 health checks in a row failed ({ERRORS} = 0.05 > max 0.02)",
            f"\n> still passing: {HTTP_OK}; {UP} = 3 ≥ min 2",
        ),
        (
            (
                (False, "GET http://stage.test/healthz → 503 in 3 ms"),
                (False, f"{UP} = 1 < min 2"),
            ),
            f"3 health checks in a row failed (GET http://stage.test/healthz → 503 in 3 ms; "
            f"{UP} = 1 < min 2)",
            "",
        ),
        (
            ((True, HTTP_OK), (False, f"{ERRORS} = NaN, not a number (max 0.02)")),
            f"3 health checks in a row failed ({ERRORS} = NaN, not a number (max 0.02))",
            f"\n> still passing: {HTTP_OK}",
        ),
    ],
)
def test_the_failure_names_query_value_and_bound(
    checks: tuple[tuple[bool, str], ...], reason: str, quote: str
) -> None:
    r = verifying(failure_streak=2)
    outcome = probe(r, evidence(NOW, *checks))
    failed, rollback = outcome.rollouts
    assert (failed.status, failed.note) == (Status.FAILURE, reason)
    assert (rollback.kind, rollback.commit_sha) == (Kind.ROLLBACK, GOOD)
    assert replies(outcome) == [
        f"`stage` to bbbbbbb failed: {reason}.{quote}",
        f"Rolling `stage` back to aaaaaaa because {reason}.",
    ]
    assert [type(e) for e in outcome.effects].count(CreateDeployment) == 1


def test_many_failing_series_are_cut_to_a_line() -> None:
    lines = [(False, f'up{{pod="api-{i}"}} = 0 < min 1') for i in range(40)]
    outcome = probe(verifying(failure_streak=2), evidence(NOW, *lines))
    note = outcome.rollouts[0].note
    assert note is not None and len(note) < 360 and note.endswith("…)")


def test_evidence_without_checks_reads_as_before() -> None:
    outcome = probe(verifying(failure_streak=2), Evidence(False, "HTTP 503", NOW))
    assert (
        replies(outcome)[0]
        == "`stage` to bbbbbbb failed: 3 health checks in a row failed.\n> HTTP 503"
    )
    outcome = probe(verifying(), Evidence(False, "HTTP 503", NOW))
    assert "(1 of 3 in a row fail the deploy): HTTP 503." in replies(outcome)[0]


# --- the story through the app ------------------------------------------------------------


def pipeline_file(*, health_url: str, prometheus_url: str) -> str:
    return f"""
slack:
  channel: {CHANNEL}
users:
  alice: U0ALICE
environments:
  - name: stage
    health:
      url: "{health_url}"
      prometheus:
        - url: "{prometheus_url}"
          query: '{ERRORS}'
          max: 0.02
        - url: "{prometheus_url}"
          query: '{P99}'
          max: 0.5
        - url: "{prometheus_url}"
          query: '{UP}'
          min: 2
      interval: 1s
      soak: 2s
      failures: 2
"""


@pytest.fixture
def health():
    with HealthEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def prometheus():
    with PrometheusEmulator() as emulator:
        emulator.set(ERRORS, 0.004)
        emulator.set(P99, 0.21)
        emulator.set(UP, 3)
        yield emulator


@pytest.fixture
async def story(app, client, github, slack, health, prometheus) -> Story:

    github.set_file(
        OWNER,
        NAME,
        ".github/deploybot.yml",
        pipeline_file(health_url=health.url, prometheus_url=prometheus.url),
    )
    github.set_permission(OWNER, NAME, "alice", "write")
    story = Story.in_process(app, client, github, slack)
    await story.deliver("installation", installation_created())
    return story


def thread(story: Story) -> str:
    """The channel as people read it (Slack shows `&gt;` as `>`)."""
    return html.unescape(story.thread())


async def deploy_to_stage(story: Story, *, number: int, sha: str) -> dict:
    pr = pull_request("opened", number=number, sha=sha, title=f"Change {number}", author="alice")
    story.github.respond("pulls/get", body=pr["pull_request"])
    await story.deliver("pull_request", pr)
    await story.deliver(
        "issue_comment",
        comment("/deploy stage", number=number, login="alice", comment_id=100 + number),
    )
    (deployment,) = [d for d in story.deployments("stage") if d["sha"] == sha]
    return deployment


async def test_prometheus_values_in_the_thread_then_a_crossed_max_rolls_back_once(
    story: Story, prometheus: PrometheusEmulator, health: HealthEndpoint
) -> None:
    good, bad = "a" * 40, "b" * 40
    deployment = await deploy_to_stage(story, number=1, sha=good)
    await story.deliver("deployment_status", deployment_status(deployment["id"], "success"))
    await story.tick_until(lambda: "`stage` is running aaaaaaa" in story.thread())

    (success,) = [line for line in thread(story).splitlines() if "`stage` is running" in line]
    assert "healthy for 2s: GET " in success and "/healthz → 200 in " in success
    for measured in (
        f"{ERRORS} = 0.004 ≤ max 0.02",
        f"{P99} = 0.21 ≤ max 0.5",
        f"{UP} = 3 ≥ min 2",
    ):
        assert measured in success
    # Instant queries, each asked at every probe alongside the HTTP check: healthy at the
    # first probe and still at the last, two seconds later with a probe every second. (The
    # app's own scheduler ticks too, so a probe may be under way: no exact counts.)
    asked = prometheus.queries()
    assert set(asked) == {ERRORS, P99, UP}
    assert min(asked.count(query) for query in (ERRORS, P99, UP)) >= 3 and health.hits >= 3
    assert {call.method for call in prometheus.calls} == {"GET"}

    # The next change raises the error ratio past its max as soon as it is deployed.
    deployment = await deploy_to_stage(story, number=2, sha=bad)
    prometheus.set(ERRORS, 0.05)
    await story.deliver("deployment_status", deployment_status(deployment["id"], "success"))
    await story.tick_until(lambda: len(story.deployments("stage")) == 3)

    rollback = story.deployments("stage")[0]  # newest first
    assert (rollback["sha"], rollback["payload"]["kind"]) == (good, "rollback")
    text = thread(story)
    crossed = f"{ERRORS} = 0.05 > max 0.02"
    assert (
        f"`stage` failed a health check (1 of 2 in a row fail the deploy): {crossed}. "
        "Checking again in 1s." in text
    )
    assert f"`stage` to bbbbbbb failed: 2 health checks in a row failed ({crossed})." in text
    assert f"still passing: GET {health.url} → 200 in " in text
    assert f"{P99} = 0.21 ≤ max 0.5; {UP} = 3 ≥ min 2" in text
    assert (
        f"Rolling `stage` back to aaaaaaa because 2 health checks in a row failed ({crossed})."
        in text
    )

    await story.deliver("deployment_status", deployment_status(rollback["id"], "success"))
    assert "Rolled back `stage` to aaaaaaa" in story.thread()
    # Exactly one rollback, even as the query stays over its max.
    for _ in range(3):
        await story.tick()
        await story.settle()
    assert len(story.deployments("stage")) == 3
    assert thread(story).count("Rolling `stage` back") == 1
    assert thread(story).count("failed a health check") == 1

    boards = [m for m in story.slack.messages if m.get("thread_ts") in (None, m["ts"])]
    (board,) = [b for b in boards if "#2 Change 2" in json.dumps(b["blocks"])]
    drawn = html.unescape(json.dumps(board["blocks"], ensure_ascii=False))
    assert "rolled back" in drawn.lower() and "0.05 > max 0.02" in drawn
    assert story.github.invalid_requests == [] and story.slack.invalid_calls == []


async def test_a_min_crossed_once_restarts_the_soak_and_a_prometheus_error_is_shown(
    story: Story, prometheus: PrometheusEmulator
) -> None:
    # For one evaluation only, a target is down: under the min of 2, then 3 again.
    sample = {"metric": {}, "value": [time.time(), "1"]}
    once = {"status": "success", "data": {"resultType": "vector", "result": [sample]}}
    prometheus.respond(UP, body=once, times=1)
    deployment = await deploy_to_stage(story, number=3, sha="c" * 40)
    await story.deliver("deployment_status", deployment_status(deployment["id"], "success"))
    await story.tick_until(lambda: "failed a health check" in story.thread())
    assert f"(1 of 2 in a row fail the deploy): {UP} = 1 < min 2." in thread(story)

    # Healthy again before a second failure: the soak starts over and completes.
    await story.tick_until(lambda: "`stage` is running ccccccc" in story.thread())
    assert f"{UP} = 3 ≥ min 2" in thread(story)
    assert len(story.deployments("stage")) == 1, "no rollback"

    # A Prometheus that cannot answer fails the check, and the thread says why.
    deployment = await deploy_to_stage(story, number=4, sha="d" * 40)
    prometheus.fail(
        P99, error_type="execution", error="expanding series: too many samples", times=5
    )
    await story.deliver("deployment_status", deployment_status(deployment["id"], "success"))
    await story.tick_until(lambda: len(story.deployments("stage")) == 3)
    assert (
        f"2 health checks in a row failed ({P99} → Prometheus execution: expanding series: "
        "too many samples)" in thread(story)
    )
    assert story.deployments("stage")[0]["sha"] == "c" * 40
