"""The pipeline file: schema, parsing, error locations, defaults, helpers, `check-config`."""

from __future__ import annotations

import re
import textwrap
from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from typer.testing import CliRunner

from bot.cli import cli
from bot.pipeline import config
from bot.pipeline.config import (
    DEFAULT_PIPELINE,
    RESERVED_ENVIRONMENT_NAMES,
    Canary,
    CanaryStep,
    Checks,
    Environment,
    GitHubTeam,
    GitHubUser,
    Health,
    Hours,
    Pipeline,
    PipelineError,
    Problem,
    PrometheusQuery,
    RepoAdmins,
    Slack,
    SlackUser,
    Window,
    format_duration,
    parse_approver,
    parse_duration,
    parse_pipeline,
)

CONTRACT = Path(__file__).resolve().parents[2].parent / "shared" / "CONTRACT.md"

# CONTRACT §4, verbatim.
CONTRACT_EXAMPLE = """\
slack:
  channel: C0123456789          # channel id; or subscribe with `/deploy subscribe owner/repo`
users:                          # GitHub login -> Slack user id (trusted: it lives on the default branch)
  alice: U0ALICE
environments:                   # in promotion order
  - name: stage
    auto: false                 # true: deploy as soon as the previous environment succeeds (the first: on merge to the default branch)
    health:
      url: https://stage.example.com/healthz     # HTTP check: healthy when status < 400
      prometheus:                                # optional, any number of queries
        - url: http://prometheus:9090
          query: sum(rate(http_requests_total{code=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))
          max: 0.02                             # or min:
      interval: 30s             # durations: "500ms", "30s", "5m", "1h" or a number of seconds
      soak: 5m                  # healthy for this long after success → the rollout succeeds
      failures: 3               # this many failed checks in a row → the rollout fails
  - name: production
    approvals: 1                # distinct approvers needed; the requester never counts
    approvers: [bob, U0CAROL, "@acme/sre"]   # GitHub logins, Slack user ids, or GitHub teams
    window: {days: mon-fri, hours: "09:00-16:00", timezone: Europe/Stockholm}
    canary: {steps: [1, 10, 25, 50, 100], pause: 5m}   # a step may be {weight: 50, manual: true}
    checks: required            # required (default): the commit's statuses and check runs must be green; or ignore
    auto_rollback: true         # default true
"""  # noqa: E501

CONTRACT_PIPELINE = Pipeline(
    slack=Slack(channel="C0123456789"),
    users={"alice": "U0ALICE"},
    environments=(
        Environment(
            name="stage",
            health=Health(
                url="https://stage.example.com/healthz",
                prometheus=(
                    PrometheusQuery(
                        url="http://prometheus:9090",
                        query='sum(rate(http_requests_total{code=~"5.."}[5m])) / '
                        "sum(rate(http_requests_total[5m]))",
                        max=0.02,
                    ),
                ),
                interval=timedelta(seconds=30),
                soak=timedelta(minutes=5),
                failures=3,
            ),
        ),
        Environment(
            name="production",
            approvals=1,
            approvers=(GitHubUser("bob"), SlackUser("U0CAROL"), GitHubTeam("acme", "sre")),
            window=Window(
                days=frozenset({0, 1, 2, 3, 4}),
                hours=Hours(time(9), time(16)),
                timezone="Europe/Stockholm",
            ),
            canary=Canary(
                steps=tuple(CanaryStep(weight=w) for w in (1, 10, 25, 50, 100)),
                pause=timedelta(minutes=5),
            ),
            checks=Checks.REQUIRED,
            auto_rollback=True,
        ),
    ),
)


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(textwrap.dedent(text))
    return caught.value.problems


def only_problem(text: str) -> Problem:
    problems = problems_of(text)
    assert len(problems) == 1, problems
    return problems[0]


# --- valid files -------------------------------------------------------------------------


def test_the_contract_example_parses_to_the_expected_pipeline() -> None:
    assert parse_pipeline(CONTRACT_EXAMPLE) == CONTRACT_PIPELINE


