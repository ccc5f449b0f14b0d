"""The /recommend batcher: a lone request starts at once whatever came before, a busy slot gathers the next batch,
failures reach only their own requests, and a hung batch makes waiting requests fail within the bound."""
import asyncio
import threading

import pytest

from recplugin.serving.batching import Batcher, Overloaded


class Recorder:
    """A batch handler that remembers each batch and can hold a batch until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()

    def __call__(self, requests: list[int]) -> list:
        self.batches.append(list(requests))
        self.entered.set()
        self.release.wait(10)
        return [ValueError(f"bad {r}") if r < 0 else r * 10 for r in requests]


def test_after_a_burst_a_lone_request_is_handed_over_at_once():
    """The regression of issue 41: after a burst the next request started only when a latency model allowed it."""
    recorder = Recorder()

    async def scenario():
        batcher = Batcher(recorder, max_batch_size=8, max_wait_ms=5000, slots=1)
        recorder.release.clear()
        burst = [asyncio.create_task(batcher(i)) for i in range(40)]
        await asyncio.sleep(0.05)
        recorder.release.set()
        assert await asyncio.gather(*burst) == [i * 10 for i in range(40)]
        started = batcher.batches
        recorder.entered.clear()
        lone = asyncio.create_task(batcher(7))
        await asyncio.sleep(0)  # one turn of the loop: the request is in a batch thread already, no timer involved
        assert batcher.batches == started + 1
        assert await lone == 70
        return batcher

    batcher = asyncio.run(scenario())
    assert recorder.batches[-1] == [7]
    assert batcher.largest_batch == 8  # the burst was batched, capped at max_batch_size
    assert sorted(r for batch in recorder.batches[:-1] for r in batch) == list(range(40))


def test_requests_arriving_while_a_slot_is_busy_form_the_next_batch():
    recorder = Recorder()

    async def scenario():
        batcher = Batcher(recorder, max_batch_size=32, max_wait_ms=5000, slots=1)
        recorder.release.clear()
        first = asyncio.create_task(batcher(1))
        await asyncio.sleep(0.05)
        rest = [asyncio.create_task(batcher(i)) for i in range(2, 7)]
        await asyncio.sleep(0.05)
        recorder.release.set()
        return await asyncio.gather(first, *rest)

    assert asyncio.run(scenario()) == [10, 20, 30, 40, 50, 60]
    assert recorder.batches == [[1], [2, 3, 4, 5, 6]]


def test_two_slots_run_two_batches_at_once():
    recorder = Recorder()

    async def scenario():
        batcher = Batcher(recorder, max_batch_size=32, max_wait_ms=5000, slots=2)
        recorder.release.clear()
        tasks = [asyncio.create_task(batcher(1))]
        await asyncio.sleep(0.05)
        tasks.append(asyncio.create_task(batcher(2)))
        await asyncio.sleep(0.05)
        running = len(recorder.batches)
        recorder.release.set()
        await asyncio.gather(*tasks)
        return running

    assert asyncio.run(scenario()) == 2


def test_a_request_error_reaches_only_that_request_and_a_batch_failure_reaches_all():
    async def scenario():
        batcher = Batcher(Recorder(), max_batch_size=32, max_wait_ms=5000)
        results = await asyncio.gather(batcher(3), batcher(-1), return_exceptions=True)
        assert results[0] == 30 and isinstance(results[1], ValueError) and "bad -1" in str(results[1])

        def broken(requests):
            raise ConnectionError("milvus down")

        failing = Batcher(broken, max_batch_size=32, max_wait_ms=5000)
        failures = await asyncio.gather(failing(1), failing(2), return_exceptions=True)
        assert all(isinstance(f, ConnectionError) for f in failures)

        short = Batcher(lambda requests: [], max_batch_size=32, max_wait_ms=5000)
        with pytest.raises(RuntimeError, match="0 answers to 1 requests"):
            await short(1)

    asyncio.run(scenario())


def test_a_hung_batch_makes_waiting_requests_overloaded_within_the_bound_and_then_recovers():
    recorder = Recorder()

    async def scenario():
        batcher = Batcher(recorder, max_batch_size=32, max_wait_ms=200, slots=1, max_queue=2)
        recorder.release.clear()  # a hang: the running batch does not return
        running = asyncio.create_task(batcher(1))
        await asyncio.sleep(0.05)
        queued = [asyncio.create_task(batcher(i)) for i in (2, 3)]
        await asyncio.sleep(0)
        with pytest.raises(Overloaded, match="already queued"):
            await batcher(4)  # the queue is full: refused at once
        for task in queued:
            with pytest.raises(Overloaded, match="waited 0.2 s"):
                await task
        recorder.release.set()
        assert await running == 10  # the started request keeps waiting for its batch
        assert await batcher(5) == 50  # the refused requests left no trace in the queue

    asyncio.run(scenario())
    assert [2, 3] not in recorder.batches and recorder.batches[-1] == [5]


def test_a_coroutine_handler_runs_on_the_loop_and_batches_the_same_way():
    """The service's handler is a coroutine (it awaits the batch process's pipe): no thread, same batching."""
    batches, release = [], asyncio.Event()

    async def handle(requests: list[int]) -> list:
        batches.append((list(requests), threading.current_thread() is threading.main_thread()))
        await release.wait()
        return [ValueError(f"bad {r}") if r < 0 else r * 10 for r in requests]

    async def scenario():
        batcher = Batcher(handle, max_batch_size=32, max_wait_ms=5000, slots=1)
        first = asyncio.create_task(batcher(1))
        await asyncio.sleep(0.01)
        rest = [asyncio.create_task(batcher(i)) for i in (2, -3, 4)]
        await asyncio.sleep(0.01)
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True)

    first, second, bad, fourth = asyncio.run(scenario())
    assert (first, second, fourth) == (10, 20, 40) and isinstance(bad, ValueError)
    assert batches == [([1], True), ([2, -3, 4], True)]


def test_a_request_whose_caller_went_away_is_left_out_of_the_next_batch():
    """A client that disconnects cancels its request: while it still waits for a slot, no batch computes it."""
    recorder = Recorder()

    async def scenario():
        batcher = Batcher(recorder, max_batch_size=32, max_wait_ms=5000, slots=1)
        recorder.release.clear()
        running = asyncio.create_task(batcher(1))
        await asyncio.sleep(0.05)
        gone, kept = asyncio.create_task(batcher(2)), asyncio.create_task(batcher(3))
        await asyncio.sleep(0)
        gone.cancel()
        await asyncio.sleep(0)
        recorder.release.set()
        assert await running == 10 and await kept == 30
        with pytest.raises(asyncio.CancelledError):
            await gone

    asyncio.run(scenario())
    assert recorder.batches == [[1], [3]]


def test_a_batch_behind_a_running_one_waits_for_enough_requests_and_a_lone_one_never_waits():
    """With two slots a second batch starts while one runs only once `min_behind` requests wait (a tiny batch behind a
    running one would cost its fixed work for little); the rest go when a batch ends, and an idle batcher starts at once."""
    recorder = Recorder()

    async def scenario():
        batcher = Batcher(recorder, max_batch_size=32, max_wait_ms=5000, slots=2, min_behind=3)
        recorder.release.clear()
        running = asyncio.create_task(batcher(1))
        await asyncio.sleep(0.05)
        few = [asyncio.create_task(batcher(i)) for i in (2, 3)]
        await asyncio.sleep(0.05)
        assert batcher.batches == 1  # two waiting: not worth a batch behind the running one
        more = asyncio.create_task(batcher(4))
        await asyncio.sleep(0.05)
        assert batcher.batches == 2  # three waiting: they go behind it
        recorder.release.set()
        assert await asyncio.gather(running, *few, more) == [10, 20, 30, 40]
        assert await batcher(5) == 50  # idle again: a lone request starts at once
        return batcher

    asyncio.run(scenario())
    assert recorder.batches == [[1], [2, 3, 4], [5]]
