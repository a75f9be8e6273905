"""Health probes: an HTTP check and Prometheus instant queries (CONTRACT §4, `health:`).

A probe never raises for anything the network or the probed service does: refused
connections, timeouts, TLS failures, redirect loops, error answers and malformed JSON all
become an unhealthy `ProbeResult` whose `detail` is one short line a person reads in the
Slack thread. Details never show URL credentials (`user:pass@`) or token-like query values.

Every probe is bounded: one deadline (`timeout`) covers the whole request including
redirects, the HTTP check never reads a response body, and a Prometheus answer is read up
to 1 MiB at most.

    async with HealthProbe(timeout=5) as probe:
        result = await probe.check(str(health.url), health.prometheus)
        if not result.healthy:
            print(result.detail)   # GET https://stage.example.com/healthz → 503 in 41 ms

The module takes plain arguments (no import of the pipeline config) so it stays independent.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
import socket
import ssl
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, Self
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp
import httpx
import yarl

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_GET_QUERY",
    "MAX_PROMETHEUS_BYTES",
    "MAX_REDIRECTS",
    "USER_AGENT",
    "CheckResult",
    "HealthProbe",
    "ProbeResult",
    "PrometheusSpec",
    "Sample",
    "redact_url",
]

DEFAULT_TIMEOUT = 5.0
USER_AGENT = "deploybot-health"
MAX_REDIRECTS = 5
MAX_PROMETHEUS_BYTES = 1 << 20
# Longer queries (URL-encoded) are sent as a POST form: proxies in front of Prometheus often
# refuse request lines of several kilobytes.
MAX_GET_QUERY = 2000
# Longer queries and label sets are cut in details: a Slack line, not a dump.
_MAX_SHOWN = 80
_MAX_ERROR_TEXT = 200


# --- results ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """One measured Prometheus value; `labels` is `{name="value", ...}` or `""`."""

    labels: str
    value: float


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The outcome of one check: the HTTP GET, or one Prometheus query.

    `target` is the redacted URL (the health URL, or the Prometheus base URL); `query` is the
    PromQL for Prometheus checks. `status_code` is the final HTTP status when one arrived;
    `samples` are the values Prometheus returned (every sample of a vector).
    """

    kind: Literal["http", "prometheus"]
    target: str
    healthy: bool
    detail: str
    elapsed_ms: float
    query: str | None = None
    status_code: int | None = None
    samples: tuple[Sample, ...] = ()


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe: healthy only if every check is; `detail` is one line listing each check.

    `detail` is plain text; escape it (`&`, `<`, `>`) before putting it into Slack mrkdwn.
    """

    healthy: bool
    detail: str
    elapsed_ms: float
    checks: tuple[CheckResult, ...]


class PrometheusSpec(Protocol):
    """What `HealthProbe.check` needs of a `health.prometheus` entry (the config's
    `PrometheusQuery` fits): `url` is anything whose `str()` is the base URL."""

    @property
    def url(self) -> Any: ...
    @property
    def query(self) -> str: ...
    @property
    def max(self) -> float | None: ...
    @property
    def min(self) -> float | None: ...


# --- the probe ----------------------------------------------------------------------------


class _TooLarge(Exception):
    pass


class _Malformed(Exception):
    pass


class _TooManyRedirects(Exception):
    pass


class _Unsupported(Exception):
    pass


class _InvalidURL(Exception):
    pass


# The statuses whose `Location` is followed (as httpx does); any other keeps its status.
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


def _http_url(url: str | yarl.URL) -> yarl.URL:
    """An absolute http(s) URL to request, or `_Unsupported` / `_InvalidURL`."""
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError):
        raise _InvalidURL from None
    if parsed.scheme not in ("http", "https"):
        raise _Unsupported
    if not parsed.host:
        raise _InvalidURL
    return parsed


# The scheduler probes the same URLs tick after tick, and parsing one costs more than the
# rest of our side of a probe; a URL is immutable. A bad URL raises, and is not remembered.
_target = functools.lru_cache(maxsize=16_384)(_http_url)


class HealthProbe:
    """Runs health checks: HTTP checks on an `aiohttp.ClientSession` of its own, Prometheus
    queries on an `httpx.AsyncClient`.

    `client`: run every check on this client (the caller closes it, and decides trust,
    proxies and limits); without one, the probe creates and owns its clients. Its own HTTP
    checks take aiohttp because a probe costs a fraction of httpx's CPU there (the scheduler
    makes thousands a tick; see `bench/scheduler_scale.py`); both clients trust the same CA
    bundle and honour `HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY` and `NO_PROXY`. `timeout`
    (seconds) bounds each check as a whole, redirects included. `max_redirects` bounds the
    redirects followed, `max_connections` the connections open at once. Every request says
    `User-Agent: deploybot-health`.
    """

    def __init__(
        self,
        client: httpx.AsyncClient | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_redirects: int = MAX_REDIRECTS,
        max_connections: int = 100,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self._owns_client = client is None
        self._client = client or httpx.AsyncClient(
            timeout=timeout,
            headers={"User-Agent": USER_AGENT},
            verify=_default_tls(),
            limits=httpx.Limits(max_connections=max_connections),
        )
        self._timeout = float(timeout)
        self._max_redirects = max_redirects
        self._max_connections = max_connections
        # Made on first use: an aiohttp session belongs to the event loop it is made in.
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[str, str | None] = {}

    @property
    def timeout(self) -> float:
        """The deadline of one check, in seconds."""
        return self._timeout

    async def aclose(self) -> None:
        """Close the clients the probe created; a client passed in stays open."""
        if self._owns_client:
            await self._client.aclose()
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # --- HTTP -----------------------------------------------------------------------------

    async def check_http(self, url: str) -> ProbeResult:
        """GET `url`: healthy when the final status is below 400 (CONTRACT §4).

        Redirects are followed (at most `max_redirects`); the body is never read. Every
        failure to get a status (refused, timeout, TLS, DNS, redirect loop, bad URL) is an
        unhealthy result, e.g. `GET https://stage.example.com/healthz → connection refused`.
        """
        shown = _shown(url)
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._timeout):
                if self._owns_client:
                    status, redirects = await self._get(url)
                else:
                    response, redirects = await self._send(url)
                    await response.aclose()
                    status = response.status_code
        except Exception as exc:
            reason = self._describe(exc, url)
            if reason is None:
                raise
            elapsed = _since(started)
            check = CheckResult("http", shown, False, f"GET {shown} → {reason}", elapsed)
            return _single(check)
        elapsed = _since(started)
        detail = f"GET {shown} → {status} in {_duration(elapsed)}"
        if redirects:
            detail += f" after {_plural(redirects, 'redirect')}"
        check = CheckResult("http", shown, status < 400, detail, elapsed, status_code=status)
        return _single(check)

    # --- Prometheus -----------------------------------------------------------------------

    async def check_prometheus(
        self,
        base_url: str,
        query: str,
        *,
        max: float | None = None,
        min: float | None = None,
    ) -> ProbeResult:
        """Run `query` as an instant query (`GET {base_url}/api/v1/query`; a `POST` form
        when the encoded query is longer than `MAX_GET_QUERY`) and compare.

        Exactly one of `max` (healthy when every value ≤ max) and `min` (every value ≥ min)
        must be given, else `ValueError`. Every sample of a vector counts; an empty vector
        ("no data"), NaN, an error answer (its text is shown), a range/string result, an
        answer over 1 MiB and every transport failure are unhealthy; `+Inf` fails a `max`
        and `-Inf` a `min`. Details read like `error_rate = 0.031 > max 0.02`, and
        `samples` keeps every value measured.
        """
        kind, limit = _bound(max, min)
        base = str(base_url)
        shown_base = redact_url(base)
        label = _shorten(query)
        endpoint = base.rstrip("/") + "/api/v1/query"
        started = time.perf_counter()

        def result(healthy: bool, detail: str, **extra: Any) -> ProbeResult:
            check = CheckResult(
                "prometheus", shown_base, healthy, detail, _since(started), query=query, **extra
            )
            return _single(check)

        # Identity keeps the 1 MiB cap a cap on what is decoded, not on gzip.
        headers = {"Accept": "application/json", "Accept-Encoding": "identity"}
        form = urlencode({"query": query})
        try:
            async with asyncio.timeout(self._timeout):
                if len(form) > MAX_GET_QUERY:
                    # As the HTTP API suggests for queries that may breach URL length limits.
                    response, _ = await self._send(
                        endpoint,
                        method="POST",
                        content=form.encode(),
                        headers={
                            **headers,
                            "Content-Type": "application/x-www-form-urlencoded",
                        },
                    )
                else:
                    response, _ = await self._send(
                        endpoint, params={"query": query}, headers=headers
                    )
                try:
                    body = await _read_capped(response, MAX_PROMETHEUS_BYTES)
                finally:
                    await response.aclose()
        except _TooLarge:
            return result(False, f"{label} → answer larger than 1 MiB (Prometheus {shown_base})")
        except Exception as exc:
            reason = self._describe(exc, base)
            if reason is None:
                raise
            return result(False, f"{label} → {reason} (Prometheus {shown_base})")

        status = response.status_code
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            what = f"HTTP {status}" if status >= 400 else "answer is not JSON"
            return result(
                False,
                f"{label} → {what}, not a Prometheus API answer (Prometheus {shown_base})",
                status_code=status,
            )
        if payload.get("status") == "error":
            kind = _text(payload.get("errorType")) or "error"
            error = _scrub(_text(payload.get("error")) or f"HTTP {status}", base)
            return result(
                False,
                f"{label} → Prometheus {kind}: {_clip(error, _MAX_ERROR_TEXT)}",
                status_code=status,
            )
        try:
            if status >= 400 or payload.get("status") != "success":
                raise _Malformed(f"HTTP {status}")
            samples = _samples(payload.get("data"))
        except _Malformed as exc:
            return result(
                False,
                f"{label} → malformed answer: {exc} (Prometheus {shown_base})",
                status_code=status,
            )
        healthy, detail = _judge(label, samples, kind, limit)
        return result(healthy, detail, status_code=status, samples=samples)

    # --- both -----------------------------------------------------------------------------

    async def check(self, url: str | None, prometheus: Sequence[PrometheusSpec]) -> ProbeResult:
        """Run the HTTP check (when `url` is given) and every Prometheus query concurrently.

        Healthy only if every check is; `detail` joins each check's detail with `; `.
        Nothing to check is healthy ("no health checks configured"). A query without exactly
        one of `max`/`min` raises `ValueError` before anything runs.
        """
        if url and not prometheus:
            return await self.check_http(str(url))  # already the one check's result
        for spec in prometheus:
            _bound(spec.max, spec.min)
        started = time.perf_counter()
        probes = []
        if url:
            probes.append(self.check_http(str(url)))
        probes.extend(
            self.check_prometheus(str(spec.url), spec.query, max=spec.max, min=spec.min)
            for spec in prometheus
        )
        # One check is awaited as it is: a task for it would only cost.
        results = [await probes[0]] if len(probes) == 1 else await asyncio.gather(*probes)
        checks = tuple(check for result in results for check in result.checks)
        detail = "; ".join(check.detail for check in checks) or "no health checks configured"
        return ProbeResult(
            healthy=all(check.healthy for check in checks),
            detail=detail,
            elapsed_ms=_since(started),
            checks=checks,
        )

    # --- plumbing -------------------------------------------------------------------------

    async def _get(self, url: str) -> tuple[int, int]:
        """The final status of a GET of `url` and how many redirects led to it, on the
        probe's aiohttp session. No body is read: a connection whose body is still coming is
        closed rather than drained, so a probe stays bounded."""
        session = self._http()
        target = _target(url)
        redirects = 0
        while True:
            proxy = self._proxy(target)
            async with session.get(target, allow_redirects=False, proxy=proxy) as response:
                status = response.status
                location = response.headers.get("Location") if status in _REDIRECTS else None
                here = response.url
            if location is None:
                return status, redirects
            if redirects >= self._max_redirects:
                raise _TooManyRedirects
            redirects += 1
            target = _http_url(here.join(yarl.URL(location)))

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._max_connections, ssl=_default_tls()),
                headers={"User-Agent": USER_AGENT},
                # The probe's own deadline bounds each check; aiohttp's timers would cost.
                timeout=aiohttp.ClientTimeout(),
                # Nothing is read and no cookie is kept: one service's cookies are not
                # sent to another.
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
            # Read once, as httpx does (aiohttp's `trust_env` reads them on every request).
            found = urllib.request.getproxies_environment()
            self._proxies = {
                scheme: found.get(scheme) or found.get("all") for scheme in ("http", "https")
            }
        return self._session

    def _proxy(self, url: yarl.URL) -> str | None:
        """The proxy `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` names for `url`, unless
        `NO_PROXY` exempts its host."""
        proxy = self._proxies.get(url.scheme)
        if proxy is None or urllib.request.proxy_bypass_environment(url.host or ""):
            return None
        return proxy

    async def _send(
        self,
        url: str,
        *,
        method: str = "GET",
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[httpx.Response, int]:
        """The final response (open, body unread) and how many redirects led to it.

        Redirects are followed here rather than by httpx, which reads every redirect's body
        in full; closing them unread keeps the probe bounded.
        """
        request = self._client.build_request(
            method,
            url,
            params=params,
            content=content,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            timeout=self._timeout,
        )
        redirects = 0
        while True:
            response = await self._client.send(request, stream=True, follow_redirects=False)
            if response.next_request is None:
                return response, redirects
            await response.aclose()
            if redirects >= self._max_redirects:
                raise httpx.TooManyRedirects("too many redirects", request=request)
            redirects += 1
            request = response.next_request

    def _describe(self, exc: BaseException, url: str) -> str | None:
        """A short reason for a failed request, or None for exceptions that are not about
        the network or the probed service (those propagate: they are bugs)."""
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            return f"timed out after {_duration(self._timeout * 1000)}"
        if isinstance(exc, httpx.TooManyRedirects | _TooManyRedirects):
            return f"too many redirects (more than {self._max_redirects})"
        if isinstance(exc, httpx.UnsupportedProtocol | _Unsupported):
            return "unsupported URL (needs http:// or https://)"
        if isinstance(exc, httpx.InvalidURL | aiohttp.InvalidURL | _InvalidURL):
            return "invalid URL"
        if not isinstance(exc, httpx.HTTPError | httpx.StreamError | aiohttp.ClientError | OSError):
            return None
        for cause in _chain(exc):
            # aiohttp's TLS errors are ssl errors too, wrapping the one that tells.
            tls = not isinstance(cause, aiohttp.ClientError)
            if tls and isinstance(cause, ssl.SSLCertVerificationError):
                return f"TLS error: certificate verify failed: {cause.verify_message}"
            if tls and isinstance(cause, ssl.SSLError):
                return f"TLS error: {cause.reason or cause}"
            if isinstance(cause, ConnectionRefusedError):
                return "connection refused"
            if isinstance(cause, ConnectionResetError):
                return "connection reset"
            if isinstance(cause, socket.gaierror):
                return "host not found"
        text = _clip(_scrub(str(exc) or type(exc).__name__, url), _MAX_ERROR_TEXT)
        if isinstance(
            exc,
            httpx.RemoteProtocolError
            | aiohttp.ServerDisconnectedError
            | aiohttp.ClientResponseError
            | aiohttp.ClientPayloadError,
        ):
            return f"protocol error: {text}"
        return f"connection failed: {text}"


# --- redaction ----------------------------------------------------------------------------

_SECRET_NAME = re.compile(
    r"token|secret|passw|pwd|auth|key|sig|credential|session|jwt|bearer|code", re.IGNORECASE
)
_TOKENISH = re.compile(r"[A-Za-z0-9_\-.~+/=%]{20,}")
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#]*@")


def redact_url(url: str) -> str:
    """`url` as it may be shown to people: no `user:password@`, no fragment, and the values
    of query parameters that are named like secrets (`token`, `key`, `sig`, ...) or look
    like tokens (long letter-and-digit strings) replaced by `***`."""
    url = str(url)
    try:
        parts = urlsplit(url)
        host = parts.netloc.rpartition("@")[2]
    except ValueError:
        # Unparseable (e.g. a broken IPv6 literal): keep only what is surely not a secret.
        return _USERINFO.sub(r"\1", url.split("?", 1)[0].split("#", 1)[0])
    query = "&".join(_redact_param(param) for param in parts.query.split("&") if param)
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


# The scheduler shows the same URLs tick after tick.
_shown = functools.lru_cache(maxsize=16_384)(redact_url)


def _redact_param(param: str) -> str:
    name, equals, value = param.partition("=")
    if not equals:
        return "***" if _looks_like_token(name) else name
    if value and (_SECRET_NAME.search(name) or _looks_like_token(value)):
        return f"{name}=***"
    return param


def _looks_like_token(value: str) -> bool:
    return (
        _TOKENISH.fullmatch(value) is not None
        and any(c.isdigit() for c in value)
        and any(c.isalpha() for c in value)
    )


def _scrub(text: str, url: str) -> str:
    """Remove the URL's username and password from an error text, should one echo them."""
    try:
        parts = urlsplit(url)
        secrets = [parts.password, parts.username]
    except ValueError:
        return text
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# --- helpers ------------------------------------------------------------------------------


