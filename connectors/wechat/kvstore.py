"""The shared key/value store as the WeChat connector uses it (``connectors.kv.KV``), called off the event loop."""

from __future__ import annotations

from functools import partial
from typing import Any, Protocol

import anyio.to_thread


class KVLike(Protocol):
    """What the connector needs of ``connectors.kv.KV`` (shared by every gateway process)."""

    def add_once(self, key: str, ttl_s: float) -> bool: ...
    def get(self, key: str) -> Any | None: ...
    def set(self, key: str, value: Any, ttl_s: float | None) -> None: ...
    def delete(self, key: str) -> None: ...
    def take(self, key: str) -> Any | None: ...


class AsyncKV:
    """``KVLike`` with its (blocking, database-backed) calls run in a worker thread."""

    def __init__(self, kv: KVLike, prefix: str) -> None:
        self.kv = kv
        self.prefix = prefix

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def add_once(self, key: str, ttl_s: float) -> bool:
        return bool(await anyio.to_thread.run_sync(self.kv.add_once, key, ttl_s))

    async def get(self, key: str) -> Any | None:
        return await anyio.to_thread.run_sync(self.kv.get, key)

    async def set(self, key: str, value: Any, ttl_s: float | None) -> None:
        await anyio.to_thread.run_sync(partial(self.kv.set, key, value, ttl_s))

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(self.kv.delete, key)

    async def take(self, key: str) -> Any | None:
        return await anyio.to_thread.run_sync(self.kv.take, key)
