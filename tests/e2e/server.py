"""A real `deploybot serve` process for end-to-end tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServeProcess:
    """`deploybot serve` on a free loopback port, with its output captured to a file."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "GITHUB_", "DEPLOYBOT_", "DATABASE_URL"))
        }
        self.env = {**base, **env}
        self.process: subprocess.Popen[bytes] | None = None
        self._earlier = ""  # what runs before a `restart` logged

    def start(self, timeout: float = 30) -> ServeProcess:
        command = [
            str(Path(sys.executable).parent / "deploybot"),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self._log = self.log_path.open("wb")
        # Started from another directory: migrations must be found through the package.
        self.process = subprocess.Popen(
            command,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.log_path.parent,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"deploybot serve exited early:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"deploybot serve did not answer in {timeout}s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no shutdown, nothing handed back, every
        lease the process held left to run out. The log keeps what it wrote."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._log.close()

    def pause(self) -> None:
        """SIGSTOP, as a long GC pause or a frozen VM would: the process stops where it is,
        holding its connections and leases, and knows nothing of the time that passes."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT: a paused process goes on where it stopped."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    def restart(self, timeout: float = 30) -> ServeProcess:
        """Start again on the same port and database (after `kill` or `stop`); `output()`
        keeps what the earlier runs logged."""
        assert self.process is not None and self.process.poll() is not None
        self._earlier = self.output()
        return self.start(timeout)

    def output(self) -> str:
        return self._earlier + self.log_path.read_text(errors="replace")
