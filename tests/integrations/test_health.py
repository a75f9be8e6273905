"""Health probes against real HTTP servers on 127.0.0.1: a Starlette app served by uvicorn
(the service being deployed), the emulated Prometheus HTTP API
(`integrations.emulators.prometheus`) and a few raw servers for the misbehaving cases
(hang-ups, drip-fed headers, TLS, a Prometheus answer streamed past 1 MiB)."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ipaddress
import json
import math
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

from integrations import health
from integrations.emulators.loopback import LoopbackServer
from integrations.emulators.prometheus import PrometheusEmulator
from integrations.health import (
    MAX_GET_QUERY,
    USER_AGENT,
    HealthProbe,
    ProbeResult,
    Sample,
    redact_url,
)

NOW = 1_700_000_000.123
BASIC = "Basic " + base64.b64encode(b"deploy:s3cret").decode()


def up(instance: str, value: float | str) -> tuple[dict[str, str], float | str]:
    return {"__name__": "up", "job": "api", "instance": instance}, value


def evaluates(prometheus: PrometheusEmulator) -> None:
    """What the emulated Prometheus answers, by query text (as a real one evaluates them)."""
    prometheus.set("error_rate", 0.031)
    prometheus.set("latency_p99", 0.012)
    prometheus.set('up{job="api"}', [up("a:9100", 1), up("b:9100", 0), up("c:9100", 1)])
    prometheus.set_scalar("availability", 0.995)
    prometheus.set("absent_metric", [])
    prometheus.set("nan_ratio", math.nan)
    prometheus.set_scalar("NaN", math.nan)
    prometheus.set("overflow", math.inf)
    prometheus.set("underflow", -math.inf)
    prometheus.respond(
        "up[5m]",
        body={
            "status": "success",
            "data": {"resultType": "matrix", "result": [{"metric": {}, "values": []}]},
        },
        times=1_000,
    )
    prometheus.fail("slow_query", error_type="timeout", times=1_000)


class Service(LoopbackServer):
    """The deployed service's health endpoints plus an emulated Prometheus API."""

    def __init__(self) -> None:
        self.seen: list[Request] = []
        super().__init__(
            Starlette(
                routes=[
                    Route("/healthz", self.healthz),
                    Route("/status/{code:int}", self.status),
                    Route("/moved", self.moved),
                    Route("/chain/{hops:int}", self.chain),
                    Route("/loop", self.loop),
                    Route("/slow", self.slow),
                    Route("/private", self.private),
                    Route("/endless", self.endless),
                    Route("/huge-prometheus/api/v1/query", self.huge_prometheus),
                ]
            ),
            thread_name="health-service",
        )

    async def healthz(self, request: Request) -> Response:
        self.seen.append(request)
        return PlainTextResponse("ok")

    async def status(self, request: Request) -> Response:
        return PlainTextResponse("status", status_code=request.path_params["code"])

    async def moved(self, request: Request) -> Response:
        return RedirectResponse("/healthz", status_code=301)

    async def chain(self, request: Request) -> Response:
        hops = request.path_params["hops"]
        if hops == 0:
            return PlainTextResponse("ok")
        return RedirectResponse(f"/chain/{hops - 1}", status_code=302)

    async def loop(self, request: Request) -> Response:
        return RedirectResponse("/loop", status_code=302)

    async def slow(self, request: Request) -> Response:
        await self.wait_for_stop(5)
        return PlainTextResponse("late")

    async def private(self, request: Request) -> Response:
        if request.headers.get("authorization") != BASIC:
            return PlainTextResponse("who are you", status_code=401)
        return PlainTextResponse("ok")

    async def endless(self, request: Request) -> Response:
        async def body() -> AsyncIterator[bytes]:
            # Far more than any probe may read; bounded so a gone client cannot spin forever.
            for _ in range(16_384):
                yield b"x" * 65_536

        return StreamingResponse(body(), media_type="text/plain")

    async def huge_prometheus(self, request: Request) -> Response:
        # A Prometheus answer of ~2 MiB sent without a Content-Length.
        return StreamingResponse(huge_answer(), media_type="application/json")


