"""What the emulators share: serving an ASGI app on loopback, finding the test corpora and
taking injected faults in turn.

`LoopbackServer` binds its socket before uvicorn starts (port 0 picks a free port, known at
once and with no race), then serves from a background thread (`start`/`stop`, `with`,
`async with`) or from the calling thread (`serve_forever`, the `python -m` mode). The
emulators subclass it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, Self, TypeVar

import uvicorn
from starlette.types import ASGIApp

__all__ = ["CORPORA_ENV", "LoopbackServer", "corpora_dir", "take_fault"]

CORPORA_ENV = "DEPLOYBOT_CORPORA"


def corpora_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The test corpora folder: `explicit`, else `$DEPLOYBOT_CORPORA`, else
    `<repo>/../shared/corpora` if it exists, else None (an installed package has no corpora).

    An explicit or configured path is returned as given, without checking that it exists.
    """
    if explicit is not None:
        return Path(explicit)
    configured = os.environ.get(CORPORA_ENV)
    if configured:
        return Path(configured)
    default = Path(__file__).resolve().parents[3] / "shared" / "corpora"
    return default if default.is_dir() else None


class _Countdown(Protocol):
    remaining: int


_F = TypeVar("_F", bound=_Countdown)


def take_fault(faults: dict[str, list[_F]], key: str) -> _F | None:
    """The fault queued for `key`, else for `"*"` (any), counting one use of it; a fault
    leaves its queue once its `remaining` uses are spent. The caller holds its own lock."""
    for name in (key, "*"):
        queue = faults.get(name)
        if queue:
            fault = queue[0]
            fault.remaining -= 1
            if fault.remaining <= 0:
                queue.pop(0)
            return fault
    return None


class _Server(uvicorn.Server):
    """uvicorn's server that `stop()` can wake at once; uvicorn polls its exit flag every 0.1 s,
    which would add up over hundreds of short-lived emulators in a test run. `stopping` is set
    at the same moment, for requests that wait on it."""

    _loop: asyncio.AbstractEventLoop | None = None
    stopping: asyncio.Event

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        await super().serve(sockets)

    async def main_loop(self) -> None:
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 1) % 864_000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 0.1)

    def exit_soon(self) -> None:
        self.should_exit = True
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):  # the loop already closed: nothing to wake
                self._loop.call_soon_threadsafe(self.stopping.set)


class LoopbackServer:
    """An ASGI app served by uvicorn on `host` (loopback by default).

    `url` is what `serve_forever` hands to `on_ready`; subclasses narrow it to their API root.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        thread_name: str = "loopback-server",
    ) -> None:
        self._app = app
        self._host = host
        self._requested_port = port
        self._thread_name = thread_name
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None

    @property
    def serving(self) -> bool:
        """Whether the socket is bound: from `start()` (or `serve_forever`) until it stops."""
        return self._socket is not None

    @property
    def port(self) -> int:
        """The bound port (the free one picked for port 0)."""
        if self._socket is None:
            raise RuntimeError("the emulator is not started")
        return int(self._socket.getsockname()[1])

    @property
    def base_url(self) -> str:
        """`http://<bound address>:<port>`, without a trailing slash."""
        if self._socket is None:
            raise RuntimeError("the emulator is not started")
        host, port = self._socket.getsockname()[:2]
        return f"http://{host}:{port}"

    @property
    def url(self) -> str:
        """`base_url` here; the emulators narrow it to their API root."""
        return self.base_url

    def start(self) -> Self:
        """Serve in a background thread; returns once the server accepts connections."""
        server, sock = self._prepare()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=self._thread_name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self._thread_name} failed to start")
            self._thread.join(0.005)
        return self

    def stop(self) -> None:
        """Stop serving and release the port; requests in `wait_for_stop` are released first."""
        if self._server is not None:
            self._server.exit_soon()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self._server = None
        self._close_socket()

    def serve_forever(self, on_ready: Callable[[str], object] | None = None) -> None:
        """Serve in the calling thread until SIGINT/SIGTERM (the standalone mode).

        `on_ready` gets `url` once the port is bound (connections already queue there).
        """
        server, sock = self._prepare()
        if on_ready is not None:
            on_ready(self.url)
        try:
            server.run(sockets=[sock])
        finally:
            self._server = None
            self._close_socket()

    async def wait_for_stop(self, seconds: float) -> bool:
        """From a request: wait up to `seconds`; True if `stop()` came meanwhile."""
        assert self._server is not None
        try:
            await asyncio.wait_for(self._server.stopping.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.stop)

    def _prepare(self) -> tuple[_Server, socket.socket]:
        if self._server is not None:
            raise RuntimeError("the emulator is already running")
        # Bound here, not by uvicorn, so the port is known before serving (no race), and
        # listening at once lets clients connect (and queue) before uvicorn takes over. The
        # explicit IPPROTO_TCP matters: asyncio only sets TCP_NODELAY on sockets whose proto
        # says TCP, and without it every answer waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self._host, self._requested_port))
            sock.listen(128)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=2,
        )
        self._server = _Server(config)
        return self._server, sock

    def _close_socket(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
