"""Prometheus metrics, one CollectorRegistry per app (so two apps in one process, e.g. in
tests, never share or clash). Exposed by ``GET /metrics``.

Names: ``autoreply_requests_total{route,method,status}``, ``autoreply_request_seconds{route}``,
``autoreply_decisions_total{action}``, ``autoreply_escalations_total{reason}``,
``autoreply_batch_size``, ``autoreply_batch_seconds``, ``autoreply_queue_depth{status}``,
``autoreply_interceptions_total{phrase}``, ``autoreply_deliveries_total{channel,status}``,
``autoreply_rate_limited_total{scope}``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from autoreply.models import Action, Reply

_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SIZES = (1, 2, 4, 8, 16, 32, 64, 128)


class Metrics:
    """The service's counters, gauges and histograms in their own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "autoreply_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=r,
        )
        self.request_seconds = Histogram(
            "autoreply_request_seconds",
            "HTTP request latency by route template",
            ["route"],
            buckets=_LATENCY,
            registry=r,
        )
        self.decisions = Counter(
            "autoreply_decisions", "Bot decisions by action", ["action"], registry=r
        )
        self.escalations = Counter(
            "autoreply_escalations", "Escalations by reason code", ["reason"], registry=r
        )
        self.batch_size = Histogram(
            "autoreply_batch_size",
            "Messages per micro-batch (one encoder call)",
            buckets=_SIZES,
            registry=r,
        )
        self.batch_seconds = Histogram(
            "autoreply_batch_seconds",
            "Time to handle one micro-batch (encode, decide, store)",
            buckets=_LATENCY,
            registry=r,
        )
        self.queue_depth = Gauge(
            "autoreply_queue_depth",
            "Tickets waiting for or held by a person, by status",
            ["status"],
            registry=r,
        )
        self.interceptions = Counter(
            "autoreply_interceptions",
            "Agent replies blocked by a prohibited phrase, by phrase",
            ["phrase"],
            registry=r,
        )
        self.deliveries = Counter(
            "autoreply_deliveries",
            "Agent reply deliveries by channel and outcome",
            ["channel", "status"],
            registry=r,
        )
        self.rate_limited = Counter(
            "autoreply_rate_limited",
            "Requests refused with 429, by bucket (user or ip)",
            ["scope"],
            registry=r,
        )
        for action in Action:
            self.decisions.labels(action.value)
        for status in ("open", "claimed"):
            self.queue_depth.labels(status)

    def observe_reply(self, reply: Reply) -> None:
        """Count a fresh (not duplicate) reply's decision and escalation reason."""
        if reply.duplicate:
            return
        self.decisions.labels(reply.decision.value).inc()
        if reply.decision is Action.ESCALATE:
            self.escalations.labels(reply.reason.value).inc()

    def set_queue(self, counts: dict[str, int]) -> None:
        self.queue_depth.labels("open").set(counts.get("tickets_open", 0))
        self.queue_depth.labels("claimed").set(counts.get("tickets_claimed", 0))

    def render(self) -> bytes:
        return generate_latest(self.registry)