async def huge_answer() -> AsyncIterator[bytes]:
    yield b'{"status":"success","data":{"resultType":"vector","result":['
    sample = json.dumps({"metric": {"pod": "x" * 200}, "value": [NOW, "1"]}).encode()
    for _ in range(8_000):  # ~2 MiB, sent without a Content-Length
        yield sample + b","
    yield b"]}}"


@pytest.fixture(scope="module")
def service() -> Iterator[Service]:
    with Service() as server:
        yield server


@pytest.fixture
async def probe() -> AsyncIterator[HealthProbe]:
    async with HealthProbe(timeout=2) as health:
        yield health


@pytest.fixture(scope="module")
def prometheus_server() -> Iterator[PrometheusEmulator]:
    with PrometheusEmulator() as server:
        yield server


@pytest.fixture
def emulator(prometheus_server: PrometheusEmulator) -> PrometheusEmulator:
    prometheus_server.reset()
    evaluates(prometheus_server)
    return prometheus_server


@pytest.fixture
def prometheus(emulator: PrometheusEmulator) -> str:
    return emulator.url


@pytest.fixture
def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def only(result: ProbeResult) -> None:
    assert len(result.checks) == 1
    check = result.checks[0]
    assert (check.healthy, check.detail) == (result.healthy, result.detail)
    assert result.elapsed_ms >= 0


# --- HTTP ---------------------------------------------------------------------------------


async def test_200_is_healthy_and_says_so(service: Service, probe: HealthProbe) -> None:
    url = service.base_url + "/healthz"
    result = await probe.check_http(url)
    only(result)
    assert result.healthy
    assert result.detail.startswith(f"GET {url} → 200 in ")
    assert result.detail.endswith(" ms")
    check = result.checks[0]
    assert (check.kind, check.target, check.status_code) == ("http", url, 200)
    assert service.seen[-1].headers["user-agent"] == USER_AGENT


async def test_redirects_are_followed(service: Service, probe: HealthProbe) -> None:
    result = await probe.check_http(service.base_url + "/moved")
    assert result.healthy
    assert result.checks[0].status_code == 200
    assert result.detail.endswith(" after 1 redirect")

    result = await probe.check_http(service.base_url + "/chain/3")
    assert result.healthy
    assert result.detail.endswith(" after 3 redirects")


async def test_a_redirect_loop_is_a_failure(service: Service, probe: HealthProbe) -> None:
    result = await probe.check_http(service.base_url + "/loop")
    only(result)
    assert not result.healthy
    assert result.detail == f"GET {service.base_url}/loop → too many redirects (more than 5)"
    assert result.checks[0].status_code is None


@pytest.mark.parametrize("code", [404, 500, 503])
async def test_4xx_and_5xx_are_unhealthy(service: Service, probe: HealthProbe, code: int) -> None:
    url = f"{service.base_url}/status/{code}"
    result = await probe.check_http(url)
    only(result)
    assert not result.healthy
    assert result.detail.startswith(f"GET {url} → {code} in ")
    assert result.checks[0].status_code == code


@pytest.mark.parametrize("code", [204, 302, 399])
async def test_below_400_is_healthy(service: Service, probe: HealthProbe, code: int) -> None:
    # A 302 without a Location is not followed: it is a status below 400 (CONTRACT §4).
    result = await probe.check_http(f"{service.base_url}/status/{code}")
    assert result.healthy
    assert result.checks[0].status_code == code


async def test_connection_refused(closed_port: int, probe: HealthProbe) -> None:
    url = f"http://127.0.0.1:{closed_port}/healthz"
    result = await probe.check_http(url)
    only(result)
    assert not result.healthy
    assert result.detail == f"GET {url} → connection refused"


async def test_a_slow_service_times_out(service: Service) -> None:
    url = service.base_url + "/slow"
    async with HealthProbe(timeout=0.2) as probe:
        started = time.monotonic()
        result = await probe.check_http(url)
    assert time.monotonic() - started < 1.5
    assert not result.healthy
    assert result.detail == f"GET {url} → timed out after 200 ms"


