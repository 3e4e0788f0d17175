"""Whether the server is answering requests, so that deferred start-up work waits for a quiet moment.

The providers' deferred work (importing and opening chromadb: about half a second of CPU) used to
start a fixed second after the server was up. A client that starts the server and talks to it at
once then had its first chats compete with it: on 2 cores some took 300-500 ms instead of 150 (a
third busy thread slows every step of llama.cpp's spinning threads). ``Activity`` counts the HTTP
requests under way; the warm-up waits until none has been for a moment (or, on a server that is
never quiet, a while).
"""

from __future__ import annotations

import asyncio
import time

from starlette.types import ASGIApp, Receive, Scope, Send


class Activity:
    """HTTP requests under way and when the last one ended (monotonic seconds)."""

    def __init__(self) -> None:
        self.under_way = 0
        self.last_end = time.monotonic()

    def quiet_for(self) -> float:
        """Seconds since the last request ended; 0 while one is under way."""
        return 0.0 if self.under_way else time.monotonic() - self.last_end

    async def quiet(self, quiet_s: float, at_most_s: float) -> None:
        """Returns once no request has been under way for ``quiet_s``, or after ``at_most_s``."""
        deadline = time.monotonic() + at_most_s
        while (waited := self.quiet_for()) < quiet_s and (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(quiet_s - waited, left))


class ActivityCounter:
    """ASGI middleware keeping an ``Activity`` up to date (a streamed response counts until its end)."""

    def __init__(self, app: ASGIApp, activity: Activity) -> None:
        self.app = app
        self.activity = activity

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        activity = self.activity
        activity.under_way += 1
        try:
            await self.app(scope, receive, send)
        finally:
            activity.under_way -= 1
            activity.last_end = time.monotonic()
