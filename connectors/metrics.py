"""Prometheus metrics of one gateway (its own registry, so several apps can live in one test process).

Labels are channels, reasons and states only — never user ids or text, so nothing personal reaches the metrics."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily


class _TicketCollector:
    def __init__(self, count: Callable[[], dict[str, int]]) -> None:
        self.count = count

    def collect(self):  # type: ignore[no-untyped-def]
        family = GaugeMetricFamily("govbot_tickets", "Handoff tickets by status (read at scrape time)",
                                   labels=["status"])
        for status, n in self.count().items():
            family.add_metric([status], n)
        yield family


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.messages = Counter("govbot_messages_total", "Messages stored by the hub",
                                ["channel", "direction", "sender"], registry=self.registry)
        self.latency = Histogram("govbot_bot_reply_seconds", "Time from a citizen's message to the bot's reply",
                                 ["channel"], registry=self.registry,
                                 buckets=(0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10, 20))
        self.handoffs = Counter("govbot_handoffs_total", "Conversations handed to a clerk", ["reason"],
                                registry=self.registry)
        self.bot_failures = Counter("govbot_bot_unavailable_total", "Turns where Rasa or the action server failed",
                                    registry=self.registry)
        self.desk_clients = Gauge("govbot_desk_connections", "Clerk consoles connected live", registry=self.registry)

    def watch_tickets(self, count: Callable[[], dict[str, int]]) -> None:
        self.registry.register(_TicketCollector(count))  # type: ignore[arg-type]

    def render(self) -> bytes:
        return generate_latest(self.registry)