async def test_the_deadline_covers_drip_fed_headers() -> None:
    """Each byte arrives well within httpx's per-read timeout; only the probe's own
    deadline for the whole check ends this."""

    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            for _ in range(200):
                await writer.drain()
                await asyncio.sleep(0.02)
                writer.write(b"z")
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(drip, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with HealthProbe(timeout=0.3) as probe:
            started = time.monotonic()
            result = await probe.check_http(f"http://127.0.0.1:{port}/")
        assert time.monotonic() - started < 1.5
        assert not result.healthy
        assert result.detail.endswith("→ timed out after 300 ms")
    finally:
        server.close()
        await server.wait_closed()


async def test_a_hang_up_is_a_failure(probe: HealthProbe) -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await probe.check_http(f"http://127.0.0.1:{port}/healthz")
    finally:
        server.close()
        await server.wait_closed()
    assert not result.healthy
    assert "→ protocol error: Server disconnected" in result.detail


async def test_the_body_is_not_read(service: Service, probe: HealthProbe) -> None:
    # A GiB of body: reading it would take far longer than this probe's deadline.
    result = await probe.check_http(service.base_url + "/endless")
    assert result.healthy, result.detail
    assert result.elapsed_ms < 1000


async def test_tls_errors_are_failures(service: Service, probe: HealthProbe) -> None:
    url = f"https://127.0.0.1:{service.port}/healthz"  # TLS to a plain-HTTP port
    result = await probe.check_http(url)
    assert not result.healthy
    assert result.detail.startswith(f"GET {url} → TLS error: ")


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_an_untrusted_certificate_fails_and_a_given_client_decides_trust(
    tmp_path: Path, probe: HealthProbe
) -> None:
    cert, key = self_signed(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server_context)
    url = f"https://127.0.0.1:{server.sockets[0].getsockname()[1]}/healthz"
    try:
        result = await probe.check_http(url)
        assert not result.healthy
        assert result.detail.startswith(f"GET {url} → TLS error: certificate verify failed")

        trusting = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=trusting) as client:
            given = HealthProbe(client, timeout=2)
            result = await given.check_http(url)
            await given.aclose()
            assert not client.is_closed  # the caller's client stays the caller's
        assert result.healthy, result.detail
    finally:
        server.close()
        await server.wait_closed()


async def test_bad_urls_are_failures_not_exceptions(probe: HealthProbe) -> None:
    result = await probe.check_http("ftp://example.com/healthz")
    assert (
        result.detail
        == "GET ftp://example.com/healthz → unsupported URL (needs http:// or https://)"
    )
    result = await probe.check_http("stage.example.com/healthz")
    assert not result.healthy


async def test_a_url_probed_again_is_parsed_once_and_bad_ones_fail_every_time(
    service: Service, probe: HealthProbe
) -> None:
    url = service.base_url + "/healthz?tick=again"
    first = await probe.check_http(url)
    hits = health._target.cache_info().hits
    again = await probe.check_http(url)
    assert first.healthy and again.healthy
    assert health._target.cache_info().hits == hits + 1
    for _ in range(2):
        result = await probe.check_http("ftp://example.com/again")
        assert not result.healthy
        assert result.detail.endswith("unsupported URL (needs http:// or https://)")


# --- what details may show ----------------------------------------------------------------


