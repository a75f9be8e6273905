"""What the load benchmarks share: processes pinned to a core, `wrk` runs and their figures,
the machine's description, and the settings a benchmarked `deploybot serve` runs with.

The server under test gets core 0 and the load generator core 1 (DESIGN.md: 2 cores), so
each figure is one core's worth of serving, the same for deploybot and its baselines.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVER_CPU = 0
LOAD_CPU = 1
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pinned(cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []


@contextmanager
def serving(
    name: str,
    command: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    cpu: int | None = SERVER_CPU,
    cwd: Path | None = None,
    ready_path: str | None = None,
    timeout: float = 60,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` pinned to `cpu` until the block ends; ready once `port` accepts
    connections (and `ready_path` answers, when given). Its output goes to a temp file that
    is shown if it dies early."""
    log = tempfile.NamedTemporaryFile(prefix=f"bench-{name}-", suffix=".log", delete=False)
    process = subprocess.Popen(
        [*_pinned(cpu), *command],
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        start_new_session=True,
    )
    try:
        _wait_ready(name, process, port, ready_path, timeout, Path(log.name))
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
        Path(log.name).unlink(missing_ok=True)


def _wait_ready(
    name: str,
    process: subprocess.Popen[bytes],
    port: int,
    path: str | None,
    timeout: float,
    log: Path,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                if path is None:
                    return
                sock.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
                if sock.recv(16).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer on port {port} in {timeout}s")


@dataclass
class WrkResult:
    """One `wrk --latency` run: throughput, latency percentiles (ms), answers by status."""

    requests_per_second: float
    latency_ms: dict[str, float]
    statuses: dict[int, int] = field(default_factory=dict)
    errors: str = ""

    @property
    def p50(self) -> float:
        return self.latency_ms["50%"]

    @property
    def p99(self) -> float:
        return self.latency_ms["99%"]

    @property
    def answered(self) -> int:
        return sum(self.statuses.values())


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS_MS[unit]


def parse_wrk(output: str) -> WrkResult:
    """The figures of `wrk --latency` output and of the `status <code> <count>` lines our
    Lua scripts print when done."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    latency = {
        m.group(1): _ms(m.group(2))
        for m in re.finditer(r"^\s+(50|75|90|99)%\s+([\d.]+\w+)\s*$", output, re.MULTILINE)
    }
    if rate is None or "99" not in latency:
        raise RuntimeError(f"wrk printed no rate or latency:\n{output}")
    statuses = {
        int(m.group(1)): int(m.group(2))
        for m in re.finditer(r"^status (\d+) (\d+)$", output, re.MULTILINE)
    }
    errors = re.search(r"Socket errors:.*$", output, re.MULTILINE)
    return WrkResult(
        float(rate.group(1)),
        {f"{k}%": v for k, v in latency.items()},
        statuses,
        errors.group(0) if errors else "",
    )


# Counts every answer by status; `thread:get` copies only plain values, so each thread keeps
# one global per status and `done` sums them over the threads.
LUA_STATUS_COUNTS = """
local threads = {}
function setup(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end
function response(status, headers, body)
  _G["s" .. status] = (_G["s" .. status] or 0) + 1
end
function done(summary, latency, requests)
  for code = 100, 599 do
    local n = 0
    for _, thread in ipairs(threads) do n = n + (thread:get("s" .. code) or 0) end
    if n > 0 then print(string.format("status %d %d", code, n)) end
  end
end
"""


def run_wrk(
    url: str,
    lua: str,
    *,
    connections: int = 32,
    seconds: float = 20,
    threads: int = 1,
    timeout_s: int = 10,
) -> WrkResult:
    """`wrk` pinned to the load core, with `lua` (our request and pacing functions) and
    the status counters appended."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(lua + LUA_STATUS_COUNTS)
    try:
        command = [
            *_pinned(LOAD_CPU),
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{round(seconds)}s",
            f"--timeout={timeout_s}s",
            "--latency",
            "-s",
            script.name,
            url,
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"wrk failed: {done.stderr or done.stdout}")
    finally:
        Path(script.name).unlink(missing_ok=True)
    return parse_wrk(done.stdout)


@dataclass
class Pacing:
    """wrk's `delay()` for `rate` requests a second over `connections`, corrected for the
    latency runs show (`learn`): wrk waits `delay()` after each answer, so a connection
    sends one request every delay + latency.

    Each wait is drawn at random (exponentially, with the mean delay), so requests arrive
    at random moments, as from many senders. With one fixed delay the connections stay in
    step: all of them send within a few milliseconds, then none for the delay, and a server
    sees bursts of `connections` requests instead of a rate (a minimal Bolt app's p50 went
    from 14 ms to 55 ms at 500/s with 200 connections).
    """

    rate: float
    connections: int
    latency_ms: float

    @property
    def delay_ms(self) -> float:
        return 1000 * self.connections / self.rate - self.latency_ms

    def lua(self) -> str:
        if self.delay_ms <= 0:
            raise RuntimeError(
                f"{self.connections} connections cannot carry {self.rate:.0f}/s at a latency "
                f"of {self.latency_ms:.1f} ms"
            )
        return f"function delay() return -math.log(1 - math.random()) * {self.delay_ms:.3f} end\n"

    def learn(self, result: WrkResult) -> None:
        """What a run at this delay shows of the latency per request, wait included."""
        if result.requests_per_second > 0:
            cycle_ms = 1000 * self.connections / result.requests_per_second
            self.latency_ms = max(0.0, cycle_ms - self.delay_ms)


def paced_run(
    url: str,
    lua: str,
    *,
    rate: float,
    connections: int,
    seconds: float,
    guessed_latency_ms: float,
    calibrations: int = 2,
    calibration_seconds: float = 5,
) -> tuple[list[WrkResult], WrkResult]:
    """A run at about `rate` requests a second, after short runs that find the pacing (each
    correcting the delay from the latency it saw); all are returned. The Lua global `run`
    names each run ("c0", "c1", ..., then "p"), for scripts that must not repeat a request
    of an earlier run."""
    pacing = Pacing(rate, connections, guessed_latency_ms)
    runs = []
    for n in range(calibrations):
        script = f'run = "c{n}"\n{lua}{pacing.lua()}'
        runs.append(run_wrk(url, script, connections=connections, seconds=calibration_seconds))
        pacing.learn(runs[-1])
    measured = run_wrk(
        url, f'run = "p"\n{lua}{pacing.lua()}', connections=connections, seconds=seconds
    )
    return runs, measured


def lua_string(value: str | bytes) -> str:
    """`value` as a Lua long-bracket literal that no byte of it can close."""
    text = value.decode() if isinstance(value, bytes) else value
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    # A newline right after the opening bracket is dropped by Lua, so one is always given.
    return f"[{'=' * level}[\n{text}]{'=' * level}]"


def require_wrk() -> None:
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk (Debian's package)")


def machine() -> str:
    """One line naming the machine the figures come from."""
    model = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{os.cpu_count()} cores ({model}), {memory:.0f} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


def ratio(ours: float, baseline: float) -> str:
    return f"{ours / baseline:.2f}x" if baseline else "n/a"


def app_private_key() -> str:
    """A fresh PEM key for the GitHub App settings (the emulator checks nothing more)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def deploybot_env(*, database_url: str, webhook_secret: str, signing_secret: str) -> dict[str, str]:
    """The environment of a benchmarked `deploybot serve`: the contract's settings, with
    GitHub and Slack pointed at closed loopback ports unless the caller points them at an
    emulator."""
    return {
        "DATABASE_URL": database_url,
        "SLACK_BOT_TOKEN": "xoxb-bench",
        "SLACK_SIGNING_SECRET": signing_secret,
        "GITHUB_APP_ID": "4242",
        "GITHUB_WEBHOOK_SECRET": webhook_secret,
        "GITHUB_APP_PRIVATE_KEY": app_private_key(),
        "DEPLOYBOT_LOG_FORMAT": "json",
    }


def deploybot_serve(port: int) -> list[str]:
    return [str(VENV_BIN / "deploybot"), "serve", "--host", "127.0.0.1", "--port", str(port)]


def uvicorn_app(target: str, port: int) -> list[str]:
    """The same uvicorn deploybot runs on (uvloop, httptools), serving `target`."""
    return [
        sys.executable,
        "-m",
        "uvicorn",
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
