"""`create_app(settings)`: the single composition root of the service."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from slack_bolt.async_app import AsyncApp
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.api import api_router
from bot.dispatcher import OutboxDispatcher
from bot.github.context import Context
from bot.github.events import GitHubEvents
from bot.github.webhook import webhook_router
from bot.metrics import Metrics, RequestMetricsMiddleware
from bot.reconciler import Reconciler
from bot.scheduler import Scheduler
from bot.settings import Settings
from bot.slack.ingress import slack_router
from bot.slack.listeners import build_slack_app, web_client
from bot.worker import InboxWorker, worker_id
from integrations.github_app import GitHubApp
from integrations.health import HealthProbe
from integrations.oidc import OIDCVerifier
from storage import db, inbox, outbox

log = structlog.get_logger(__name__)

ROUTES = frozenset(
    {
        "/github/webhook",
        "/slack/events",
        "/healthz",
        "/readyz",
        "/metrics",
        "/api/v1/deploy/status",
        "/api/v1/deployments",
        "/api/v1/rollback",
        "/api/v1/audit",
    }
)


@dataclass
class Services:
    """What the running app is made of; tests reach the parts through `app.state.services`."""

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    metrics: Metrics
    worker: InboxWorker
    dispatcher: OutboxDispatcher
    scheduler: Scheduler
    slack: AsyncApp
    github: GitHubApp
    reconciler: Reconciler


def create_app(
    settings: Settings, *, engine: AsyncEngine | None = None, oidc: OIDCVerifier | None = None
) -> FastAPI:
    """Build the ASGI app; the database is migrated and the workers started in its lifespan.
    `oidc` replaces the REST API's OIDC verifier built from the settings."""
    engine = engine or db.create_engine(settings.database_url)
    sessions = db.session_factory(engine)
    metrics = Metrics()
    owner = worker_id()
    lease = timedelta(seconds=settings.deploybot_lease_seconds)
    github = GitHubApp(
        app_id=settings.github_app_id,
        private_key=settings.private_key_pem(),
        base_url=settings.github_api_url,
    )
    slack_client = web_client(settings)
    dispatcher = OutboxDispatcher(
        github=github,
        # Its posts are retried by the outbox, which looks for them in Slack first; a
        # client that resends a post after a dropped connection would skip that look.
        slack=web_client(settings, retry_connections=False),
        sessions=sessions,
        metrics=metrics,
        owner=owner,
        lease=lease,
    )
    context = Context(github=github, config_path=settings.deploybot_config_path)
    worker = InboxWorker(
        sessions=sessions,
        handle=GitHubEvents(context),
        on_handled=dispatcher.wake,
        metrics=metrics,
        owner=owner,
        lease=lease,
    )
    probe = HealthProbe()
    scheduler = Scheduler(
        sessions=sessions,
        probe=probe,
        github=github,
        owner=owner,
        tick_seconds=settings.deploybot_tick_seconds,
        on_change=dispatcher.wake,
        lease=lease,
    )
    slack = build_slack_app(
        settings, slack_client, sessions=sessions, github=github, on_change=dispatcher.wake
    )
    reconciler = Reconciler(sessions=sessions, github=github, owner=owner, metrics=metrics)
    services = Services(
        settings,
        engine,
        sessions,
        metrics,
        worker,
        dispatcher,
        scheduler,
        slack,
        github,
        reconciler,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await db.migrate(engine)
        # Connected first: a refused SLACK_APP_TOKEN stops start-up before anything runs.
        socket_mode = await _start_socket_mode(settings, slack)
        tasks = [
            asyncio.create_task(worker.run(), name="inbox-worker"),
            asyncio.create_task(dispatcher.run(), name="outbox-dispatcher"),
        ]
        checkpoints = asyncio.create_task(db.checkpoints(engine), name="sqlite-checkpoints")
        scheduler.start()
        reconciler.start()
        settle_garbage_collection()
        log.info("deploybot started", worker=owner, socket_mode=socket_mode is not None)
        try:
            yield
        finally:
            if socket_mode is not None:
                await socket_mode.close_async()
            await slack.after_ack.close()  # acked Slack work, before what it uses stops
            await scheduler.stop()
            await reconciler.stop()
            worker.stop()
            dispatcher.stop()
            await asyncio.gather(*tasks)
            checkpoints.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checkpoints
            await probe.aclose()
            await engine.dispose()
            log.info("deploybot stopped")

    app = FastAPI(
        title="deploybot",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url="/api/v1/openapi.json",
        # Metrics are Prometheus (/metrics); FastAPI's OpenTelemetry hooks would only look
        # up their configuration on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.services = services
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics, routes=ROUTES)
    app.include_router(
        webhook_router(
            secret=settings.github_webhook_secret, sessions=sessions, on_stored=worker.wake
        )
    )
    app.include_router(slack_router(slack=slack, signing_secret=settings.slack_signing_secret))
    app.include_router(
        api_router(
            settings=settings,
            engine=engine,
            sessions=sessions,
            on_change=dispatcher.wake,
            oidc=oidc,
        )
    )
    _add_probes(app, services)
    return app


# The youngest generation is collected every this many new objects (Python's default: 700).
# A tick keeps 100 probes in flight, ~7,700 objects that each collection scanned anew, every
# ~1 ms; a burst of webhooks does the same with its requests in flight.
GC_YOUNGEST_THRESHOLD = 7_000


def settle_garbage_collection() -> None:
    """Once started: what start-up built (app, models, schemas, parsed specs) lives as long
    as the process, so it is frozen out of every later collection; and the youngest
    generation is collected less often (`GC_YOUNGEST_THRESHOLD`)."""
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNGEST_THRESHOLD, middle, oldest)