async def test_credentials_are_used_but_never_shown(service: Service, probe: HealthProbe) -> None:
    url = f"http://deploy:s3cret@127.0.0.1:{service.port}/private?token=abc&full=1"
    result = await probe.check_http(url)
    assert result.healthy, result.detail  # httpx sent the userinfo as Basic auth
    assert result.detail.startswith(
        f"GET http://127.0.0.1:{service.port}/private?token=***&full=1 → 200 in "
    )
    assert "s3cret" not in repr(result) and "deploy:" not in repr(result)

    result = await probe.check_http(f"http://deploy:s3cret@127.0.0.1:{service.port}/loop")
    assert "s3cret" not in result.detail and "deploy" not in result.detail

    async with PrometheusEmulator(base_path="/prom", basic_auth=("deploy", "s3cret")) as secured:
        secured.set("authorized", 1)
        port = secured.port
        result = await probe.check_prometheus(
            f"http://deploy:s3cret@127.0.0.1:{port}/prom", "authorized", max=1
        )
        assert result.healthy, result.detail
        assert "s3cret" not in repr(result)
        assert result.checks[0].target == f"http://127.0.0.1:{port}/prom"
        assert secured.calls[-1].headers["authorization"] == BASIC

        result = await probe.check_prometheus(f"http://127.0.0.1:{port}/prom", "authorized", max=1)
        assert result.detail == (
            f"authorized → HTTP 401, not a Prometheus API answer (Prometheus "
            f"http://127.0.0.1:{port}/prom)"
        )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://stage.example.com/healthz", "https://stage.example.com/healthz"),
        ("https://user:pass@stage.example.com/healthz", "https://stage.example.com/healthz"),
        ("https://user@stage.example.com:8443/h", "https://stage.example.com:8443/h"),
        ("https://h/healthz?full=1&verbose", "https://h/healthz?full=1&verbose"),
        ("https://h/healthz?access_token=abc&x=1", "https://h/healthz?access_token=***&x=1"),
        ("https://h/h?apiKey=k&sig=s&password=p", "https://h/h?apiKey=***&sig=***&password=***"),
        ("https://h/h?id=ghp_16C7e42F292c6912E7710c838347Ae178B4a", "https://h/h?id=***"),
        ("https://h/h?sk_live_51HaBcDeFgHiJkLmNoPq", "https://h/h?***"),
        (
            "https://h/h?commit=main&n=12345678901234567890",
            "https://h/h?commit=main&n=12345678901234567890",
        ),
        ("https://h/healthz#frag", "https://h/healthz"),
        ("http://u:p@[bad/x?token=1", "http://[bad/x"),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


# --- Prometheus ---------------------------------------------------------------------------


async def test_vector_above_max_fails(prometheus: str, probe: HealthProbe) -> None:
    result = await probe.check_prometheus(prometheus, "error_rate", max=0.02, min=None)
    only(result)
    assert not result.healthy
    assert result.detail == "error_rate = 0.031 > max 0.02"
    check = result.checks[0]
    assert (check.kind, check.query, check.status_code) == ("prometheus", "error_rate", 200)
    assert check.samples == (Sample("", 0.031),)


async def test_vector_within_max_passes(
    emulator: PrometheusEmulator, prometheus: str, probe: HealthProbe
) -> None:
    result = await probe.check_prometheus(prometheus + "/", "latency_p99", max=0.02)
    assert result.healthy
    assert result.detail == "latency_p99 = 0.012 ≤ max 0.02"
    (call,) = emulator.calls
    assert (call.method, call.path, call.query) == ("GET", "/api/v1/query", "latency_p99")
    assert call.headers["user-agent"] == USER_AGENT
    assert call.headers["accept-encoding"] == "identity"


async def test_a_value_on_the_bound_passes(
    emulator: PrometheusEmulator, probe: HealthProbe
) -> None:
    emulator.set("ratio", 0.02)
    result = await probe.check_prometheus(emulator.url, "ratio", max=0.02)
    assert (result.healthy, result.detail) == (True, "ratio = 0.02 ≤ max 0.02")
    result = await probe.check_prometheus(emulator.url, "ratio", min=0.02)
    assert (result.healthy, result.detail) == (True, "ratio = 0.02 ≥ min 0.02")


async def test_every_sample_of_a_vector_counts(prometheus: str, probe: HealthProbe) -> None:
    result = await probe.check_prometheus(prometheus, 'up{job="api"}', min=1)
    assert not result.healthy
    assert result.detail == (
        'up{job="api"} = 0 < min 1 for up{instance="b:9100", job="api"} (1 of 3 series fail)'
    )
    assert [s.value for s in result.checks[0].samples] == [1.0, 0.0, 1.0]

    result = await probe.check_prometheus(prometheus, 'up{job="api"}', max=1)
    assert result.healthy
    assert result.detail.endswith(
        '= 1 ≤ max 1 for up{instance="a:9100", job="api"} (highest of 3 series)'
    )


