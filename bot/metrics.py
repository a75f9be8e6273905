"""Prometheus metrics, one registry per app (no process-global state)."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    """Every metric deploybot exports."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "deploybot_http_requests_total",
            "HTTP requests answered, by route and status code.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "deploybot_http_request_duration_seconds",
            "Time to answer an HTTP request, by route.",
            ["route"],
            registry=self.registry,
        )
        self.inbox_depth = Gauge(
            "deploybot_inbox_depth",
            "Deliveries stored and not yet handled.",
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "deploybot_outbox_depth", "Effects written and not yet sent.", registry=self.registry
        )
        self.inbox_failures = Counter(
            "deploybot_inbox_failures_total",
            "Failed attempts to handle a stored delivery, by event.",
            ["event"],
            registry=self.registry,
        )
        self.dead_letters = Counter(
            "deploybot_dead_letters_total",
            "Deliveries or effects given up on after their last attempt.",
            ["queue"],
            registry=self.registry,
        )
        # Not `deploybot_dead_letters`: the counter above already owns that family name.
        self.queue_dead_letters = Gauge(
            "deploybot_queue_dead_letters",
            "Deliveries or effects dead-lettered and not put back in line, by queue.",
            ["queue"],
            registry=self.registry,
        )
        self.dispatch_failures = Counter(
            "deploybot_dispatch_failures_total",
            "Failed attempts to send an outbox effect, by kind.",
            ["kind"],
            registry=self.registry,
        )
        self.reconciler = Counter(
            "deploybot_reconciler_results_total",
            "What the reconciler did with deliveries GitHub failed to make, by result: "
            "redelivered, stored (the inbox had it), asked_before (asked already, or backing "
            "off); and error: GitHub refused to list deliveries or to redeliver one.",
            ["result"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Counts and times every HTTP request; unknown paths share one label."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics, routes: frozenset[str]) -> None:
        self.app = app
        self.metrics = metrics
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        route = path if path in self.routes else "other"
        started = time.perf_counter()
        status: dict[str, Any] = {"code": 500}

        async def send_and_count(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_count)
        finally:
            self.metrics.requests.labels(scope["method"], route, str(status["code"])).inc()
            self.metrics.request_seconds.labels(route).observe(time.perf_counter() - started)
