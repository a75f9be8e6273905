"""Who a Slack user is on GitHub, for deploys started from Slack.

The pipeline file's `users:` map comes first: it is trusted (it lives on the default
branch) and it speaks for this repository. Otherwise a link the GitHub user confirmed
(`/deploy link`, `storage.identities`). Otherwise the person has no GitHub login, and
whatever needs one (permission on the repository, approving as a GitHub user) refuses.
A pending link never counts: that would be the Slack user's word alone.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from bot.pipeline.config import Pipeline
from bot.pipeline.models import Person
from bot.pipeline.policy import identify
from storage import identities


def slack_person(pipeline: Pipeline, *, slack_user: str, linked_login: str | None) -> Person:
    """The rule (pure): the `users:` map, else the confirmed link, else no GitHub login.

    A linked login that `users:` gives to another Slack user is not used: the repository's
    own file says who that login is."""
    mapped = identify(pipeline, slack=slack_user)
    if mapped.github:
        return mapped
    if linked_login and pipeline.slack_user_for(linked_login) in (None, slack_user):
        return Person(github=linked_login, slack=slack_user)
    return Person(slack=slack_user)


async def person_for_slack(session: AsyncSession, *, pipeline: Pipeline, slack_user: str) -> Person:
    """The person behind a Slack click or command, with their GitHub login when trusted."""
    linked = await identities.linked_login(session, slack_user=slack_user)
    return slack_person(pipeline, slack_user=slack_user, linked_login=linked)