async def test_min_over_series_names_the_lowest(
    emulator: PrometheusEmulator, probe: HealthProbe
) -> None:
    emulator.set(
        "sum by (pod) (up)",
        [({"pod": "api-1"}, 1), ({"pod": "api-2"}, 0.75), ({"pod": "api-3"}, 0.5)],
    )
    result = await probe.check_prometheus(emulator.url, "sum by (pod) (up)", min=0.5)
    assert result.healthy
    assert (
        result.detail == 'sum by (pod) (up) = 0.5 ≥ min 0.5 for {pod="api-3"} (lowest of 3 series)'
    )
    result = await probe.check_prometheus(emulator.url, "sum by (pod) (up)", min=0.8)
    assert result.detail == (
        'sum by (pod) (up) = 0.5 < min 0.8 for {pod="api-3"} (2 of 3 series fail)'
    )
    assert [s.labels for s in result.checks[0].samples] == [
        '{pod="api-1"}',
        '{pod="api-2"}',
        '{pod="api-3"}',
    ]


async def test_scalar_with_min(prometheus: str, probe: HealthProbe) -> None:
    result = await probe.check_prometheus(prometheus, "availability", min=0.99)
    assert (result.healthy, result.detail) == (True, "availability = 0.995 ≥ min 0.99")
    result = await probe.check_prometheus(prometheus, "availability", min=0.999)
    assert (result.healthy, result.detail) == (False, "availability = 0.995 < min 0.999")


async def test_an_empty_vector_is_no_data(prometheus: str, probe: HealthProbe) -> None:
    result = await probe.check_prometheus(prometheus, "absent_metric", max=1)
    assert (result.healthy, result.detail) == (False, "absent_metric → no data")


async def test_an_empty_vector_fails_a_min_too(prometheus: str, probe: HealthProbe) -> None:
    result = await probe.check_prometheus(prometheus, "absent_metric", min=0)
    assert (result.healthy, result.detail) == (False, "absent_metric → no data")
    assert result.checks[0].samples == ()


@pytest.mark.parametrize("query", ["nan_ratio", "NaN"])
@pytest.mark.parametrize("bound", ["max", "min"])
async def test_nan_fails(prometheus: str, probe: HealthProbe, query: str, bound: str) -> None:
    result = await probe.check_prometheus(prometheus, query, **{bound: 1})
    assert not result.healthy
    assert result.detail == f"{query} = NaN, not a number ({bound} 1)"
    assert math.isnan(result.checks[0].samples[0].value)


async def test_nan_among_series_is_the_one_shown(
    emulator: PrometheusEmulator, probe: HealthProbe
) -> None:
    emulator.set("ratio by (pod)", [({"pod": "a"}, 0.5), ({"pod": "b"}, math.nan)])
    result = await probe.check_prometheus(emulator.url, "ratio by (pod)", max=0.9)
    assert (
        result.detail
        == 'ratio by (pod) = NaN, not a number (max 0.9) for {pod="b"} (1 of 2 series fail)'
    )


@pytest.mark.parametrize(
    ("query", "bound", "healthy", "detail"),
    [
        ("overflow", {"max": 0.02}, False, "overflow = +Inf > max 0.02"),
        ("overflow", {"min": 1}, True, "overflow = +Inf ≥ min 1"),
        ("underflow", {"min": 0.99}, False, "underflow = -Inf < min 0.99"),
        ("underflow", {"max": 1}, True, "underflow = -Inf ≤ max 1"),
    ],
)
async def test_infinities_compare_as_numbers(
    prometheus: str,
    probe: HealthProbe,
    query: str,
    bound: dict[str, float],
    healthy: bool,
    detail: str,
) -> None:
    result = await probe.check_prometheus(prometheus, query, **bound)
    assert (result.healthy, result.detail) == (healthy, detail)


