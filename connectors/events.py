"""Live pushes: the hub and the desk publish, desk websockets subscribe.

In one process, events go straight to each subscriber's asyncio queue (handed to its event loop thread-safely:
publishers run in worker threads, where the database work runs). With `GOVBOT_REDIS_URL` every event goes
through Redis pub/sub instead and each gateway replica's relay hands it to its own subscribers, so a clerk
connected to one replica sees tickets opened on another (DESIGN §5). A subscriber that stops reading loses its
oldest events rather than stalling the hub (the desk reloads its queue over HTTP on reconnect)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Optional

log = logging.getLogger("govbot.events")
Queue = asyncio.Queue[dict[str, Any]]


def _put(queue: Queue, event: dict[str, Any]) -> None:
    if queue.full():
        with contextlib.suppress(asyncio.QueueEmpty):
            queue.get_nowait()
    queue.put_nowait(event)


class EventBus:
    def __init__(self, queue_size: int = 1000, redis_url: Optional[str] = None, scope: str = "") -> None:
        self.queue_size = queue_size
        self._subscribers: dict[Queue, asyncio.AbstractEventLoop] = {}
        self.redis_url = redis_url
        # Replicas of one deployment share the channel; other deployments on the same Redis do not.
        self.channel = "govbot:desk-events:" + hashlib.sha256(scope.encode()).hexdigest()[:16]
        self._redis: Any = None
        if redis_url:
            import redis

            self._redis = redis.Redis.from_url(redis_url, socket_timeout=2)

    def publish(self, event: dict[str, Any]) -> None:
        if self._redis is not None:
            try:
                self._redis.publish(self.channel, json.dumps(event, ensure_ascii=False, default=str))
                return
            except Exception as exc:  # noqa: BLE001 — Redis away: this replica's consoles still get it
                log.warning("events: Redis publish failed (%s); delivering locally only", type(exc).__name__)
        self._deliver(event)

    def _deliver(self, event: dict[str, Any]) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        for queue, loop in list(self._subscribers.items()):
            if loop is running:
                _put(queue, event)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(_put, queue, event)

    async def relay(self) -> None:
        """Hand events from Redis to this process's subscribers until cancelled; reconnects after errors."""
        if not self.redis_url:
            return
        import redis.asyncio as aioredis

        while True:
            client = aioredis.from_url(self.redis_url)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            self._deliver(json.loads(message["data"]))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001
                log.warning("events: Redis relay lost (%s); reconnecting", type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                await client.aclose()

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
