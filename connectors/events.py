"""Live pushes inside a gateway process: the hub and the desk publish, websockets subscribe.

Publishers may run in worker threads (database work runs there), so events are handed to each subscriber's
event loop thread-safely. A subscriber that stops reading loses its oldest events rather than stalling the hub
(the desk reloads its queue over HTTP on reconnect, so nothing it shows depends on every event arriving)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

Queue = asyncio.Queue[dict[str, Any]]


def _put(queue: Queue, event: dict[str, Any]) -> None:
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(event)


class EventBus:
    def __init__(self, queue_size: int = 1000) -> None:
        self.queue_size = queue_size
        self._subscribers: dict[Queue, asyncio.AbstractEventLoop] = {}

    def publish(self, event: dict[str, Any]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for queue, loop in list(self._subscribers.items()):
            if loop is running:
                _put(queue, event)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_put, queue, event)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[Queue]:
        queue: Queue = asyncio.Queue(self.queue_size)
        self._subscribers[queue] = asyncio.get_running_loop()
        try:
            yield queue
        finally:
            self._subscribers.pop(queue, None)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)