def test_the_contract_example_here_is_the_one_in_the_contract() -> None:
    if not CONTRACT.is_file():
        pytest.skip("../shared/CONTRACT.md is not beside the project")
    section = CONTRACT.read_text(encoding="utf-8").split("## 4.", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert block is not None
    assert block[1] == CONTRACT_EXAMPLE


def test_a_minimal_environment_gets_every_default() -> None:
    pipeline = parse_pipeline("environments:\n  - name: web\n")
    assert pipeline.slack is None
    assert pipeline.users == {}
    assert pipeline.environments == (
        Environment(
            name="web",
            auto=False,
            health=None,
            approvals=0,
            approvers=(RepoAdmins(),),
            window=None,
            canary=None,
            checks=Checks.REQUIRED,
            auto_rollback=True,
        ),
    )


def test_health_window_and_canary_defaults() -> None:
    pipeline = parse_pipeline(
        textwrap.dedent(
            """\
            environments:
              - name: web
                health: {url: "http://web.internal:8080/healthz"}
                window: {timezone: UTC}
                canary: {steps: [100]}
            """
        )
    )
    web = pipeline.environments[0]
    assert web.health == Health(
        url="http://web.internal:8080/healthz",
        prometheus=(),
        interval=timedelta(seconds=30),
        soak=timedelta(minutes=5),
        failures=3,
    )
    assert web.window == Window(
        days=frozenset(range(7)), hours=Hours(time(0), time(0)), timezone="UTC"
    )
    assert web.canary == Canary(steps=(CanaryStep(weight=100),), pause=timedelta(minutes=5))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("", DEFAULT_PIPELINE, id="empty file"),
        pytest.param("# nothing yet\n", DEFAULT_PIPELINE, id="only comments"),
        pytest.param("{}\n", DEFAULT_PIPELINE, id="empty mapping"),
        pytest.param(
            "slack: {channel: C0DEPLOY}\nusers: {Alice: U0ALICE}\n",
            Pipeline(slack=Slack(channel="C0DEPLOY"), users={"alice": "U0ALICE"}),
            id="no environments: the default ones",
        ),
        pytest.param(
            "users:\nslack:\nenvironments: [{name: web, approvers: }]\n",
            Pipeline(environments=(Environment(name="web"),)),
            id="empty users, slack and approvers",
        ),
        pytest.param(
            "environments: [{name: web, approvals: 1, approvers: []}]\n",
            Pipeline(environments=(Environment(name="web", approvals=1),)),
            id="approvers [] means repository admins",
        ),
        pytest.param(
            "\ufeffenvironments: [{name: Web.Prod_2-eu}]\n",
            Pipeline(environments=(Environment(name="Web.Prod_2-eu"),)),
            id="byte order mark; name keeps its case",
        ),
        pytest.param(
            "environments:\n  - name: web\n    auto: yes\n    checks: ignore\n"
            "    auto_rollback: off\n",
            Pipeline(
                environments=(
                    Environment(name="web", auto=True, checks=Checks.IGNORE, auto_rollback=False),
                )
            ),
            id="YAML 1.1 booleans",
        ),
        pytest.param(
            "environments:\n  - name: web\n    health:\n      prometheus:\n"
            "        - {url: 'https://prom', query: up, min: 1}\n"
            "      interval: 1.5\n      soak: 90\n      failures: 1\n",
            Pipeline(
                environments=(
                    Environment(
                        name="web",
                        health=Health(
                            prometheus=(PrometheusQuery(url="https://prom", query="up", min=1),),
                            interval=timedelta(seconds=1.5),
                            soak=timedelta(seconds=90),
                            failures=1,
                        ),
                    ),
                )
            ),
            id="prometheus only, min, durations as numbers",
        ),
        pytest.param(
            "environments:\n  - name: web\n"
            "    canary: {steps: [5, {weight: 50, manual: true}, {weight: 100}], pause: 1h30m}\n",
            Pipeline(
                environments=(
                    Environment(
                        name="web",
                        canary=Canary(
                            steps=(
                                CanaryStep(weight=5),
                                CanaryStep(weight=50, manual=True),
                                CanaryStep(weight=100),
                            ),
                            pause=timedelta(hours=1, minutes=30),
                        ),
                    ),
                )
            ),
            id="canary with a manual step",
        ),
        pytest.param(
            "environments:\n  - &base\n    name: stage\n    health: {url: 'https://x'}\n"
            "  - <<: *base\n    name: production\n",
            Pipeline(
                environments=(
                    Environment(name="stage", health=Health(url="https://x")),
                    Environment(name="production", health=Health(url="https://x")),
                )
            ),
            id="anchors and merge keys",
        ),
    ],
)
def test_valid_files(text: str, expected: Pipeline) -> None:
    assert parse_pipeline(text) == expected


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("bob", GitHubUser("bob")),
        ("Bob-Smith", GitHubUser("bob-smith")),
        ("@bob", GitHubUser("bob")),
        ("ubuntu", GitHubUser("ubuntu")),
        ("u0carol", GitHubUser("u0carol")),
        ("U0CAROL", SlackUser("U0CAROL")),
        ("W012ABCDE", SlackUser("W012ABCDE")),
        ("@acme/sre", GitHubTeam("acme", "sre")),
        ("@Acme/SRE-oncall", GitHubTeam("acme", "sre-oncall")),
        (" bob ", GitHubUser("bob")),
    ],
)
def test_approvers_are_classified(entry: str, expected: object) -> None:
    assert parse_approver(entry) == expected
    assert parse_approver(str(expected)) == expected


@pytest.mark.parametrize("entry", ["acme/sre", "", "bob smith", "@", "-bob", "@acme/", 7, None])
def test_approvers_that_are_nothing_are_refused(entry: object) -> None:
    with pytest.raises(ValueError):
        parse_approver(entry)


@pytest.mark.parametrize(
    ("days", "expected"),
    [
        ("mon-fri", {0, 1, 2, 3, 4}),
        ("mon,wed,fri", {0, 2, 4}),
        ("sat-sun", {5, 6}),
        ("fri-mon", {4, 5, 6, 0}),
        ("Monday", {0}),
        ("mon - wed, sun", {0, 1, 2, 6}),
        (["tue", "thu-fri"], {1, 3, 4}),
        ("sun-sat", set(range(7))),
    ],
)
def test_window_days(days: object, expected: set[int]) -> None:
    assert Window.model_validate({"days": days, "timezone": "UTC"}).days == expected


@pytest.mark.parametrize(
    ("hours", "expected"),
    [
        ("09:00-16:00", Hours(time(9), time(16))),
        ("9:30 - 17:45", Hours(time(9, 30), time(17, 45))),
        ("22:00-06:00", Hours(time(22), time(6))),
        ("18:00-24:00", Hours(time(18), time(0))),
        ("00:00-24:00", Hours(time(0), time(0))),
    ],
)
def test_window_hours(hours: str, expected: Hours) -> None:
    window = Window.model_validate({"hours": hours, "timezone": "UTC"})
    assert window.hours == expected
    assert Window.model_validate({"hours": str(window.hours), "timezone": "UTC"}) == window


STOCKHOLM = ZoneInfo("Europe/Stockholm")


@pytest.mark.parametrize(
    ("window", "local", "is_open"),
    [
        ({"days": "mon-fri", "hours": "09:00-16:00"}, datetime(2025, 3, 3, 8, 59), False),
        ({"days": "mon-fri", "hours": "09:00-16:00"}, datetime(2025, 3, 3, 9, 0), True),
        ({"days": "mon-fri", "hours": "09:00-16:00"}, datetime(2025, 3, 7, 15, 59), True),
        ({"days": "mon-fri", "hours": "09:00-16:00"}, datetime(2025, 3, 7, 16, 0), False),
        ({"days": "mon-fri", "hours": "09:00-16:00"}, datetime(2025, 3, 8, 10, 0), False),
        ({"days": "fri", "hours": "22:00-06:00"}, datetime(2025, 3, 7, 23, 0), True),
        ({"days": "fri", "hours": "22:00-06:00"}, datetime(2025, 3, 8, 5, 59), True),
        ({"days": "fri", "hours": "22:00-06:00"}, datetime(2025, 3, 8, 6, 0), False),
        ({"days": "fri", "hours": "22:00-06:00"}, datetime(2025, 3, 7, 5, 0), False),
        ({"days": "fri", "hours": "22:00-06:00"}, datetime(2025, 3, 8, 23, 0), False),
        ({"days": "sat-sun", "hours": "18:00-24:00"}, datetime(2025, 3, 9, 23, 59), True),
        ({"days": "sat-sun", "hours": "18:00-24:00"}, datetime(2025, 3, 10, 0, 0), False),
        ({"days": "wed"}, datetime(2025, 3, 5, 0, 0), True),
        ({"days": "wed"}, datetime(2025, 3, 5, 23, 59), True),
        ({"days": "wed"}, datetime(2025, 3, 6, 0, 0), False),
    ],
)
def test_window_is_open_in_its_time_zone(
    window: dict[str, str], local: datetime, is_open: bool
) -> None:
    parsed = Window.model_validate({**window, "timezone": "Europe/Stockholm"})
    at = local.replace(tzinfo=STOCKHOLM).astimezone(UTC)
    assert parsed.is_open(at) is is_open