async def test_error_answers_show_the_error(
    emulator: PrometheusEmulator, prometheus: str, probe: HealthProbe
) -> None:
    emulator.fail(
        "rate(x[5m",
        error_type="bad_data",
        error='invalid parameter "query": 1:10: parse error: unclosed left bracket',
    )
    result = await probe.check_prometheus(prometheus, "rate(x[5m", max=1)
    assert not result.healthy
    assert result.detail == (
        'rate(x[5m → Prometheus bad_data: invalid parameter "query": 1:10: parse error: '
        "unclosed left bracket"
    )
    assert result.checks[0].status_code == 400

    result = await probe.check_prometheus(prometheus, "slow_query", max=1)
    assert result.detail == "slow_query → Prometheus timeout: query timed out in query execution"
    assert result.checks[0].status_code == 503

    emulator.fail("error_rate", error_type="execution", error="many-to-many matching not allowed")
    result = await probe.check_prometheus(prometheus, "error_rate", max=1)
    assert result.detail == "error_rate → Prometheus execution: many-to-many matching not allowed"
    assert result.checks[0].status_code == 422
    result = await probe.check_prometheus(prometheus, "error_rate", max=1)
    assert result.healthy, "the next evaluation measures again"


async def test_a_slow_prometheus_times_out(emulator: PrometheusEmulator) -> None:
    emulator.delay("error_rate", 5)
    async with HealthProbe(timeout=0.3) as quick:
        started = time.monotonic()
        result = await quick.check_prometheus(emulator.url, "error_rate", max=0.02)
    assert time.monotonic() - started < 2
    assert (result.healthy, result.detail) == (
        False,
        f"error_rate → timed out after 300 ms (Prometheus {emulator.url})",
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0.5, 'a value is not [time, "number"]'),
        ("fast", "value 'fast' is not a number"),
    ],
)
async def test_malformed_values(
    emulator: PrometheusEmulator, probe: HealthProbe, value: object, problem: str
) -> None:
    answer = {
        "status": "success",
        "data": {"resultType": "vector", "result": [{"metric": {}, "value": [NOW, value]}]},
    }
    emulator.respond("ratio", body=answer)
    result = await probe.check_prometheus(emulator.url, "ratio", max=1)
    assert result.detail == f"ratio → malformed answer: {problem} (Prometheus {emulator.url})"


async def test_long_queries_are_posted(emulator: PrometheusEmulator, probe: HealthProbe) -> None:
    matchers = ", ".join(f'pod!="api-{i}"' for i in range(200))
    query = f"sum(rate(http_requests_total{{{matchers}}}[5m]))"
    assert len(query) > MAX_GET_QUERY
    emulator.set(query, 0.01)
    result = await probe.check_prometheus(emulator.url, query, max=0.02)
    assert result.healthy, result.detail
    (call,) = emulator.calls
    assert (call.method, call.query) == ("POST", query)
    assert call.headers["content-type"] == "application/x-www-form-urlencoded"

    await probe.check_prometheus(emulator.url, "error_rate", max=0.02)
    assert emulator.calls[-1].method == "GET"


async def test_warnings_do_not_change_the_verdict(
    emulator: PrometheusEmulator, probe: HealthProbe
) -> None:
    emulator.set("ratio", 0.01, warnings=["PromQL info: metric might not be a counter"])
    result = await probe.check_prometheus(emulator.url, "ratio", max=0.02)
    assert (result.healthy, result.detail) == (True, "ratio = 0.01 ≤ max 0.02")


async def test_a_range_result_is_malformed(prometheus: str, probe: HealthProbe) -> None:
    result = await probe.check_prometheus(prometheus, "up[5m]", max=1)
    assert not result.healthy
    assert result.detail.startswith(
        "up[5m] → malformed answer: result type matrix, expected vector or scalar"
    )


