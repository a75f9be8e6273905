"""The Prometheus emulator, over real HTTP: the documented answer shapes, parameters from the
URL and from POST forms, checked parameters, error answers, delays, auth and standalone use."""

from __future__ import annotations

import math
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from integrations.emulators.prometheus import PrometheusEmulator, format_value

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server() -> Iterator[PrometheusEmulator]:
    with PrometheusEmulator() as emulator:
        yield emulator


@pytest.fixture
def prometheus(server: PrometheusEmulator) -> PrometheusEmulator:
    server.reset()
    return server


def query(prometheus: PrometheusEmulator, text: str, **params: str) -> httpx.Response:
    return httpx.get(f"{prometheus.url}/api/v1/query", params={"query": text, **params})


def test_a_number_is_one_series_without_labels(prometheus: PrometheusEmulator) -> None:
    prometheus.set("sum(rate(errors[5m])) / sum(rate(requests[5m]))", 0.004)
    before = time.time()
    answer = query(prometheus, "sum(rate(errors[5m])) / sum(rate(requests[5m]))")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    body = answer.json()
    assert body["status"] == "success"
    assert body["data"]["resultType"] == "vector"
    ((sample),) = body["data"]["result"]
    assert sample["metric"] == {}
    at, value = sample["value"]
    assert value == "0.004" and before - 1 <= at <= time.time() + 1


def test_series_with_labels_scalars_and_no_data(prometheus: PrometheusEmulator) -> None:
    prometheus.set(
        'up{job="api"}',
        [({"__name__": "up", "instance": "a:9100"}, 1), ({"__name__": "up", "instance": "b"}, 0)],
    )
    result = query(prometheus, 'up{job="api"}').json()["data"]["result"]
    assert [(r["metric"]["instance"], r["value"][1]) for r in result] == [
        ("a:9100", "1"),
        ("b", "0"),
    ]

    prometheus.set_scalar("scalar(up)", 0.5)
    data = query(prometheus, "scalar(up)", time="1700000000.5").json()["data"]
    assert data == {"resultType": "scalar", "result": [1700000000.5, "0.5"]}

    prometheus.set("absent_metric", [])
    assert query(prometheus, "absent_metric").json()["data"]["result"] == []
    # A query nobody set is a series that does not exist: no data, not an error.
    assert query(prometheus, "never_set").json()["data"] == {"resultType": "vector", "result": []}
    prometheus.set("gone", 1)
    prometheus.forget("gone")
    assert query(prometheus, "gone").json()["data"]["result"] == []


def test_queries_match_whatever_their_whitespace(prometheus: PrometheusEmulator) -> None:
    prometheus.set("sum(rate(x[5m]))\n  / sum(rate(y[5m]))", 2)
    assert query(prometheus, "sum(rate(x[5m])) / sum(rate(y[5m]))").json()["data"]["result"]


@pytest.mark.parametrize(
    ("value", "sent"),
    [
        (0.004, "0.004"),
        (1e-05, "0.00001"),
        (1e20, "100000000000000000000"),
        (3, "3"),
        (2.0, "2"),
        (-0.25, "-0.25"),
        (math.nan, "NaN"),
        (math.inf, "+Inf"),
        (-math.inf, "-Inf"),
        ("NaN", "NaN"),
        ("inf", "+Inf"),
        ("0.21", "0.21"),
    ],
)
def test_values_are_strings_as_prometheus_writes_them(value: float | str, sent: str) -> None:
    assert format_value(value) == sent


def test_a_value_that_is_no_number_is_refused_when_set(prometheus: PrometheusEmulator) -> None:
    with pytest.raises(ValueError):
        prometheus.set("x", "lots")


def test_post_forms_are_read_like_prometheus_does(prometheus: PrometheusEmulator) -> None:
    long = "sum(rate(http_requests_total{" + ", ".join(f'l{i}="v"' for i in range(400)) + "}[5m]))"
    prometheus.set(long, 7)
    answer = httpx.post(f"{prometheus.url}/api/v1/query", data={"query": long})
    assert answer.json()["data"]["result"][0]["value"][1] == "7"
    # The form's value wins over the URL's, as Go's FormValue has it.
    prometheus.set("from_form", 1)
    answer = httpx.post(
        f"{prometheus.url}/api/v1/query?query=from_url", data={"query": "from_form"}
    )
    assert answer.json()["data"]["result"][0]["value"][1] == "1"
    methods = [(c.method, c.query) for c in prometheus.calls]
    assert methods == [("POST", long), ("POST", "from_form")]
    assert prometheus.queries() == [long, "from_form"]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        (
            {"query": ""},
            'invalid parameter "query": 1:1: parse error: no expression found in input',
        ),
        ({}, 'invalid parameter "query": 1:1: parse error: no expression found in input'),
        (
            {"query": "up", "time": "yesterday"},
            'invalid parameter "time": cannot parse "yesterday" to a valid timestamp',
        ),
        (
            {"query": "up", "timeout": "5 minutes"},
            'invalid parameter "timeout": cannot parse "5 minutes" to a valid duration',
        ),
    ],
)
def test_bad_parameters_are_bad_data(
    prometheus: PrometheusEmulator, params: dict[str, str], error: str
) -> None:
    answer = httpx.get(f"{prometheus.url}/api/v1/query", params=params)
    assert answer.status_code == 400
    assert answer.json() == {"status": "error", "errorType": "bad_data", "error": error}