@pytest.mark.parametrize(
    ("window", "local", "opens"),
    [
        ({"days": "mon-fri", "hours": "09:00-16:00"}, datetime(2025, 3, 3, 8, 0), (3, 9)),
        ({"days": "mon-fri", "hours": "09:00-16:00"}, datetime(2025, 3, 3, 16, 0), (4, 9)),
        ({"days": "mon-fri", "hours": "09:00-16:00"}, datetime(2025, 3, 7, 17, 0), (10, 9)),
        ({"days": "fri", "hours": "22:00-06:00"}, datetime(2025, 3, 8, 7, 0), (14, 22)),
        ({"days": "wed"}, datetime(2025, 3, 6, 0, 0), (12, 0)),
        # The clocks go forward on 2025-03-30 in Stockholm: 09:00 is still 09:00 local.
        ({"days": "mon", "hours": "09:00-16:00"}, datetime(2025, 3, 29, 12, 0), (31, 9)),
        # 02:30 does not exist that day: the window opens when the clocks jump, at 03:00.
        ({"days": "sun", "hours": "02:30-04:00"}, datetime(2025, 3, 29, 12, 0), (30, 3)),
    ],
)
def test_window_next_open_in_its_time_zone(
    window: dict[str, str], local: datetime, opens: tuple[int, int]
) -> None:
    parsed = Window.model_validate({**window, "timezone": "Europe/Stockholm"})
    at = local.replace(tzinfo=STOCKHOLM).astimezone(UTC)
    opening = parsed.next_open(at)
    assert opening is not None and opening > at and parsed.is_open(opening)
    assert (opening.day, opening.hour, opening.minute) == (*opens, 0)
    assert not parsed.is_open(opening.astimezone(UTC) - timedelta(minutes=1))


def test_window_is_open_needs_an_aware_datetime() -> None:
    with pytest.raises(ValueError, match="aware"):
        Window(timezone="UTC").is_open(datetime(2025, 1, 1))


# --- invalid files: every rule, with its line and field -----------------------------------

