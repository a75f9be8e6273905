"""End to end: `deploybot serve` as a real process, driven through signed HTTP requests."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import BOT_TOKEN, SIGNING_SECRET, WEBHOOK_SECRET
from tests.e2e.server import ServeProcess
from tests.helpers import compact, github_headers

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(
    settings_env: dict[str, str], database_url: str, tmp_path: Path
) -> Iterator[ServeProcess]:
    env = {**settings_env, "DATABASE_URL": database_url}
    server = ServeProcess(env, tmp_path / "serve.log").start()
    yield server
    server.stop()


def test_serve_answers_probes_and_accepts_only_signed_deliveries(server: ServeProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").json() == {"status": "ok"}

        body = compact({"zen": "Design for failure.", "hook_id": 1})
        signed = github_headers(body, secret=WEBHOOK_SECRET, event="ping", delivery="e2e-1")
        assert client.post("/github/webhook", content=body, headers=signed).status_code == 202
        assert client.post("/github/webhook", content=body, headers=signed).status_code == 200

        forged = github_headers(body, secret="guessed-secret", event="ping", delivery="e2e-2")
        assert client.post("/github/webhook", content=body, headers=forged).status_code == 401

        metrics = client.get("/metrics")
        assert metrics.headers["content-type"].startswith("text/plain")
        assert 'route="/github/webhook",status="202"} 1.0' in metrics.text
        assert 'route="/github/webhook",status="401"} 1.0' in metrics.text
        assert "deploybot_inbox_depth" in metrics.text


def test_sigterm_stops_cleanly_and_logs_hold_no_secret(
    server: ServeProcess, settings_env: dict[str, str]
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        body = compact({"zen": "x", "token": BOT_TOKEN})
        client.post(
            "/github/webhook",
            content=body,
            headers=github_headers(body, secret=WEBHOOK_SECRET, event="ping"),
        )
        client.post(
            "/github/webhook",
            content=body,
            headers=github_headers(body, secret="wrong", event="ping"),
        )
        client.post(
            "/slack/events",
            content=b"command=%2Fdeploy&text=help",
            headers={"X-Slack-Signature": "v0=forged", "X-Slack-Request-Timestamp": "1"},
        )
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status reports it.
    assert server.stop() in (0, -signal.SIGTERM)
    output = server.output()
    assert "deploybot stopped" in output and "Application shutdown complete" in output
    pem_lines = [
        line for line in settings_env["GITHUB_APP_PRIVATE_KEY"].splitlines() if "---" not in line
    ]
    for secret in [WEBHOOK_SECRET, SIGNING_SECRET, BOT_TOKEN, *pem_lines]:
        assert secret not in output


@pytest.mark.parametrize("missing", ["GITHUB_WEBHOOK_SECRET", "SLACK_BOT_TOKEN"])
def test_serve_refuses_to_start_naming_the_missing_setting(
    settings_env: dict[str, str], tmp_path: Path, missing: str
) -> None:
    env = {k: v for k, v in settings_env.items() if k != missing}
    server = ServeProcess(env, tmp_path / "serve.log")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "deploybot"), "serve", "--port", str(server.port)],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and missing in lines[0], result.stderr
    assert WEBHOOK_SECRET not in result.stderr + result.stdout


def test_python_dash_m_bot_is_the_same_cli() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    for command in ("serve", "migrate", "demo", "manifest"):
        assert command in result.stdout


def test_migrate_command(settings_env: dict[str, str], tmp_path: Path) -> None:
    server = ServeProcess(settings_env, tmp_path / "unused.log")
    result = subprocess.run(
        [str(Path(sys.executable).parent / "deploybot"), "migrate"],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "database at head" in result.stdout
