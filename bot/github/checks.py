"""A commit's statuses and check runs from GitHub, for the required-checks rule.

Deploy call sites look the checks up before their transaction (nothing waits on GitHub
while holding the database) and hand the verdict to `conductor.deploy`; the rule itself is
`bot.pipeline.checks`. Environments with `checks: ignore` cost no GitHub call.
"""

from __future__ import annotations

from bot.pipeline.checks import CheckRun, Checks, Verdict, verdict
from bot.pipeline.config import Checks as ChecksSetting
from bot.pipeline.config import Pipeline, PipelineError
from integrations.github_app import InstallationClient


async def commit_checks(client: InstallationClient, *, repository: str, sha: str) -> Checks:
    """The latest status of each context and the latest check runs on commit `sha`."""
    owner, name = repository.split("/", 1)
    combined = await client.get_combined_status(owner=owner, repo=name, ref=sha)
    runs = await client.list_check_runs(owner=owner, repo=name, ref=sha)
    return Checks(
        statuses={status.context: status.state for status in combined.statuses},
        check_runs=tuple(CheckRun(run.name, run.status, run.conclusion) for run in runs),
    )


def required(pipeline: Pipeline | PipelineError, environment: str | None) -> bool:
    """Whether a deploy to `environment` needs green checks (`checks: required`, the
    default). An unknown environment or a broken pipeline file is refused anyway, so GitHub
    need not be asked."""
    if not isinstance(pipeline, Pipeline) or not environment:
        return False
    env = pipeline.environment(environment)
    return env is not None and env.checks is ChecksSetting.REQUIRED


async def required_verdict(
    client: InstallationClient,
    *,
    pipeline: Pipeline | PipelineError,
    environment: str | None,
    repository: str,
    sha: str,
) -> Verdict | None:
    """The verdict on `sha`'s checks when `environment` requires them, else None (no gate)."""
    if not required(pipeline, environment):
        return None
    return verdict(await commit_checks(client, repository=repository, sha=sha))