INVALID = [
    # (id, text, line, field, message fragment)
    ("file is a list", "- name: web\n", 1, "", "the file must be a mapping"),
    ("environments empty", "environments: []\n", 1, "environments", "at least one environment"),
    ("environments null", "environments:\n", 1, "environments", "has no value"),
    ("environments a mapping", "environments: {name: web}\n", 1, "environments", "must be a list"),
    (
        "environment a string",
        "environments:\n  - stage\n",
        2,
        "environments[0]",
        "write `- name: stage`",
    ),
    ("name missing", "environments:\n  - auto: true\n", 2, "environments[0].name", "is required"),
    (
        "name with a space",
        "environments:\n  - name: web prod\n",
        2,
        "environments[0].name",
        "not a valid environment name",
    ),
    (
        "name starting with a dash",
        "environments:\n  - name: -web\n",
        2,
        "environments[0].name",
        "not a valid environment name",
    ),
    (
        "name too long",
        f"environments:\n  - name: {'a' * 256}\n",
        2,
        "environments[0].name",
        "at most 255",
    ),
    (
        "name reserved",
        "environments:\n  - name: Status\n",
        2,
        "environments[0].name",
        "reserved for a `/deploy status` command",
    ),
    (
        "name read as a boolean",
        "environments:\n  - name: no\n",
        2,
        "environments[0].name",
        "must be a string; put it in quotes",
    ),
    (
        "name repeated, ignoring case",
        "environments:\n  - name: stage\n  - name: prod\n  - name: Stage\n",
        4,
        "environments[2].name",
        "`stage` is already defined",
    ),
    (
        "auto not a boolean",
        "environments:\n  - name: web\n    auto: sometimes\n",
        3,
        "environments[0].auto",
        "must be true or false",
    ),
    (
        "approvals negative",
        "environments:\n  - name: web\n    approvals: -1\n",
        3,
        "environments[0].approvals",
        "must be ≥ 0",
    ),
    (
        "approvals a fraction",
        "environments:\n  - name: web\n    approvals: 1.5\n",
        3,
        "environments[0].approvals",
        "must be a whole number",
    ),
    (
        "approvals a boolean",
        "environments:\n  - name: web\n    approvals: true\n",
        3,
        "environments[0].approvals",
        "must be a whole number",
    ),
    (
        "approvals empty",
        "environments:\n  - name: web\n    approvals:\n",
        3,
        "environments[0].approvals",
        "has no value",
    ),
    (
        "approvers a string",
        "environments:\n  - name: web\n    approvers: bob\n",
        3,
        "environments[0].approvers",
        "must be a list",
    ),
    (
        "approver a team without @",
        "environments:\n  - name: web\n    approvers:\n      - bob\n      - acme/sre\n",
        5,
        "environments[0].approvers[1]",
        "write a GitHub team as @org/team-slug",
    ),
    (
        "approver nonsense",
        "environments:\n  - name: web\n    approvers: [bob, 'carol smith']\n",
        3,
        "environments[0].approvers[1]",
        "is not a GitHub login",
    ),
    (
        "approver twice",
        "environments:\n  - name: web\n    approvers:\n      - Bob\n      - bob\n",
        5,
        "environments[0].approvers[1]",
        "`bob` is listed twice",
    ),
    (
        "more approvals than listed people",
        "environments:\n  - name: web\n    approvals: 3\n    approvers: [bob, U0CAROL]\n",
        3,
        "environments[0].approvals",
        "needs 3 distinct approvers but `approvers` lists only 2",
    ),
    (
        "more approvals than people, through users",
        "users: {bob: U0BOB}\nenvironments:\n  - name: web\n    approvals: 2\n"
        "    approvers: [bob, U0BOB]\n",
        4,
        "environments[0].approvals",
        "names only 1 (`users:` maps some of them to the same Slack user)",
    ),
    (
        "health with nothing to probe",
        "environments:\n  - name: web\n    health:\n      soak: 1m\n",
        3,
        "environments[0].health",
        "needs `url` or at least one `prometheus` query",
    ),
    (
        "health url not http",
        "environments:\n  - name: web\n    health: {url: 'ftp://web/healthz'}\n",
        3,
        "environments[0].health.url",
        "not an http:// or https:// URL",
    ),
    (
        "health url without a host",
        "environments:\n  - name: web\n    health: {url: 'https:///healthz'}\n",
        3,
        "environments[0].health.url",
        "not an http:// or https:// URL",
    ),
    (
        "interval zero",
        "environments:\n  - name: web\n    health:\n      url: https://w\n      interval: 0s\n",
        5,
        "environments[0].health.interval",
        "must be longer than zero",
    ),
    (
        "interval negative",
        "environments:\n  - name: web\n    health:\n      url: https://w\n      interval: -5\n",
        5,
        "environments[0].health.interval",
        "must not be negative",
    ),
    (
        "interval nonsense",
        "environments:\n  - name: web\n    health:\n      url: https://w\n      interval: soon\n",
        5,
        "environments[0].health.interval",
        'must be a duration like "500ms"',
    ),
    (
        "soak zero",
        "environments:\n  - name: web\n    health:\n      url: https://w\n      soak: 0\n",
        5,
        "environments[0].health.soak",
        "must be longer than zero",
    ),
    (
        "failures zero",
        "environments:\n  - name: web\n    health:\n      url: https://w\n      failures: 0\n",
        5,
        "environments[0].health.failures",
        "must be ≥ 1",
    ),
    (
        "prometheus without a bound",
        "environments:\n  - name: web\n    health:\n      prometheus:\n"
        "        - url: http://p\n          query: up\n",
        5,
        "environments[0].health.prometheus[0]",
        "exactly one of `max` or `min`",
    ),
    (
        "prometheus with both bounds",
        "environments:\n  - name: web\n    health:\n      prometheus:\n"
        "        - {url: 'http://p', query: up, max: 1, min: 0}\n",
        5,
        "environments[0].health.prometheus[0]",
        "exactly one of `max` or `min`",
    ),
    (
        "prometheus without a query",
        "environments:\n  - name: web\n    health:\n      prometheus:\n"
        "        - url: http://p\n          max: 1\n",
        5,
        "environments[0].health.prometheus[0].query",
        "is required",
    ),
    (
        "prometheus bound not a number",
        "environments:\n  - name: web\n    health:\n      prometheus:\n"
        "        - url: http://p\n          query: up\n          max: 2%\n",
        7,
        "environments[0].health.prometheus[0].max",
        "must be a number",
    ),
    (
        "prometheus bound infinite",
        "environments:\n  - name: web\n    health:\n      prometheus:\n"
        "        - url: http://p\n          query: up\n          max: .inf\n",
        7,
        "environments[0].health.prometheus[0].max",
        "must be a finite number",
    ),
    (
        "window days unknown",
        "environments:\n  - name: web\n    window:\n      days: mon-fry\n      timezone: UTC\n",
        4,
        "environments[0].window.days",
        "`fry` is not a day",
    ),
    (
        "window hours malformed",
        "environments:\n  - name: web\n    window:\n      hours: 9-5\n      timezone: UTC\n",
        4,
        "environments[0].window.hours",
        'must be hours like "09:00-16:00"',
    ),
    (
        "window hours out of range",
        "environments:\n  - name: web\n    window: {hours: 09:00-24:30, timezone: UTC}\n",
        3,
        "environments[0].window.hours",
        "from 00:00 to 24:00",
    ),
    (
        "window hours empty",
        "environments:\n  - name: web\n    window: {hours: 09:00-09:00, timezone: UTC}\n",
        3,
        "environments[0].window.hours",
        "use 00:00-24:00 for the whole day",
    ),
    (
        "window without a time zone",
        "environments:\n  - name: web\n    window: {days: mon-fri}\n",
        3,
        "environments[0].window.timezone",
        "is required",
    ),
    (
        "window time zone unknown",
        "environments:\n  - name: web\n    window:\n      timezone: Europe/Stokholm\n",
        4,
        "environments[0].window.timezone",
        "not a known time zone",
    ),
    (
        "window time zone a path",
        "environments:\n  - name: web\n    window:\n      timezone: ../../etc/passwd\n",
        4,
        "environments[0].window.timezone",
        "not a known time zone",
    ),
    (
        "canary without steps",
        "environments:\n  - name: web\n    canary: {pause: 1m}\n",
        3,
        "environments[0].canary.steps",
        "is required",
    ),
    (
        "canary steps empty",
        "environments:\n  - name: web\n    canary: {steps: []}\n",
        3,
        "environments[0].canary.steps",
        "at least one step",
    ),
    (
        "canary weight zero",
        "environments:\n  - name: web\n    canary:\n      steps:\n        - 0\n        - 100\n",
        5,
        "environments[0].canary.steps[0].weight",
        "must be ≥ 1",
    ),
    (
        "canary weight over 100",
        "environments:\n  - name: web\n    canary:\n      steps:\n        - 50\n"
        "        - {weight: 150}\n",
        6,
        "environments[0].canary.steps[1].weight",
        "must be ≤ 100",
    ),
    (
        "canary weights not increasing",
        "environments:\n  - name: web\n    canary:\n      steps:\n        - 10\n        - 10\n"
        "        - 100\n",
        6,
        "environments[0].canary.steps[1]",
        "weights must increase: 10 comes after 10",
    ),
    (
        "canary not ending at 100",
        "environments:\n  - name: web\n    canary:\n      steps:\n        - 10\n        - 50\n",
        6,
        "environments[0].canary.steps[1]",
        "the last step must be 100",
    ),
    (
        "canary step a string",
        "environments:\n  - name: web\n    canary:\n      steps:\n        - 10%\n        - 100\n",
        5,
        "environments[0].canary.steps[0]",
        "must be a weight from 1 to 100",
    ),
    (
        "canary manual not a boolean",
        "environments:\n  - name: web\n    canary:\n      steps:\n"
        "        - {weight: 100, manual: please}\n",
        5,
        "environments[0].canary.steps[0].manual",
        "must be true or false",
    ),
    (
        "canary pause zero",
        "environments:\n  - name: web\n    canary:\n      steps: [100]\n      pause: 0ms\n",
        5,
        "environments[0].canary.pause",
        "must be longer than zero",
    ),
    (
        "checks unknown",
        "environments:\n  - name: web\n    checks: optional\n",
        3,
        "environments[0].checks",
        "must be one of: 'required' or 'ignore'",
    ),
    (
        "auto_rollback not a boolean",
        "environments:\n  - name: web\n    auto_rollback: maybe\n",
        3,
        "environments[0].auto_rollback",
        "must be true or false",
    ),
    ("slack a string", "slack: C0DEPLOY\n", 1, "slack", "must be a mapping"),
    ("slack without channel", "slack: {}\n", 1, "slack.channel", "is required"),
    (
        "slack channel a name",
        "slack:\n  channel: '#deploys'\n",
        2,
        "slack.channel",
        "not a Slack channel id",
    ),
    ("users a list", "users: [alice]\n", 1, "users", "must be a mapping"),
    (
        "users login invalid",
        "users:\n  alice: U0ALICE\n  not a login: U0BOB\n",
        3,
        "users.not a login",
        "is not a GitHub login",
    ),
    (
        "users Slack id invalid",
        "users:\n  alice: '@alice'\n",
        2,
        "users.alice",
        "is not a Slack user id",
    ),
    (
        "users login repeated, ignoring case",
        "users:\n  alice: U0ALICE\n  Alice: U0OTHER\n",
        3,
        "users.Alice",
        "`alice` is already listed",
    ),
    (
        "key given twice",
        "environments:\n  - name: web\n    approvals: 2\n    approvals: 0\n",
        4,
        "environments[0].approvals",
        "is given twice",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [pytest.param(*row[1:], id=row[0]) for row in INVALID],
)
def test_invalid_files_name_the_line_and_field(
    text: str, line: int, field: str, fragment: str
) -> None:
    problem = only_problem(text)
    assert (problem.line, problem.field) == (line, field), problem
    assert fragment in problem.message


@pytest.mark.parametrize(
    ("text", "line", "field", "known", "suggestion"),
    [
        pytest.param(
            "environment:\n  - name: web\n",
            1,
            "environment",
            "slack, users, environments",
            "environments",
            id="top level",
        ),
        pytest.param(
            "environments:\n  - name: web\n    aprovals: 1\n",
            3,
            "environments[0].aprovals",
            "name, auto, health, approvals, approvers, window, canary, checks, auto_rollback",
            "approvals",
            id="environment",
        ),
        pytest.param(
            "environments:\n  - name: web\n    health:\n      url: https://w\n      timeout: 5s\n",
            5,
            "environments[0].health.timeout",
            "url, prometheus, interval, soak, failures",
            None,
            id="health",
        ),
        pytest.param(
            "environments:\n  - name: web\n    health:\n      prometheus:\n"
            "        - {url: 'http://p', query: up, maximum: 1}\n",
            5,
            "environments[0].health.prometheus[0].maximum",
            "url, query, max, min",
            "max",
            id="prometheus query",
        ),
        pytest.param(
            "environments:\n  - name: web\n    window: {day: mon, timezone: UTC}\n",
            3,
            "environments[0].window.day",
            "days, hours, timezone",
            "days",
            id="window",
        ),
        pytest.param(
            "environments:\n  - name: web\n    canary: {steps: [100], wait: 1m}\n",
            3,
            "environments[0].canary.wait",
            "steps, pause",
            None,
            id="canary",
        ),
        pytest.param(
            "environments:\n  - name: web\n    canary:\n      steps:\n"
            "        - {weight: 100, manaul: true}\n",
            5,
            "environments[0].canary.steps[0].manaul",
            "weight, manual",
            "manual",
            id="canary step",
        ),
        pytest.param(
            "slack: {channel: C1, chanel: C2}\n",
            1,
            "slack.chanel",
            "channel",
            "channel",
            id="slack",
        ),
    ],
)
def test_unknown_keys_are_errors_that_name_the_known_keys(
    text: str, line: int, field: str, known: str, suggestion: str | None
) -> None:
    problem = only_problem(text)
    assert (problem.line, problem.field) == (line, field)
    key = field.rsplit(".", 1)[-1]
    assert problem.message.startswith(f"unknown key `{key}`")
    assert problem.message.endswith(f"known keys: {known}")
    if suggestion:
        assert f"(did you mean `{suggestion}`?)" in problem.message


def test_a_typo_never_silently_means_the_default() -> None:
    problem = only_problem("environments:\n  - name: production\n    aprovals: 2\n")
    assert problem.field == "environments[0].aprovals"


def test_every_problem_is_reported_in_line_order_and_reads_well() -> None:
    text = """\
        slack:
          channel: C0DEPLOY
        environments:
          - name: stage
            auto: true
          - name: production
            approvals: -1
            canary: {steps: [50, 10]}
          - name: web prod
        """
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(textwrap.dedent(text))
    assert str(caught.value) == (
        "line 7: environments[1].approvals: must be ≥ 0\n"
        "line 8: environments[1].canary.steps[1]: weights must increase: 10 comes after 50\n"
        "line 8: environments[1].canary.steps[1]: the last step must be 100\n"
        "line 9: environments[2].name: `web prod` is not a valid environment name: use "
        "letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 255 "
        "characters"
    )
    assert [p.line for p in caught.value.problems] == [7, 8, 8, 9]


def test_an_invalid_environment_does_not_also_count_as_missing() -> None:
    problems = problems_of("environments:\n  - name: a b\n  - name: c d\n")
    assert [(p.line, p.field) for p in problems] == [
        (2, "environments[0].name"),
        (3, "environments[1].name"),
    ]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        pytest.param(
            "environments:\n  - name: web\n   auto: true\n", 3, "invalid YAML", id="indent"
        ),
        pytest.param("environments: [web\n", 2, "expected ',' or ']'", id="unclosed flow"),
        pytest.param("slack: {channel: 'C1}\n", 2, "invalid YAML", id="unclosed quote"),
        pytest.param("a: 1\n---\nb: 2\n", 2, "single document", id="two documents"),
        pytest.param("environments: *nothing\n", 1, "undefined alias", id="undefined alias"),
        pytest.param(
            "environments: !!python/object/apply:os.system ['true']\n",
            1,
            "could not determine a constructor",
            id="python tag",
        ),
        pytest.param("users: !custom {a: U1}\n", 1, "could not determine a constructor", id="tag"),
        pytest.param("environments: &a [*a]\n", 1, "refers to itself", id="recursive alias"),
    ],
)
def test_yaml_errors_are_one_problem_with_the_line(text: str, line: int, fragment: str) -> None:
    problem = only_problem(text)
    assert problem.line == line
    assert problem.field == ""
    assert fragment in problem.message


