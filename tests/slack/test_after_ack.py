"""`AfterAck`: the work listeners do after their ack, in order, a few pieces at a time."""

from __future__ import annotations

import asyncio

import structlog

from bot.slack.listeners import AfterAck


async def test_pieces_run_in_the_order_they_came_at_most_limit_at_a_time() -> None:
    after_ack = AfterAck(limit=3)
    running, most, order = 0, 0, []

    async def piece(n: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        order.append(n)
        await asyncio.sleep(0.01)
        running -= 1

    for n in range(20):
        after_ack.start(lambda n=n: piece(n), name="piece")
    await after_ack.wait()
    assert order == list(range(20))
    assert most == 3


async def test_a_piece_waiting_its_turn_is_not_made_yet() -> None:
    """A backlog holds calls, not coroutines with everything they refer to."""
    after_ack = AfterAck(limit=1)
    made: list[int] = []
    release = asyncio.Event()

    async def first() -> None:
        await release.wait()

    def later(n: int):
        made.append(n)
        return asyncio.sleep(0)

    after_ack.start(first, name="first")
    for n in range(5):
        after_ack.start(lambda n=n: later(n), name="later")
    await asyncio.sleep(0.01)
    assert made == [] and after_ack.pending == 5
    release.set()
    await after_ack.wait()
    assert made == [0, 1, 2, 3, 4] and after_ack.pending == 0


async def test_a_piece_that_fails_is_logged_and_the_rest_go_on() -> None:
    after_ack = AfterAck(limit=1)
    done: list[str] = []

    async def fails() -> None:
        raise RuntimeError("boom")

    async def works() -> None:
        done.append("works")

    with structlog.testing.capture_logs() as logs:
        after_ack.start(fails, name="button")
        after_ack.start(works, name="button")
        await after_ack.wait()
    assert done == ["works"]
    (failure,) = [entry for entry in logs if entry["log_level"] == "error"]
    assert failure["listener"] == "button" and "failed" in failure["event"]


async def test_work_started_by_work_is_waited_for_too() -> None:
    after_ack = AfterAck(limit=2)
    done: list[str] = []

    async def inner() -> None:
        await asyncio.sleep(0.01)
        done.append("inner")

    async def outer() -> None:
        after_ack.start(inner, name="inner")

    after_ack.start(outer, name="outer")
    await after_ack.wait()
    assert done == ["inner"]


async def test_close_waits_for_the_work_and_what_it_starts() -> None:
    after_ack = AfterAck(limit=2, grace=5)
    done: list[str] = []

    async def inner() -> None:
        await asyncio.sleep(0.05)
        done.append("inner")

    async def outer() -> None:
        await asyncio.sleep(0.05)
        after_ack.start(inner, name="inner")

    after_ack.start(outer, name="outer")
    with structlog.testing.capture_logs() as logs:
        await after_ack.close()
    assert done == ["inner"] and logs == []


async def test_close_past_the_grace_cancels_drops_and_says_which() -> None:
    after_ack = AfterAck(limit=1, grace=0.05)
    made: list[str] = []

    async def stuck() -> None:
        made.append("stuck")
        await asyncio.sleep(60)

    async def later() -> None:
        made.append("later")

    after_ack.start(stuck, name="button")
    after_ack.start(later, name="/deploy")
    after_ack.start(later, name="button")
    with structlog.testing.capture_logs() as logs:
        await asyncio.wait_for(after_ack.close(), timeout=5)
    assert made == ["stuck"] and after_ack.pending == 0
    (dropped,) = logs
    assert dropped["log_level"] == "warning"
    assert dropped["cancelled"] == 1 and dropped["never_started"] == 2
    assert dropped["listeners"] == {"button": 2, "/deploy": 1}
