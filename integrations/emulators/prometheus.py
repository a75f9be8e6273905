"""A Prometheus HTTP API emulator: instant queries (`GET`/`POST /api/v1/query`) on loopback.

It answers in the shape the HTTP API documents (https://prometheus.io/docs/prometheus/latest/
querying/api/): the `{"status": ..., "data": {"resultType", "result"}}` envelope, sample
values as strings (so `NaN` and `±Inf` survive JSON), error answers with `errorType` and the
documented status codes (400 `bad_data`, 422 `execution`, 503 `timeout`). Parameters come
from the URL or, for `POST`, from a form body, as Prometheus reads them; `time` (RFC 3339 or
Unix seconds) and `timeout` (a Prometheus duration) are checked like Prometheus checks them.

It does not evaluate PromQL: each query's result is set by the test, matched on the query's
text with runs of whitespace taken as one space. A query nobody set answers an empty vector,
as a real Prometheus does for series that do not exist.

    with PrometheusEmulator() as prometheus:
        prometheus.set("error_ratio", 0.004)                 # one series without labels
        prometheus.set('up{job="api"}', [({"instance": "a"}, 1), ({"instance": "b"}, 0)])
        prometheus.set("absent_metric", [])                  # no data
        prometheus.set_scalar("scalar(up)", 1)
        prometheus.fail("slow", status=503, error_type="timeout")
        prometheus.delay("error_ratio", 3)                   # the next answer waits 3 s
        probe_url = prometheus.url                           # the base URL, no /api/v1

`calls` records every request received (method, query, parameters, headers, status).
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import re
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from integrations.emulators.loopback import LoopbackServer, take_fault

__all__ = ["ERROR_STATUS", "Call", "PrometheusEmulator", "format_value"]

QUERY_PATH = "/api/v1/query"

# The status codes Prometheus answers each errorType with (web/api/v1: respondError).
ERROR_STATUS: dict[str, int] = {
    "bad_data": 400,
    "execution": 422,
    "canceled": 503,
    "timeout": 503,
    "unavailable": 503,
    "internal": 500,
    "not_found": 404,
}

Value = float | int | str
Labels = Mapping[str, str]
Result = Value | Iterable[tuple[Labels, Value]]


# --- what was asked -----------------------------------------------------------------------


@dataclass
class Call:
    """One request the emulator received; `params` merges the URL's and the form's."""

    method: str
    path: str
    query: str | None
    params: dict[str, str]
    headers: dict[str, str]
    status: int | None = None


@dataclass(frozen=True)
class _Answer:
    kind: Literal["vector", "scalar"]
    samples: tuple[tuple[dict[str, str], str], ...]
    warnings: tuple[str, ...] = ()


@dataclass
class _Fault:
    status: int | None
    body: bytes
    content_type: str
    delay: float
    remaining: int


# --- the emulator -------------------------------------------------------------------------


class PrometheusEmulator(LoopbackServer):
    """Prometheus's instant-query API, served on 127.0.0.1 from a background thread.

    `base_path` serves the API below a prefix, as `--web.route-prefix` does (`/prometheus`
    → `/prometheus/api/v1/query`); `url` includes it. `basic_auth` (user, password) makes
    it refuse requests without those credentials with 401, as Prometheus's web config does.
    """

    def __init__(
        self,
        *,
        base_path: str = "",
        basic_auth: tuple[str, str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self._authorization = (
            "Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()
            if basic_auth is not None
            else None
        )
        super().__init__(self, host=host, port=port, thread_name="prometheus-emulator")
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._answers: dict[str, _Answer] = {}
        self._faults: dict[str, list[_Fault]] = {}

    @property
    def url(self) -> str:
        """The server's base URL (what `health.prometheus[].url` names); empty while stopped."""
        return self.base_url + self.base_path if self.serving else ""

    # --- steering ---------------------------------------------------------------------------

    def set(self, query: str, result: Result, *, warnings: Iterable[str] = ()) -> None:
        """What `query` evaluates to from now on: a number (one series without labels, as
        `sum(...)` gives) or `(labels, value)` pairs (a vector; none at all is no data).
        Values may be floats (NaN and ±Inf included) or the strings Prometheus sends."""
        if isinstance(result, int | float | str):
            samples: Iterable[tuple[Labels, Value]] = [({}, result)]
        else:
            samples = result
        answer = _Answer(
            "vector",
            tuple((dict(labels), format_value(value)) for labels, value in samples),
            tuple(warnings),
        )
        with self._lock:
            self._answers[_key(query)] = answer

    def set_scalar(self, query: str, value: Value) -> None:
        """What `query` evaluates to from now on: a scalar (`scalar(...)`, a number literal)."""
        with self._lock:
            self._answers[_key(query)] = _Answer("scalar", (({}, format_value(value)),))

    def forget(self, query: str) -> None:
        """Back to no data for `query`."""
        with self._lock:
            self._answers.pop(_key(query), None)

    def fail(
        self,
        query: str = "*",
        *,
        status: int | None = None,
        error_type: str = "execution",
        error: str | None = None,
        times: int = 1,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `times` evaluations of `query` (`"*"`: any) with a Prometheus error.

        `status` defaults to the one Prometheus uses for `error_type` (`execution` → 422,
        `bad_data` → 400, `timeout` → 503, ...). `delay` holds the answer that long first.
        """
        message = error or _DEFAULT_ERRORS.get(error_type, "something went wrong")
        body = {"status": "error", "errorType": error_type, "error": message}
        self._add_fault(
            query,
            _Fault(
                status=status if status is not None else ERROR_STATUS.get(error_type, 500),
                body=json.dumps(body).encode(),
                content_type="application/json",
                delay=delay,
                remaining=times,
            ),
        )

    def respond(
        self,
        query: str = "*",
        *,
        status: int = 200,
        body: Any = None,
        content_type: str | None = None,
        times: int = 1,
    ) -> None:
        """Answer the next `times` requests for `query` with exactly this (not the API's
        shape: a proxy's HTML page, malformed JSON, a range result...). `body` is sent as
        is when it is `bytes` or `str`, else as JSON."""
        if isinstance(body, bytes | str):
            raw = body.encode() if isinstance(body, str) else body
            kind = content_type or "text/plain; charset=utf-8"
        else:
            raw = json.dumps(body).encode()
            kind = content_type or "application/json"
        self._add_fault(query, _Fault(status, raw, kind, 0.0, times))

    def delay(self, query: str = "*", seconds: float = 1.0, *, times: int = 1) -> None:
        """Hold the next `times` answers for `query` for `seconds` (client timeouts). A
        request whose `timeout` parameter is shorter is answered, as by Prometheus, with a
        503 `timeout` error once that much time has passed."""
        self._add_fault(query, _Fault(None, b"", "", seconds, times))

    def queries(self) -> list[str]:
        """The query texts asked so far, in order."""
        return [call.query for call in list(self.calls) if call.query is not None]

    def reset(self) -> None:
        """Forget results, faults and recorded calls."""
        with self._lock:
            self._answers.clear()
            self._faults.clear()
            self.calls.clear()

    def _add_fault(self, query: str, fault: _Fault) -> None:
        key = query if query == "*" else _key(query)
        with self._lock:
            self._faults.setdefault(key, []).append(fault)

    # --- serving ----------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        response = await self._handle(request)
        await response(scope, receive, send)

    async def _handle(self, request: Request) -> Response:
        params = dict(request.query_params)
        if request.method == "POST":
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type == "application/x-www-form-urlencoded":
                body = (await request.body()).decode("utf-8", "replace")
                # Go's FormValue prefers the body's value over the URL's.
                params.update(dict(parse_qsl(body, keep_blank_values=True)))
        call = Call(
            method=request.method,
            path=request.url.path,
            query=params.get("query"),
            params=params,
            headers={k.lower(): v for k, v in request.headers.items()},
        )
        self.calls.append(call)
        response = await self._answer(call)
        call.status = response.status_code
        return response

    async def _answer(self, call: Call) -> Response:
        if self._authorization is not None and (
            call.headers.get("authorization") != self._authorization
        ):
            return PlainTextResponse(
                "Unauthorized\n",
                status_code=401,
                headers={"WWW-Authenticate": "Basic"},
            )
        if call.path != self.base_path + QUERY_PATH:
            return PlainTextResponse("404 page not found\n", status_code=404)
        if call.method not in ("GET", "POST"):
            return PlainTextResponse("Method Not Allowed\n", status_code=405)

        at = _parse_time(call.params.get("time"))
        if at is None:
            return _error("bad_data", _invalid("time", call.params["time"], "timestamp"))
        timeout: float | None = None
        if call.params.get("timeout"):
            timeout = _parse_duration(call.params["timeout"])
            if timeout is None:
                return _error("bad_data", _invalid("timeout", call.params["timeout"], "duration"))
        query = call.params.get("query", "")
        if not query.strip():
            return _error(
                "bad_data",
                'invalid parameter "query": 1:1: parse error: no expression found in input',
            )

        with self._lock:
            fault = take_fault(self._faults, _key(query))
            answer = self._answers.get(_key(query))
        if fault is not None and fault.delay:
            wait = fault.delay if timeout is None else min(fault.delay, timeout)
            if await self.wait_for_stop(wait):
                return _error("unavailable", "Prometheus is shutting down")
            if timeout is not None and fault.delay > timeout:
                return _error("timeout", "query timed out in query execution")
        if fault is not None and fault.status is not None:
            return Response(fault.body, status_code=fault.status, media_type=fault.content_type)
        return _success(answer or _Answer("vector", ()), at)


# --- answers ------------------------------------------------------------------------------

_DEFAULT_ERRORS = {
    "bad_data": 'invalid parameter "query": 1:1: parse error: unexpected end of input',
    "execution": "query processing would load too many samples into memory in query execution",
    "timeout": "query timed out in query execution",
    "canceled": "query was canceled in query execution",
    "unavailable": "TSDB not ready",
    "internal": "internal error",
}


def _success(answer: _Answer, at: float) -> Response:
    if answer.kind == "scalar":
        ((_, value),) = answer.samples
        result: Any = [at, value]
    else:
        result = [{"metric": labels, "value": [at, value]} for labels, value in answer.samples]
    payload: dict[str, Any] = {
        "status": "success",
        "data": {"resultType": answer.kind, "result": result},
    }
    if answer.warnings:
        payload["warnings"] = list(answer.warnings)
    return Response(json.dumps(payload).encode(), media_type="application/json")


def _error(error_type: str, message: str) -> Response:
    body = {"status": "error", "errorType": error_type, "error": message}
    return Response(
        json.dumps(body).encode(),
        status_code=ERROR_STATUS.get(error_type, 500),
        media_type="application/json",
    )


def _invalid(parameter: str, value: str, what: str) -> str:
    return f'invalid parameter "{parameter}": cannot parse {json.dumps(value)} to a valid {what}'


def format_value(value: Value) -> str:
    """A sample value as Prometheus writes it: `NaN`, `+Inf`, `-Inf`, else the shortest
    decimal that reads back as the same float, never in exponent form (`0.00001`)."""
    if isinstance(value, str):
        number = float(value)  # a typo in a test should fail at once, not in the probe
        if math.isnan(number) or math.isinf(number):
            return format_value(number)
        return value
    number = float(value)
    if math.isnan(number):
        return "NaN"
    if math.isinf(number):
        return "+Inf" if number > 0 else "-Inf"
    text = format(Decimal(repr(number)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def _key(query: str) -> str:
    return " ".join(query.split())


def _parse_time(value: str | None) -> float | None:
    """Prometheus's `time`: missing → now; Unix seconds (with a fraction) or RFC 3339."""
    if value is None or value == "":
        return round(time.time(), 3)
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return number if math.isfinite(number) else None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {
    "ms": 0.001,
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "w": 604800,
    "y": 31536000,
}


def _parse_duration(value: str) -> float | None:
    """A Prometheus duration (`500ms`, `1m30s`) or a number of seconds, in seconds."""
    try:
        number = float(value)
    except ValueError:
        pass
    else:
        return number if math.isfinite(number) and number >= 0 else None
    position, total = 0, 0.0
    for match in _DURATION.finditer(value):
        if match.start() != position:
            return None
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return total if position == len(value) and position > 0 else None


# --- standalone ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    """`python -m integrations.emulators.prometheus --port 9090 --set 'error_ratio=0.004'`"""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--base-path", default="", help="e.g. /prometheus (--web.route-prefix)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="QUERY=VALUE",
        help="a query's value (one series without labels); may be repeated",
    )
    args = parser.parse_args(argv)
    emulator = PrometheusEmulator(base_path=args.base_path, host=args.host, port=args.port)
    for item in args.set:
        query, equals, value = item.rpartition("=")
        if not equals or not query:
            parser.error(f"--set needs QUERY=VALUE, got {item!r}")
        emulator.set(query, value)
    emulator.serve_forever(lambda url: print(f"Prometheus emulator on {url}", flush=True))


if __name__ == "__main__":
    main()
