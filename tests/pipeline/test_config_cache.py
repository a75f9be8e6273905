"""`parse_pipeline` remembers the files it parsed: one cache for every caller."""

from __future__ import annotations

import pytest

from bot import conductor
from bot.github.context import parsed
from bot.pipeline import config
from bot.pipeline.config import PipelineError, parse_pipeline
from storage.models import Release

TEXT = "environments: [{name: stage, health: {url: 'https://stage.example.com/healthz'}}]\n"
BROKEN = "environments: [{name: stage, approvals: -1}]\n"


def test_a_file_parsed_again_is_the_same_frozen_pipeline() -> None:
    first = parse_pipeline(TEXT)
    # An equal text read again from the database is another string object.
    again = parse_pipeline("".join([TEXT[:10], TEXT[10:]]))
    assert again is first
    with pytest.raises(ValueError, match="frozen"):
        first.environments = ()  # type: ignore[misc]


def test_every_caller_shares_the_one_cache() -> None:
    first = parse_pipeline(TEXT + "# shared\n")
    release = Release(
        id=1,
        repository="o/r",
        commit_sha="a" * 40,
        pipeline=TEXT + "# shared\n",
    )
    assert conductor.pipeline_of(release) is first
    assert parsed(TEXT + "# shared\n") is first


def test_a_broken_file_raises_a_new_error_each_time() -> None:
    errors = []
    for _ in range(2):
        with pytest.raises(PipelineError) as caught:
            parse_pipeline(BROKEN)
        errors.append(caught.value)
    assert errors[0] is not errors[1]
    assert errors[0].problems == errors[1].problems
    assert "approvals" in str(errors[1])
    # Each one is raised afresh: no traceback piles up on a shared exception.
    assert errors[1].__traceback__ is not None
    assert len(_frames(errors[1].__traceback__)) == len(_frames(errors[0].__traceback__))
    found = parsed(BROKEN)
    assert isinstance(found, PipelineError) and found.problems == errors[0].problems


def test_large_files_are_parsed_but_not_remembered() -> None:
    padding = "#" + "x" * config.MAX_REMEMBERED_CHARS + "\n"
    text = TEXT + padding
    before = config._remembered.cache_info().currsize
    assert parse_pipeline(text) == parse_pipeline(TEXT)
    assert parse_pipeline(text) is not parse_pipeline(text)
    assert config._remembered.cache_info().currsize == before
    too_large = "#" * (config.MAX_FILE_CHARS + 1)
    with pytest.raises(PipelineError, match="larger than 256 KiB"):
        parse_pipeline(too_large)


def test_the_cache_is_bounded() -> None:
    assert config._remembered.cache_info().maxsize == config.PARSED_FILES


def _frames(traceback: object) -> list[object]:
    frames = []
    while traceback is not None:
        frames.append(traceback)
        traceback = traceback.tb_next  # type: ignore[attr-defined]
    return frames
