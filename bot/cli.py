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
        except ValueError:
            typer.echo(
                f"deploybot audit: --since {since!r} is not an ISO 8601 date or time", err=True
            )
            raise typer.Exit(2) from None
        start = start if start.tzinfo else start.replace(tzinfo=UTC)

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


def main() -> None:
    cli()