def test_an_alias_bomb_is_refused_before_it_expands() -> None:
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 8)]
    problem = only_problem("\n".join(levels) + "\n")
    assert "too many values" in problem.message


def test_a_huge_file_is_refused() -> None:
    problem = only_problem("#" * (256 * 1024 + 1))
    assert problem.message == "the file is larger than 256 KiB"


def test_a_file_with_too_many_values_is_refused_while_parsing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(config, "MAX_NODES", 50)
    problem = only_problem("users:\n" + "".join(f"  u{i}: U{i}\n" for i in range(30)))
    assert (problem.line, problem.message) == (25, "invalid YAML: more than 50 values")


@pytest.mark.parametrize(
    ("text", "line"),
    [
        pytest.param("environments: " + "[" * 5000 + "]" * 5000 + "\n", 1, id="flow"),
        pytest.param(
            "environments:\n" + "".join(f"{' ' * i}- \n" for i in range(80)), 65, id="block"
        ),
    ],
)
def test_deep_nesting_is_refused_early(text: str, line: int) -> None:
    problem = only_problem(text)
    assert (problem.line, problem.message) == (line, "invalid YAML: nested deeper than 64 levels")


def test_problems_locate_fields_that_come_from_a_merge_key() -> None:
    text = "environments:\n  - &base\n    name: stage\n    approvals: -2\n  - <<: *base\n"
    problems = problems_of(text)
    assert [(p.line, p.field) for p in problems] == [
        (4, "environments[0].approvals"),
        (4, "environments[1].approvals"),
    ]


