"""A task many callers join (:class:`Flight`, what every caller of one refresh waits on): each
caller for its own timeout, none of them able to cancel it. asyncio's primitives, one per
event loop (:class:`PerLoop`)."""

from __future__ import annotations

import asyncio

from quart_spotify_auth.tasks import Flight, PerLoop


async def _held(gate: asyncio.Event) -> str:
    await gate.wait()
    return "renewed"


async def test_every_caller_gets_the_result_when_the_task_lands() -> None:
    gate = asyncio.Event()
    flight = Flight(asyncio.ensure_future(_held(gate)), timeout=30)
    joined = [asyncio.ensure_future(flight.join()) for _ in range(1000)]
    await asyncio.sleep(0)  # every caller is waiting
    assert not any(j.done() for j in joined)
    gate.set()
    assert await asyncio.gather(*joined) == [True] * 1000
    assert flight.task.result() == "renewed"
    assert await flight.join()  # one coming after it landed does not wait


async def test_each_caller_waits_its_own_timeout_and_the_task_goes_on() -> None:
    gate = asyncio.Event()
    flight = Flight(asyncio.ensure_future(_held(gate)), timeout=1.0)
    early = asyncio.ensure_future(flight.join())
    await asyncio.sleep(0.5)  # the second caller's timeout ends half a second after the first's
    late = asyncio.ensure_future(flight.join())
    assert await early is False
    assert not late.done() and not flight.task.done()
    gate.set()
    assert await late is True
    assert flight.task.result() == "renewed"


async def test_a_caller_going_away_cancels_neither_the_task_nor_the_others() -> None:
    gate = asyncio.Event()
    flight = Flight(asyncio.ensure_future(_held(gate)), timeout=30)
    gone, staying = (asyncio.ensure_future(flight.join()) for _ in range(2))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.gather(gone, return_exceptions=True)
    assert gone.cancelled() and not flight.task.done()
    gate.set()
    assert await staying is True
    assert flight.task.result() == "renewed"


async def test_a_failed_task_ends_every_wait_and_keeps_its_error() -> None:
    gate = asyncio.Event()

    async def fails() -> str:
        await gate.wait()
        raise LookupError("refused")

    flight = Flight(asyncio.ensure_future(fails()), timeout=30)
    joined = [asyncio.ensure_future(flight.join()) for _ in range(3)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*joined) == [True] * 3
    assert isinstance(flight.task.exception(), LookupError)


def test_each_loop_has_its_own_and_a_closed_loops_is_forgotten() -> None:
    locks = PerLoop(asyncio.Lock)

    async def contended() -> asyncio.Lock:
        lock = locks.get()
        assert locks.get() is lock  # one per loop
        async with lock:  # a waiter binds the lock to this loop
            waiter = asyncio.ensure_future(lock.acquire())
            await asyncio.sleep(0)
        assert await waiter
        lock.release()
        return lock

    first = asyncio.run(contended())
    second = asyncio.run(contended())  # would raise RuntimeError on the first loop's lock
    assert second is not first
    assert repr(locks) == "PerLoop(loops=1)"  # the first loop's, closed, is gone
