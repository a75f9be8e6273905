"""The status board of a release, drawn from what the database holds (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.pipeline.config import Pipeline, PipelineError, parse_pipeline
from bot.pipeline.models import Kind, Rollout, Status
from bot.pipeline.policy import needs_confirmation
from bot.slack.blocks import Board, Button, EnvironmentLine
from storage.models import Release as ReleaseRow


def confirms(pipeline: Pipeline | None, name: str) -> bool:
    """Whether the buttons of environment `name` ask for a confirmation first (production)."""
    return pipeline is not None and needs_confirmation(pipeline, name)


def board_for(release: ReleaseRow, rollouts: Sequence[Rollout]) -> Board:
    """One line per environment (pipeline order, then any others that have rollouts): the
    newest rollout there, and the buttons that apply to it."""
    pipeline = _pipeline(release.pipeline)
    names = [env.name for env in pipeline.environments] if pipeline is not None else []
    names += [r.environment for r in rollouts if r.environment not in names]
    # This release's own deploy decides a line; a rollback it caused shows as its detail.
    latest: dict[str, Rollout] = {}
    rollback_of: dict[int, Rollout] = {}
    for rollout in rollouts:  # ids grow: later ones are newer
        if rollout.kind is Kind.DEPLOY:
            latest[rollout.environment] = rollout
        elif rollout.replaces is not None:
            rollback_of[rollout.replaces] = rollout
    lines = []
    for index, name in enumerate(names):
        rollout = latest.get(name)
        next_env = names[index + 1] if index + 1 < len(names) else None
        back = rollback_of.get(rollout.id) if rollout is not None else None
        lines.append(_line(release, pipeline, name, rollout, next_env, back))
    return Board(
        repository=release.repository,
        pr_number=release.pr_number,
        title=release.title,
        author=release.author,
        head_sha=release.commit_sha,
        head_ref=release.head_ref or "",
        pr_url=release.pr_url,
        pr_state=release.pr_state if release.pr_state in {"open", "closed", "merged"} else "open",
        environments=tuple(lines),
    )


def _pipeline(pipeline_text: str) -> Pipeline | None:
    try:
        return parse_pipeline(pipeline_text)
    except PipelineError:
        return None  # the thread says what is wrong with the file; the board shows what ran


def _line(
    release: ReleaseRow,
    pipeline: Pipeline | None,
    name: str,
    rollout: Rollout | None,
    next_env: str | None,
    rollback: Rollout | None,
) -> EnvironmentLine:
    if rollout is None:
        return EnvironmentLine(name=name)
    buttons: list[Button] = []
    confirm = confirms(pipeline, name)
    if (
        rollout.status is Status.SUCCESS
        and rollout.kind is Kind.DEPLOY
        and next_env is not None
        and rollout.commit_sha == release.commit_sha
    ):
        buttons.append(
            Button(
                "promote",
                f"promote:{release.id}:{next_env}",
                confirm=confirms(pipeline, next_env),
                target=next_env,
            )
        )
    buttons += _steering(rollout, name)
    if rollout.status in {Status.SUCCESS, Status.FAILURE, Status.VERIFYING}:
        # No confirm dialog: the button opens a modal to choose the commit, which is one.
        buttons.append(Button("rollback", f"rollback:{release.id}:{name}"))
    return EnvironmentLine(
        name=name,
        status=rollout.status.value,
        commit_sha=rollout.commit_sha,
        requested_by=rollout.requested_by.label,
        updated_at=rollout.created_at,
        detail=_detail(rollout, rollback),
        weight=rollout.weight if rollout.status.active else None,
        buttons=tuple(buttons)
        if not confirm
        else tuple(Button(b.action, b.value, confirm=True, target=b.target) for b in buttons),
    )


def _steering(rollout: Rollout, name: str) -> list[Button]:
    """Resume for a paused rollout; Pause for a running canary, and Promote when it holds
    at a manual step."""
    if rollout.kind is not Kind.DEPLOY or not rollout.status.active:
        return []
    if rollout.paused_at is not None:
        return [Button("resume", f"rollout:{rollout.id}")]
    if rollout.step is None or rollout.status is Status.AWAITING_APPROVAL:
        return []
    buttons = [Button("pause", f"rollout:{rollout.id}")]
    if rollout.held_at is not None:
        buttons.insert(
            0, Button("promote", f"step:{rollout.id}", target=name, label="Promote canary")
        )
    return buttons


def _detail(rollout: Rollout, rollback: Rollout | None) -> str | None:
    if rollback is None:
        return rollout.note
    state = "done" if rollback.status is Status.SUCCESS else rollback.status.value
    why = f"{rollout.note}; " if rollout.note else ""
    return f"{why}rollback to {rollback.commit_sha[:7]}: {state}"