def test_times_and_timeouts_in_both_notations(prometheus: PrometheusEmulator) -> None:
    prometheus.set("up", 1)
    answer = query(prometheus, "up", time="2015-07-01T20:10:51.781Z", timeout="1m30s")
    assert answer.json()["data"]["result"][0]["value"][0] == 1435781451.781
    assert query(prometheus, "up", timeout="2.5").status_code == 200


@pytest.mark.parametrize(
    ("error_type", "status"),
    [("execution", 422), ("bad_data", 400), ("timeout", 503), ("canceled", 503), ("internal", 500)],
)
def test_errors_answer_with_the_documented_status(
    prometheus: PrometheusEmulator, error_type: str, status: int
) -> None:
    prometheus.set("up", 1)
    prometheus.fail("up", error_type=error_type)
    answer = query(prometheus, "up")
    assert answer.status_code == status
    body = answer.json()
    assert (body["status"], body["errorType"]) == ("error", error_type)
    assert body["error"]
    assert query(prometheus, "up").status_code == 200, "one failure, then the result again"


def test_faults_count_and_match_queries(prometheus: PrometheusEmulator) -> None:
    prometheus.fail("a", error="no a", times=2)
    prometheus.fail(error_type="timeout")  # any query
    assert query(prometheus, "a").json()["error"] == "no a"
    assert query(prometheus, "b").status_code == 503
    assert query(prometheus, "a").json()["error"] == "no a"
    assert [query(prometheus, q).status_code for q in ("a", "b")] == [200, 200]
    assert [c.status for c in prometheus.calls] == [422, 503, 422, 200, 200]


def test_respond_sends_anything(prometheus: PrometheusEmulator) -> None:
    prometheus.respond(status=502, body="<html>Bad Gateway</html>", content_type="text/html")
    answer = query(prometheus, "up")
    assert (answer.status_code, answer.text) == (502, "<html>Bad Gateway</html>")
    matrix = {"status": "success", "data": {"resultType": "matrix", "result": []}}
    prometheus.respond("up[5m]", body=matrix)
    assert query(prometheus, "up[5m]").json() == matrix


def test_delays_and_the_timeout_parameter(prometheus: PrometheusEmulator) -> None:
    prometheus.set("up", 1)
    prometheus.delay("up", 0.3)
    started = time.monotonic()
    assert query(prometheus, "up").status_code == 200
    assert time.monotonic() - started >= 0.3

    prometheus.delay("up", 5)
    started = time.monotonic()
    answer = query(prometheus, "up", timeout="200ms")
    assert time.monotonic() - started < 3
    assert answer.status_code == 503
    assert answer.json()["errorType"] == "timeout"

    prometheus.delay("up", 0.5)
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(f"{prometheus.url}/api/v1/query", params={"query": "up"}, timeout=0.1)


def test_only_the_query_endpoint(prometheus: PrometheusEmulator) -> None:
    assert httpx.get(f"{prometheus.url}/api/v1/query_range").status_code == 404
    assert httpx.put(f"{prometheus.url}/api/v1/query", params={"query": "up"}).status_code == 405


def test_a_route_prefix_and_basic_auth() -> None:
    with PrometheusEmulator(base_path="/prometheus/", basic_auth=("deploy", "s3cret")) as server:
        assert server.url.endswith("/prometheus")
        server.set("up", 1)
        endpoint = f"{server.url}/api/v1/query"
        assert httpx.get(endpoint, params={"query": "up"}).status_code == 401
        wrong = httpx.get(endpoint, params={"query": "up"}, auth=("deploy", "nope"))
        assert wrong.status_code == 401
        right = httpx.get(endpoint, params={"query": "up"}, auth=("deploy", "s3cret"))
        assert right.json()["data"]["result"][0]["value"][1] == "1"
        assert (
            httpx.get(f"{server.base_url}/api/v1/query", auth=("deploy", "s3cret")).status_code
            == 404
        )
    assert server.url == ""


def test_warnings_ride_along(prometheus: PrometheusEmulator) -> None:
    prometheus.set("up", 1, warnings=["PromQL info: metric might not be a counter"])
    assert query(prometheus, "up").json()["warnings"] == [
        "PromQL info: metric might not be a counter"
    ]


def test_runs_standalone() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "integrations.emulators.prometheus",
            "--port",
            "0",
            "--set",
            'up{job="api"}=1',
            "--set",
            "error_ratio=0.004",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        url = process.stdout.readline().split()[-1]
        assert url.startswith("http://127.0.0.1:")
        answer = httpx.get(f"{url}/api/v1/query", params={"query": 'up{job="api"}'})
        assert answer.json()["data"]["result"][0]["value"][1] == "1"
        answer = httpx.get(f"{url}/api/v1/query", params={"query": "error_ratio"})
        assert answer.json()["data"]["result"][0]["value"][1] == "0.004"
    finally:
        process.terminate()
        process.wait(timeout=10)