def test_models_built_in_code_are_validated_too() -> None:
    with pytest.raises(ValidationError):
        Environment(name="web", approvals=-1)
    with pytest.raises(ValidationError):
        Pipeline(environments=(Environment(name="a"), Environment(name="A")))
    with pytest.raises(ValidationError):
        CONTRACT_PIPELINE.environments[0].name = "other"  # type: ignore[misc]


# --- durations ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("500ms", timedelta(milliseconds=500)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h", timedelta(hours=1)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1m30s", timedelta(seconds=90)),
        ("2m500ms", timedelta(minutes=2, milliseconds=500)),
        ("1.5s", timedelta(seconds=1.5)),
        ("0.5m", timedelta(seconds=30)),
        (" 5 m ", timedelta(minutes=5)),
        ("0.000001s", timedelta(microseconds=1)),
        ("0s", timedelta(0)),
        (30, timedelta(seconds=30)),
        (1.5, timedelta(seconds=1.5)),
        (0.1, timedelta(milliseconds=100)),
        ("45", timedelta(seconds=45)),
        ("2.25", timedelta(seconds=2.25)),
        (timedelta(minutes=3), timedelta(minutes=3)),
    ],
)
def test_durations(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("", "must be a duration"),
        ("5x", "must be a duration"),
        ("m", "must be a duration"),
        ("1d", "must be a duration"),
        (".5s", "must be a duration"),
        ("30s5m", "must be a duration"),
        ("5m5m", "must be a duration"),
        ("5 minutes", "must be a duration"),
        ("-5s", "must be a duration"),
        (-1, "must not be negative"),
        ("-1.5", "must not be negative"),
        (timedelta(seconds=-1), "must not be negative"),
        (True, "must be a duration"),
        (None, "must be a duration"),
        ([5], "must be a duration"),
        (float("inf"), "must be a duration"),
        (float("nan"), "must be a duration"),
        (10**20, "is too long"),
        ("99999999999h", "is too long"),
    ],
)
def test_durations_that_are_refused(value: object, fragment: str) -> None:
    with pytest.raises(ValueError, match=re.escape(fragment)):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(milliseconds=500), "500ms"),
        (timedelta(seconds=30), "30s"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=1), "1h"),
        (timedelta(hours=25), "25h"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(seconds=90), "1m30s"),
        (timedelta(seconds=1.5), "1.5s"),
        (timedelta(microseconds=1), "0.000001s"),
        (timedelta(hours=1, milliseconds=500), "1h500ms"),
    ],
)
def test_durations_are_formatted_the_short_way(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10_000)))
def test_durations_round_trip(value: timedelta) -> None:
    assert parse_duration(format_duration(value)) == value


@given(st.integers(min_value=0, max_value=10**9))
def test_whole_numbers_are_seconds(seconds: int) -> None:
    assert parse_duration(seconds) == timedelta(seconds=seconds)
    assert parse_duration(str(seconds)) == timedelta(seconds=seconds)


# --- the default pipeline and the helpers ------------------------------------------------


def test_the_default_pipeline() -> None:
    assert [e.name for e in DEFAULT_PIPELINE.environments] == ["dev", "stage", "production"]
    dev, stage, production = DEFAULT_PIPELINE.environments
    assert dev.approvals == stage.approvals == 0
    assert production.approvals == 1
    assert production.approvers == (RepoAdmins(),)
    assert all(not e.auto and e.auto_rollback for e in DEFAULT_PIPELINE.environments)
    assert DEFAULT_PIPELINE.slack is None and DEFAULT_PIPELINE.users == {}
    assert DEFAULT_PIPELINE.summary() == "3 environments: dev → stage → production (1 approval)"
    assert parse_pipeline(yaml.safe_dump(DEFAULT_PIPELINE.to_data())) == DEFAULT_PIPELINE