@functools.cache
def _default_tls() -> ssl.SSLContext:
    # Loading the CA bundle costs tens of milliseconds; probes may be made per scheduler tick.
    return httpx.create_ssl_context()


def _bound(upper: float | None, lower: float | None) -> tuple[Literal["max", "min"], float]:
    if upper is not None and lower is None:
        return "max", float(upper)
    if lower is not None and upper is None:
        return "min", float(lower)
    raise ValueError("a Prometheus check needs exactly one of `max` and `min`")


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def _samples(data: object) -> tuple[Sample, ...]:
    """The values of an instant query's `data` (vector or scalar), per the HTTP API docs."""
    if not isinstance(data, dict):
        raise _Malformed("no `data`")
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar":
        return (Sample("", _value(result)),)
    if kind == "vector":
        if not isinstance(result, list):
            raise _Malformed("vector `result` is not a list")
        samples = []
        for item in result:
            if not isinstance(item, dict) or "value" not in item:
                raise _Malformed("a vector sample without `value`")
            samples.append(Sample(_labels(item.get("metric")), _value(item["value"])))
        return tuple(samples)
    raise _Malformed(f"result type {_text(kind) or 'missing'}, expected vector or scalar")


def _value(pair: object) -> float:
    # Prometheus sends [<unix time>, "<value>"]; the value is a string so NaN/±Inf survive.
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
        raise _Malformed('a value is not [time, "number"]')
    try:
        return float(pair[1])
    except ValueError:
        raise _Malformed(f"value {_clip(pair[1], 20)!r} is not a number") from None


