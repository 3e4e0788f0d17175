"""Deferred start-up work waits for a moment without requests (it made the first chats 2x slower)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.responses import StreamingResponse
from starlette.routing import Route

from llamastack.stack.server import app as server_app
from llamastack.stack.server.activity import Activity, ActivityCounter


def _streaming_app(
    activity: Activity, chunks: int, gap_s: float, seen: list[tuple[int, float]] | None = None
) -> ActivityCounter:
    async def stream(request: Any) -> StreamingResponse:
        async def body() -> Any:
            for i in range(chunks):
                await asyncio.sleep(gap_s)
                if seen is not None:  # what the counter says while the stream is being sent
                    seen.append((activity.under_way, activity.quiet_for()))
                yield f"data: {i}\n\n".encode()

        return StreamingResponse(body(), media_type="text/event-stream")

    return ActivityCounter(Starlette(routes=[Route("/s", stream)]), activity)


async def test_a_streamed_response_counts_until_its_end() -> None:
    activity = Activity()
    seen: list[tuple[int, float]] = []
    app = _streaming_app(activity, chunks=5, gap_s=0.05, seen=seen)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (await client.get("/s")).text.count("data:") == 5
    assert seen == [(1, 0.0)] * 5
    assert activity.under_way == 0
    assert activity.quiet_for() < 0.05  # the end of the stream is the last activity


async def test_quiet_waits_for_requests_to_stop_or_gives_up() -> None:
    activity = Activity()
    app = _streaming_app(activity, chunks=1, gap_s=0.0)
    stop = asyncio.Event()

    async def busy_client() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            while not stop.is_set():
                (await client.get("/s")).raise_for_status()
                await asyncio.sleep(0.02)  # a client's pauses between requests are no quiet moment

    task = asyncio.create_task(busy_client())
    await asyncio.sleep(0.1)
    waiter = asyncio.create_task(activity.quiet(0.2, at_most_s=30))
    await asyncio.sleep(0.5)
    assert not waiter.done()  # requests kept coming
    stop.set()
    stopped_at = time.monotonic()
    await task
    await asyncio.wait_for(waiter, 2)
    done_at = time.monotonic()
    assert done_at >= stopped_at
    assert done_at - activity.last_end >= 0.2 - 0.01  # 0.2 s after the last request ended

    busy = Activity()
    busy.under_way = 1  # a request that never ends
    started = time.monotonic()
    await busy.quiet(0.2, at_most_s=0.3)
    assert 0.3 <= time.monotonic() - started < 1.0


async def test_the_server_counts_its_requests_and_warms_up_when_quiet() -> None:
    app = server_app.build_app()
    activity = app.state.activity
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        before = activity.last_end
        await client.get("/v1/health")
        assert activity.last_end > before and activity.under_way == 0

    class _Recorded:  # what the warm-up is given: only its start time matters here
        warmed_at: float | None = None

        async def warm_up(self) -> None:
            self.warmed_at = time.monotonic()

    stack = _Recorded()
    fresh = Activity()
    fresh.under_way = 1
    started = time.monotonic()
    warming = asyncio.create_task(server_app._warm_up_later(stack, fresh))  # type: ignore[arg-type]
    await asyncio.sleep(server_app.WARM_UP_AFTER_S + 0.3)
    assert stack.warmed_at is None  # a request is still under way
    fresh.under_way, fresh.last_end = 0, time.monotonic()
    await asyncio.wait_for(warming, 2)
    assert stack.warmed_at is not None
    assert stack.warmed_at - started >= server_app.WARM_UP_AFTER_S + 0.3 + server_app.WARM_UP_QUIET_S - 0.05
