"""The floor under durable webhook ingest: the least a Python server on deploybot's uvicorn
does to answer 202 only for a delivery that is on disk.

No framework, no ORM, no worker: an ASGI app that reads the body, checks its HMAC, checks
it is a JSON object with pydantic's parser (as deploybot's route does), and hands the row to
one writer thread that inserts what has queued up with the standard library's sqlite3 (WAL,
`synchronous=FULL`, one commit per batch: group commit) and wakes the event loop once per
batch, then answers. What deploybot adds on top of this (FastAPI, SQLAlchemy, aiosqlite, its
inbox worker, logs, metrics) is what the ratio to this baseline measures.

    BENCH_SECRET=... BENCH_DATABASE=/tmp/x.db python -m uvicorn bench.durable_asgi:app
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import queue
import sqlite3
import threading
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

SECRET = os.environ["BENCH_SECRET"].encode()
DATABASE = os.environ["BENCH_DATABASE"]

_rows: queue.SimpleQueue[tuple[str, str, asyncio.Future[None]]] = queue.SimpleQueue()


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore")
    action: Any = None


def _settle(stored: list[asyncio.Future[None]]) -> None:
    for future in stored:
        if not future.done():  # a request whose client went away was cancelled
            future.set_result(None)


def _writer() -> None:
    connection = sqlite3.connect(DATABASE, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute(
        "CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, delivery_id TEXT UNIQUE,"
        " body TEXT NOT NULL)"
    )
    while True:
        batch = [_rows.get()]
        while not _rows.empty() and len(batch) < 500:
            batch.append(_rows.get_nowait())
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(
            "INSERT OR IGNORE INTO inbox (delivery_id, body) VALUES (?, ?)",
            [(delivery, body) for delivery, body, _ in batch],
        )
        connection.execute("COMMIT")
        # One wake-up of each event loop per batch: a wake-up per row is a syscall each.
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, _, future in batch:
            by_loop.setdefault(future.get_loop(), []).append(future)
        for loop, stored in by_loop.items():
            loop.call_soon_threadsafe(_settle, stored)


threading.Thread(target=_writer, name="durable-writer", daemon=True).start()


async def _answer(send: Any, status: int) -> None:
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b""})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"".join(chunks)
    headers = dict(scope["headers"])
    expected = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), headers.get(b"x-hub-signature-256", b"")):
        await _answer(send, 401)
        return
    try:
        text = body.decode()
        _Envelope.model_validate_json(body)
    except (UnicodeDecodeError, ValidationError):
        await _answer(send, 400)
        return
    stored = asyncio.get_running_loop().create_future()
    _rows.put((headers.get(b"x-github-delivery", b"").decode(), text, stored))
    await stored
    await _answer(send, 202)