def _labels(metric: object) -> str:
    if not isinstance(metric, dict):
        return ""
    name = _text(metric.get("__name__"))
    pairs = ", ".join(
        f'{key}="{value}"' for key, value in sorted(metric.items()) if key != "__name__"
    )
    return _clip(name + (f"{{{pairs}}}" if pairs else ""), _MAX_SHOWN)


def _judge(
    label: str, samples: tuple[Sample, ...], kind: Literal["max", "min"], limit: float
) -> tuple[bool, str]:
    """Whether every sample is within the bound, and a line naming the telling sample: the
    worst failing one, or when all pass the one closest to the bound."""
    if not samples:
        return False, f"{label} → no data"
    upper = kind == "max"

    def badness(sample: Sample) -> float:
        if math.isnan(sample.value):
            return math.inf
        return sample.value if upper else -sample.value

    # NaN compares false both ways, so it fails either bound.
    failing = [
        sample
        for sample in samples
        if not (sample.value <= limit if upper else sample.value >= limit)
    ]
    shown = max(failing or samples, key=badness)
    bound = f"{kind} {_number(limit)}"
    if math.isnan(shown.value):
        line = f"{label} = NaN, not a number ({bound})"
    elif failing:
        line = f"{label} = {_number(shown.value)} {'>' if upper else '<'} {bound}"
    else:
        line = f"{label} = {_number(shown.value)} {'≤' if upper else '≥'} {bound}"
    if len(samples) > 1:
        if shown.labels:
            line += f" for {shown.labels}"
        if failing:
            line += f" ({len(failing)} of {len(samples)} series fail)"
        else:
            line += f" ({'highest' if upper else 'lowest'} of {len(samples)} series)"
    return not failing, line


def _single(check: CheckResult) -> ProbeResult:
    return ProbeResult(check.healthy, check.detail, check.elapsed_ms, (check,))


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _duration(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    seconds = ms / 1000
    return f"{seconds:.0f} s" if seconds == int(seconds) else f"{seconds:.1f} s"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:.6g}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def _shorten(query: str) -> str:
    return _clip(" ".join(query.split()), _MAX_SHOWN)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
