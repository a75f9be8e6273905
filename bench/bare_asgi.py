"""The floor under webhook ingest: an ASGI app with no framework that reads the body and
answers 202, served by the same uvicorn as deploybot (`python -m uvicorn bench.bare_asgi:app`)."""

from __future__ import annotations

from typing import Any


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 202, "headers": []})
    await send({"type": "http.response.body", "body": b""})