async def test_answers_over_1_mib_are_refused(
    service: Service, emulator: PrometheusEmulator, probe: HealthProbe
) -> None:
    emulator.respond("huge_declared", body=b" " * (2 << 20), content_type="application/json")
    result = await probe.check_prometheus(emulator.url, "huge_declared", max=1)
    assert not result.healthy
    assert result.detail == f"huge_declared → answer larger than 1 MiB (Prometheus {emulator.url})"

    base = service.base_url + "/huge-prometheus"
    result = await probe.check_prometheus(base, "huge_streamed", max=1)
    assert result.detail == f"huge_streamed → answer larger than 1 MiB (Prometheus {base})"


async def test_not_a_prometheus(emulator: PrometheusEmulator, probe: HealthProbe) -> None:
    base = emulator.url
    emulator.respond(status=502, body="<html>Bad Gateway</html>", content_type="text/html")
    result = await probe.check_prometheus(base, "error_rate", max=1)
    assert (
        result.detail == f"error_rate → HTTP 502, not a Prometheus API answer (Prometheus {base})"
    )
    emulator.respond(body="ok")
    result = await probe.check_prometheus(base, "error_rate", max=1)
    assert (
        result.detail
        == f"error_rate → answer is not JSON, not a Prometheus API answer (Prometheus {base})"
    )


async def test_prometheus_down(closed_port: int, probe: HealthProbe) -> None:
    base = f"http://127.0.0.1:{closed_port}"
    result = await probe.check_prometheus(base, "error_rate", max=0.02)
    assert (result.healthy, result.detail) == (
        False,
        f"error_rate → connection refused (Prometheus {base})",
    )


async def test_long_queries_are_shortened(prometheus: str, probe: HealthProbe) -> None:
    query = (
        'sum(rate(http_requests_total{code=~"5.."}[5m]))\n'
        "   / sum(rate(http_requests_total[5m])) + x["
    )
    result = await probe.check_prometheus(prometheus, query, max=0.02)
    label = result.detail.split(" → ")[0]
    assert len(label) == 80 and label.endswith("…") and "\n" not in label
    assert result.checks[0].query == query


@pytest.mark.parametrize(("upper", "lower"), [(None, None), (1.0, 0.0)])
async def test_exactly_one_bound(
    prometheus: str, probe: HealthProbe, upper: float | None, lower: float | None
) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        await probe.check_prometheus(prometheus, "error_rate", max=upper, min=lower)


# --- combined -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """Shaped like the pipeline config's PrometheusQuery."""

    url: str
    query: str
    max: float | None = None
    min: float | None = None


async def test_combined_is_healthy_only_if_every_part_is(
    service: Service, prometheus: str, probe: HealthProbe
) -> None:
    url = service.base_url + "/healthz"
    good = [Query(prometheus, "latency_p99", max=0.02), Query(prometheus, "availability", min=0.99)]
    result = await probe.check(url, good)
    assert result.healthy
    assert [c.kind for c in result.checks] == ["http", "prometheus", "prometheus"]
    parts = result.detail.split("; ")
    assert parts[0].startswith(f"GET {url} → 200 in ")
    assert parts[1:] == ["latency_p99 = 0.012 ≤ max 0.02", "availability = 0.995 ≥ min 0.99"]

    result = await probe.check(url, [*good, Query(prometheus, "error_rate", max=0.02)])
    assert not result.healthy
    assert result.detail.endswith("; error_rate = 0.031 > max 0.02")
    assert [c.healthy for c in result.checks] == [True, True, True, False]

    result = await probe.check(service.base_url + "/status/503", good)
    assert not result.healthy
    assert result.checks[0].detail in result.detail


async def test_combined_parts(prometheus: str, probe: HealthProbe) -> None:
    result = await probe.check(None, [Query(prometheus, "error_rate", max=0.05)])
    assert (result.healthy, result.detail) == (True, "error_rate = 0.031 ≤ max 0.05")

    result = await probe.check(None, [])
    assert (result.healthy, result.detail, result.checks) == (
        True,
        "no health checks configured",
        (),
    )

    with pytest.raises(ValueError, match="exactly one"):
        await probe.check(None, [Query(prometheus, "error_rate")])