def test_environment_lookup_ignores_case() -> None:
    pipeline = parse_pipeline(CONTRACT_EXAMPLE)
    production = pipeline.environments[1]
    assert pipeline.environment("production") is production
    assert pipeline.environment("PRODUCTION") is production
    assert pipeline.environment("prod") is None


def test_previous_and_next_follow_promotion_order() -> None:
    pipeline = DEFAULT_PIPELINE
    dev, stage, production = pipeline.environments
    assert pipeline.previous("dev") is None
    assert pipeline.previous("Stage") is dev
    assert pipeline.previous("production") is stage
    assert pipeline.next("dev") is stage
    assert pipeline.next("stage") is production
    assert pipeline.next("production") is None


def test_previous_and_next_of_an_unknown_environment_raise() -> None:
    # None would read as "the first environment: nothing needs to succeed before it".
    with pytest.raises(KeyError):
        DEFAULT_PIPELINE.previous("qa")
    with pytest.raises(KeyError):
        DEFAULT_PIPELINE.next("qa")


def test_slack_user_for_maps_github_logins_ignoring_case() -> None:
    pipeline = parse_pipeline("users:\n  Alice: U0ALICE\n  bob: W0BOB\n")
    assert pipeline.slack_user_for("alice") == "U0ALICE"
    assert pipeline.slack_user_for("ALICE") == "U0ALICE"
    assert pipeline.slack_user_for("bob") == "W0BOB"
    assert pipeline.slack_user_for("carol") is None


def test_summaries() -> None:
    pipeline = parse_pipeline(
        "environments:\n"
        "  - {name: dev, auto: true}\n"
        "  - {name: qa, checks: ignore, auto_rollback: false}\n"
        "  - {name: prod, approvals: 2, approvers: ['@acme/sre']}\n"
    )
    assert pipeline.summary() == (
        "3 environments: dev (auto) → qa (checks ignored, no auto-rollback) → prod (2 approvals)"
    )
    assert parse_pipeline("environments: [{name: web}]").summary() == "1 environment: web"
    assert parse_pipeline(CONTRACT_EXAMPLE).summary() == (
        "2 environments: stage (health) → production (1 approval, window, canary)"
    )


def test_to_data_is_the_file_form() -> None:
    data = parse_pipeline(CONTRACT_EXAMPLE).to_data()
    assert data["environments"][1]["approvers"] == ["bob", "U0CAROL", "@acme/sre"]
    assert data["environments"][1]["window"] == {
        "days": "mon-fri",
        "hours": "09:00-16:00",
        "timezone": "Europe/Stockholm",
    }
    assert data["environments"][1]["canary"] == {"steps": [1, 10, 25, 50, 100], "pause": "5m"}
    assert "approvers" not in data["environments"][0]
    assert parse_pipeline(yaml.safe_dump(data)) == CONTRACT_PIPELINE


# --- properties --------------------------------------------------------------------------

LOWER, UPPER, DIGITS = "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ", "0123456789"


def words(first: str, rest: str, longest: int) -> st.SearchStrategy[str]:
    """Cheaper than `st.from_regex` for `[first][rest]{0,longest}`."""
    return st.builds(str.__add__, st.sampled_from(first), st.text(alphabet=rest, max_size=longest))


LOGINS = words(LOWER + DIGITS, LOWER + DIGITS + "-", 12)
# Approvers' Slack ids start with U, `users:` ids with W: a mapped login and a listed Slack id
# are then never one person, so `approvals` up to the number of entries stays satisfiable.
SLACK_IDS = words("U", UPPER + DIGITS, 10).filter(lambda s: len(s) >= 3)
MAPPED_SLACK_IDS = words("W", UPPER + DIGITS, 10).filter(lambda s: len(s) >= 3)
TEAMS = st.builds("@{}/{}".format, LOGINS, words(LOWER + DIGITS, LOWER + DIGITS + "_.-", 12))
NAMES = words(LOWER + UPPER + DIGITS, LOWER + UPPER + DIGITS + "._-", 15).filter(
    lambda name: name.lower() not in RESERVED_ENVIRONMENT_NAMES
)
DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
DURATIONS = st.one_of(
    st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=3)).map(
        format_duration
    ),
    st.integers(min_value=1, max_value=10**6),
    st.floats(min_value=0.001, max_value=10**6),
)
URLS = st.builds(
    "{}://{}{}".format,
    st.sampled_from(["http", "https"]),
    st.builds(
        "{}{}{}".format,
        words(LOWER, LOWER + DIGITS + "-", 10),
        st.sampled_from(["", ".example.com", ".internal"]),
        st.sampled_from(["", ":8080", ":9090"]),
    ),
    st.sampled_from(["", "/", "/healthz", "/-/ready?full=1"]),
)
BOUNDS = st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(10**6), 10**6)


@st.composite
def hours(draw: st.DrawFn) -> str:
    start = draw(st.tuples(st.integers(0, 23), st.integers(0, 59)))
    end = draw(st.tuples(st.integers(0, 24), st.integers(0, 59)).filter(lambda e: e != start))
    end = (24, 0) if end[0] == 24 else end
    return f"{start[0]:02}:{start[1]:02}-{end[0]:02}:{end[1]:02}"


@st.composite
def canaries(draw: st.DrawFn) -> dict[str, object]:
    weights = [*sorted(draw(st.sets(st.integers(1, 99), max_size=5))), 100]
    steps = [{"weight": w, "manual": True} if draw(st.booleans()) else w for w in weights]
    return draw(st.fixed_dictionaries({"steps": st.just(steps)}, optional={"pause": DURATIONS}))


