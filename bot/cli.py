"""The `deploybot` command line (also `python -m bot`)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Annotated, Any

import typer

from bot.settings import DatabaseSettings, Settings, SettingsError, load_settings

cli = typer.Typer(
    name="deploybot",
    help="ChatOps deploy conductor: a Slack app and a GitHub App in one service.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _settings(kind: type[DatabaseSettings] = Settings) -> Any:
    try:
        return load_settings(kind=kind)
    except SettingsError as exc:
        typer.echo(f"deploybot: configuration error: {exc}", err=True)
        raise typer.Exit(2) from None


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address [DEPLOYBOT_HOST, 0.0.0.0]")] = None,
    port: Annotated[int | None, typer.Option(help="Port [DEPLOYBOT_PORT, 8080]")] = None,
) -> None:
    """Run the service: migrate the database, then serve HTTP (and Socket Mode if configured)."""
    import uvicorn

    from bot.app import create_app
    from bot.logs import configure_logging

    settings = _settings()
    configure_logging(secrets=settings.secret_values(), fmt=settings.deploybot_log_format)
    uvicorn.run(
        create_app(settings),
        host=host or settings.deploybot_host,
        port=settings.deploybot_port if port is None else port,
        log_config=None,
        proxy_headers=True,
        timeout_graceful_shutdown=20,
    )


@cli.command()
def migrate() -> None:
    """Upgrade the database schema to the newest version."""
    from sqlalchemy.engine import make_url

    from storage import db

    settings = _settings(DatabaseSettings)

    async def run() -> None:
        engine = db.create_engine(settings.database_url)
        try:
            await db.migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())
    safe_url = make_url(settings.database_url).render_as_string(hide_password=True)
    typer.echo(f"database at head: {safe_url}")


@cli.command("check-config")
def check_config(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="A pipeline file, e.g. .github/deploybot.yml")
    ],
) -> None:
    """Validate a pipeline file: `FILE: ok` and a summary (exit 0), or each problem (exit 1)."""
    from pathlib import Path

    from bot.pipeline.config import PipelineError, parse_pipeline

    try:
        text = Path(file).read_text(encoding="utf-8")
    except FileNotFoundError:
        typer.echo(f"{file}: no such file", err=True)
        raise typer.Exit(2) from None
    except UnicodeDecodeError:
        typer.echo(f"{file}: not UTF-8 text")
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"{file}: cannot read: {exc.strerror or exc}", err=True)
        raise typer.Exit(2) from None
    try:
        pipeline = parse_pipeline(text)
    except PipelineError as exc:
        for problem in exc.problems:
            where = file if problem.line is None else f"{file}:{problem.line}"
            field = f" {problem.field}:" if problem.field else ""
            typer.echo(f"{where}:{field} {problem.message}")
        raise typer.Exit(1) from None
    typer.echo(f"{file}: ok")
    typer.echo(pipeline.summary())


@cli.command()
def demo(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show the app's own log lines too")
    ] = False,
) -> None:
    """The whole release story offline: SQLite and built-in GitHub and Slack emulators."""
    from bot.demo import main as run_demo

    raise typer.Exit(run_demo(verbose=verbose))


@cli.command("audit")
def audit_log(
    since: Annotated[
        str | None,
        typer.Option(help="ISO 8601 date or time (UTC unless it says); default: everything"),
    ] = None,
    repository: Annotated[str | None, typer.Option(help="Only this owner/repo")] = None,
) -> None:
    """Print the audit log as JSON lines, oldest first (who, what, when, source, commit)."""
    from datetime import UTC, datetime

    from storage import audit, db

    settings = _settings(DatabaseSettings)
    start = None
    if since is not None:
        try:
            start = datetime.fromisoformat(since)
            start = start if start.tzinfo else start.replace(tzinfo=UTC)
            start = start.astimezone(UTC)
        except (ValueError, OverflowError):
            typer.echo(
                f"deploybot audit: --since {since!r} is not an ISO 8601 date or time", err=True
            )
            raise typer.Exit(2) from None

    async def run() -> None:
        engine = db.create_engine(settings.database_url)
        try:
            await db.migrate(engine)
            async with db.session_factory(engine)() as session:
                after = None
                while True:
                    found = await audit.entries(
                        session, since=start, repository=repository, after=after, limit=1000
                    )
                    for entry in found:
                        sys.stdout.write(json.dumps(audit.as_json(entry)) + "\n")
                    if len(found) < 1000:
                        return
                    after = found[-1].id
        finally:
            await engine.dispose()

    asyncio.run(run())


@cli.command()
def reconcile(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be redelivered; ask for nothing")
    ] = False,
) -> None:
    """Redeliver the App's webhook deliveries of the past 3 days that failed and that deploybot
    never stored: one pass of what `serve` does every 10 minutes. Prints each delivery asked
    for (or, with --dry-run, that would be) and a summary; exit 1 when GitHub refused a call."""
    import logging

    from bot.logs import configure_logging
    from bot.reconciler import WINDOW, Reconciler
    from bot.worker import worker_id
    from integrations.github_app import GitHubApp
    from storage import db

    settings = _settings()
    # Errors only, redacted, on stderr: the report below says what happened.
    configure_logging(
        secrets=settings.secret_values(), fmt=settings.deploybot_log_format, level=logging.ERROR
    )

    async def run() -> Any:
        engine = db.create_engine(settings.database_url)
        try:
            await db.migrate(engine)
            github = GitHubApp(
                app_id=settings.github_app_id,
                private_key=settings.private_key_pem(),
                base_url=settings.github_api_url,
            )
            sessions = db.session_factory(engine)
            reconciler = Reconciler(sessions=sessions, github=github, owner=worker_id())
            return await reconciler.run_once(dry_run=dry_run)
        finally:
            await engine.dispose()

    report = asyncio.run(run())
    verb = "would redeliver" if dry_run else "redelivered"
    for attempt in report.redelivered:
        kind = f"{attempt.event}.{attempt.action}" if attempt.action else attempt.event
        failure = attempt.status or f"status {attempt.status_code}"
        when = attempt.delivered_at.isoformat()
        typer.echo("\t".join([verb, str(attempt.id), attempt.guid, kind, failure, when]))
    for error in report.errors:
        typer.echo(f"deploybot reconcile: {error}", err=True)
    typer.echo(
        f"{report.listed} delivery attempts in the past {WINDOW.days} days; "
        f"{report.failed} deliveries failed: {report.stored} stored anyway, "
        f"{report.asked_before} asked for before, {len(report.redelivered)} {verb}"
    )
    if report.errors:
        raise typer.Exit(1)


@cli.command()
def manifest(
    kind: Annotated[str, typer.Argument(help="slack or github")],
    url: Annotated[
        str, typer.Option(help="Public base URL of this deploybot")
    ] = "https://deploybot.example.com",
) -> None:
    """Print the Slack app manifest or the GitHub App manifest (JSON)."""
    from bot import manifest as manifests

    builders = {"slack": manifests.slack_manifest, "github": manifests.github_manifest}
    if kind not in builders:
        typer.echo("deploybot manifest: choose `slack` or `github`", err=True)
        raise typer.Exit(2)
    json.dump(builders[kind](url.rstrip("/")), sys.stdout, indent=2)
    sys.stdout.write("\n")


# --- dead letters: `deploybot inbox ...` and `deploybot outbox ...` ---------------------

inbox_cli = typer.Typer(
    help="The inbox: verified GitHub deliveries, stored before they are handled.",
    no_args_is_help=True,
)
outbox_cli = typer.Typer(
    help="The outbox: Slack messages and GitHub calls waiting to be sent.",
    no_args_is_help=True,
)
cli.add_typer(inbox_cli, name="inbox")
cli.add_typer(outbox_cli, name="outbox")

# Dead letters that must stay dead, by queue and kind, with the reason said to the operator.
# A deployment given up on has already failed its rollout (`OutboxDispatcher.on_dead`), and
# the environment may have moved on: sending it now would deploy a commit nobody asked for.
_NOT_RETRIED = {
    "outbox": {
        "CreateDeployment": "its rollout was failed when the deployment was given up on; "
        "deploy again with /deploy instead",
    },
}
_ERROR_WIDTH = 200


def _queue(name: str) -> Any:
    from storage import inbox, outbox

    return {"inbox": inbox.QUEUE, "outbox": outbox.QUEUE}[name]


def _dead_letter(name: str, row: Any) -> dict[str, Any]:
    """What is shown of a dead letter: identifiers and the error, never the payload."""
    if name == "inbox":
        kind = f"{row.event}.{row.action}" if row.action else row.event
        key, dead_at, extra = row.delivery_id, row.processed_at, {"source": row.source}
    else:
        kind, key, dead_at, extra = row.kind, row.idempotency_key, row.sent_at, {}
    return {
        "queue": name,
        "id": row.id,
        "kind": kind,
        "key": key,
        **extra,
        "attempts": row.attempts,
        "dead_at": dead_at.isoformat() if dead_at else None,
        "error": row.last_error,
    }


def _one_line(text: str | None) -> str:
    line = " ".join((text or "-").split())
    return line if len(line) <= _ERROR_WIDTH else line[: _ERROR_WIDTH - 1] + "…"


def _in_database(work: Any) -> Any:
    """Run `work(session)` in one transaction on DATABASE_URL (migrated first, as `audit`)."""
    from storage import db

    settings = _settings(DatabaseSettings)

    async def run() -> Any:
        engine = db.create_engine(settings.database_url)
        try:
            await db.migrate(engine)
            async with db.session_factory(engine).begin() as session:
                return await work(session)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _add_dead_letter_commands(app: typer.Typer, name: str, things: str) -> None:
    @app.command(
        "dead",
        help=f"List the {name}'s dead letters, newest first: {things} given up on after their "
        "last attempt. One per line: id, kind, key, attempts, when, the last error.",
    )
    def dead(
        as_json: Annotated[
            bool, typer.Option("--json", help="JSON lines, the whole error in each")
        ] = False,
        limit: Annotated[int, typer.Option(min=1, help="Show at most this many")] = 100,
    ) -> None:
        queue = _queue(name)

        async def read(session: Any) -> tuple[list[Any], int]:
            return await queue.dead_letters(session, limit=limit), await queue.dead_count(session)

        rows, total = _in_database(read)
        for row in rows:
            shown = _dead_letter(name, row)
            if as_json:
                sys.stdout.write(json.dumps(shown) + "\n")
                continue
            fields = [shown["id"], shown["kind"], shown["key"], f"attempts={row.attempts}"]
            fields += [shown["dead_at"] or "-", _one_line(row.last_error)]
            typer.echo("\t".join(str(field) for field in fields))
        if not rows and not as_json:
            typer.echo(f"{name}: no dead letters")
        if total > len(rows):
            typer.echo(f"{name}: {total - len(rows)} more not shown (--limit)", err=True)

    @app.command(
        "retry",
        help=f"Put dead letters of the {name} back in line, with a fresh attempt count; a "
        "running `deploybot serve` picks them up within a second. Exit 0 when every one "
        "was retried, 1 when some were not (each is named, with why).",
    )
    def retry(
        ids: Annotated[
            list[int] | None, typer.Argument(metavar="ID...", help="Dead letters, by id")
        ] = None,
        every: Annotated[
            bool, typer.Option("--all", help="Every dead letter of the queue")
        ] = False,
    ) -> None:
        from storage.models import utcnow
        from storage.queue import DEAD

        if bool(ids) == every:
            typer.echo(f"deploybot {name} retry: give dead-letter ids or --all", err=True)
            raise typer.Exit(2)
        queue = _queue(name)
        refused_kinds = _NOT_RETRIED.get(name, {})

        async def retry_named(session: Any) -> tuple[list[Any], list[str]]:
            retried, problems = [], []
            for item_id in dict.fromkeys(ids or []):
                row = await session.get(queue.table, item_id)
                if row is None:
                    problems.append(f"{item_id}: no such {name} item")
                elif row.status != DEAD:
                    problems.append(f"{item_id}: {row.status}, not a dead letter")
                elif getattr(row, "kind", None) in refused_kinds:
                    problems.append(f"{item_id}: not retried: {refused_kinds[row.kind]}")
                elif await queue.retry_dead(session, item_id=item_id, now=utcnow()):
                    retried.append(row)
                else:  # retried or changed by someone else since we read it
                    problems.append(f"{item_id}: no longer a dead letter")
            return retried, problems

        async def retry_every(session: Any) -> tuple[list[Any], list[str]]:
            unless = queue.table.kind.in_(list(refused_kinds)) if refused_kinds else None
            retried = await queue.retry_all_dead(session, now=utcnow(), unless=unless)
            left = await queue.dead_letters(session, limit=1000) if refused_kinds else []
            # Kinds that are never retried stay dead by design: said, not a failure.
            problems = [
                f"{row.id}: left dead: {refused_kinds.get(row.kind, 'not retried')}"
                for row in left
                if row.kind in refused_kinds
            ]
            return retried, problems

        retried, problems = _in_database(retry_every if every else retry_named)
        for row in retried:
            shown = _dead_letter(name, row)
            typer.echo(f"retried {shown['id']}\t{shown['kind']}\t{shown['key']}")
        for problem in problems:
            typer.echo(f"deploybot {name} retry: {problem}", err=True)
        if every and not retried and not problems:
            typer.echo(f"{name}: no dead letters")
        if problems and not every:
            raise typer.Exit(1)


_add_dead_letter_commands(inbox_cli, "inbox", "deliveries")
_add_dead_letter_commands(outbox_cli, "outbox", "effects")


def main() -> None:
    cli()