def _add_probes(app: FastAPI, services: Services) -> None:
    readers = db.read_sessions(services.engine)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        try:
            await asyncio.wait_for(db.ping(services.engine), timeout=3)
        except Exception as exc:
            return JSONResponse(
                {"status": "unavailable", "database": type(exc).__name__}, status_code=503
            )
        return JSONResponse({"status": "ok"})

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        try:
            async with readers() as session:
                services.metrics.inbox_depth.set(await inbox.depth(session))
                services.metrics.outbox_depth.set(await outbox.depth(session))
                for name, queue in (("inbox", inbox.QUEUE), ("outbox", outbox.QUEUE)):
                    dead = await queue.dead_count(session)
                    services.metrics.queue_dead_letters.labels(name).set(dead)
        except Exception as exc:
            # Serve the counters anyway; the gauges keep their last known value.
            log.warning("metrics: queue depth unavailable", error=type(exc).__name__)
        return Response(services.metrics.render(), media_type=services.metrics.content_type)


async def _start_socket_mode(settings: Settings, slack: AsyncApp) -> Any:
    """Connect to Slack over Socket Mode when `SLACK_APP_TOKEN` is set.

    The handler's Socket Mode client calls `apps.connections.open` through the Bolt app's
    Web API client, so `SLACK_API_URL` applies to it too. A token Slack refuses stops the
    start-up here: slack-sdk's `connect()` would retry it forever and the service would
    hang unready. An unreachable Slack is still retried, by slack-sdk.
    """
    if settings.slack_app_token is None:
        return None
    from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
    from slack_sdk.errors import SlackApiError

    handler = AsyncSocketModeHandler(slack, settings.slack_app_token.get_secret_value())
    try:
        handler.client.wss_uri = await handler.client.issue_new_wss_url()
    except SlackApiError as exc:
        await handler.close_async()
        error = exc.response.get("error")
        raise RuntimeError(f"Slack refused SLACK_APP_TOKEN for Socket Mode: {error}") from None
    except Exception as exc:  # unreachable: connect_async keeps trying, as slack-sdk does
        log.warning("socket mode: Slack unreachable, retrying", error=type(exc).__name__)
    await handler.connect_async()
    return handler