@st.composite
def environments(draw: st.DrawFn, name: str) -> dict[str, object]:
    approvers = draw(
        st.lists(
            st.one_of(LOGINS, SLACK_IDS, TEAMS),
            max_size=4,
            unique_by=lambda a: parse_approver(a),
        )
    )
    people = [a for a in approvers if not a.startswith("@")]
    most = len(people) if approvers and len(people) == len(approvers) else 3
    health = st.fixed_dictionaries(
        {"url": URLS},
        optional={
            "prometheus": st.lists(
                st.builds(
                    lambda url, query, bound, value: {"url": url, "query": query, bound: value},
                    URLS,
                    st.text(min_size=1, max_size=20),
                    st.sampled_from(["max", "min"]),
                    BOUNDS,
                ),
                max_size=2,
            ),
            "interval": DURATIONS,
            "soak": DURATIONS,
            "failures": st.integers(1, 10),
        },
    )
    window = st.fixed_dictionaries(
        {"timezone": st.sampled_from(["UTC", "Europe/Stockholm", "America/New_York"])},
        optional={
            "days": st.sets(st.sampled_from(DAY_NAMES), min_size=1).map(",".join)
            | st.lists(st.sampled_from(DAY_NAMES), min_size=1),
            "hours": hours(),
        },
    )
    return draw(
        st.fixed_dictionaries(
            {"name": st.just(name)},
            optional={
                "auto": st.booleans(),
                "health": health,
                "approvals": st.integers(0, most),
                "approvers": st.just(approvers),
                "window": window,
                "canary": canaries(),
                "checks": st.sampled_from(["required", "ignore"]),
                "auto_rollback": st.booleans(),
            },
        )
    )


@st.composite
def pipeline_files(draw: st.DrawFn) -> dict[str, object]:
    names = draw(st.lists(NAMES, min_size=1, max_size=4, unique_by=str.lower))
    data = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "slack": st.fixed_dictionaries(
                    {"channel": words("CG", UPPER + DIGITS, 10).filter(lambda s: len(s) >= 2)}
                ),
                "users": st.dictionaries(LOGINS, MAPPED_SLACK_IDS, max_size=3).filter(
                    lambda users: len(set(users.values())) == len(users)
                ),
            },
        )
    )
    data["environments"] = [draw(environments(name)) for name in names]
    return data


@settings(deadline=None, max_examples=50)  # a shared machine; speed is not what this checks
@given(pipeline_files())
def test_any_valid_file_parses_and_round_trips(data: dict[str, object]) -> None:
    pipeline = parse_pipeline(yaml.safe_dump(data))
    assert [e.name for e in pipeline.environments] == [
        e["name"]
        for e in data["environments"]  # type: ignore[attr-defined]
    ]
    assert parse_pipeline(yaml.safe_dump(pipeline.to_data(), default_flow_style=True)) == pipeline
    for environment in pipeline.environments:
        assert pipeline.environment(environment.name.upper()) is environment
        assert environment.approvers


SCHEMA_KEYS = [
    "slack", "users", "environments", "channel", "name", "auto", "health", "approvals",
    "approvers", "window", "canary", "checks", "auto_rollback", "url", "prometheus", "query",
    "max", "min", "interval", "soak", "failures", "days", "hours", "timezone", "steps",
    "pause", "weight", "manual", "typo",
]  # fmt: skip
YAML_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(SCHEMA_KEYS), inner, max_size=4)
    ),
    max_leaves=25,
)


@settings(deadline=None)  # a shared machine; speed is not what this checks
@given(st.dictionaries(st.sampled_from(SCHEMA_KEYS), YAML_VALUES, max_size=4))
def test_any_structure_either_parses_or_lists_located_problems(data: dict[str, object]) -> None:
    text = yaml.safe_dump(data)
    try:
        parse_pipeline(text)
    except PipelineError as exc:
        assert exc.problems
        last_line = len(text.splitlines()) + 1
        for problem in exc.problems:
            assert problem.line is not None and 1 <= problem.line <= last_line, problem
            assert problem.message


@settings(deadline=None)  # a shared machine; speed is not what this checks
@given(st.text(max_size=120))
def test_any_text_either_parses_or_raises_pipeline_error(text: str) -> None:
    try:
        parse_pipeline(text)
    except PipelineError as exc:
        assert exc.problems
        assert str(exc)


# --- deploybot check-config --------------------------------------------------------------

runner = CliRunner()


@pytest.fixture
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No environment settings and no .env file: check-config must not need them."""
    for name in (
        "DATABASE_URL",
        "SLACK_BOT_TOKEN",
        "SLACK_SIGNING_SECRET",
        "GITHUB_APP_ID",
        "GITHUB_WEBHOOK_SECRET",
        "GITHUB_APP_PRIVATE_KEY",
        "GITHUB_APP_PRIVATE_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_check_config_of_a_valid_file(no_settings: Path) -> None:
    path = no_settings / "deploybot.yml"
    path.write_text(CONTRACT_EXAMPLE, encoding="utf-8")
    result = runner.invoke(cli, ["check-config", str(path)])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"{path}: ok\n2 environments: stage (health) → production (1 approval, window, canary)\n"
    )


def test_check_config_lists_each_problem_with_its_line(no_settings: Path) -> None:
    path = no_settings / "deploybot.yml"
    path.write_text(
        "environments:\n  - name: stage\n    aprovals: 1\n  - name: production\n"
        "    approvals: -1\n",
        encoding="utf-8",
    )
    result = runner.invoke(cli, ["check-config", "deploybot.yml"])
    assert result.exit_code == 1
    lines = result.output.splitlines()
    assert lines[0].startswith(
        "deploybot.yml:3: environments[0].aprovals: unknown key `aprovals` (did you mean"
    )
    assert lines[1] == "deploybot.yml:5: environments[1].approvals: must be ≥ 0"
    assert len(lines) == 2


def test_check_config_of_broken_yaml(no_settings: Path) -> None:
    (no_settings / "bad.yml").write_text("environments: [stage\n", encoding="utf-8")
    result = runner.invoke(cli, ["check-config", "bad.yml"])
    assert result.exit_code == 1
    assert result.output.startswith("bad.yml:2: invalid YAML: ")


def test_check_config_of_a_file_that_is_not_text(no_settings: Path) -> None:
    (no_settings / "bin.yml").write_bytes(b"\xff\xfe\x00bad")
    result = runner.invoke(cli, ["check-config", "bin.yml"])
    assert result.exit_code == 1
    assert result.output == "bin.yml: not UTF-8 text\n"


def test_check_config_of_a_missing_file(no_settings: Path) -> None:
    result = runner.invoke(cli, ["check-config", "nowhere.yml"])
    assert result.exit_code == 2
    assert result.output == "nowhere.yml: no such file\n"


def test_check_config_of_a_directory(no_settings: Path) -> None:
    result = runner.invoke(cli, ["check-config", str(no_settings)])
    assert result.exit_code == 2
    assert "cannot read" in result.output
