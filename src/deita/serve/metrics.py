"""The service's Prometheus metrics, in a registry of its own (one per app, so apps never share counts)."""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    """Requests by route and status, request latency, engine batch sizes and times, records waiting."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("deita_requests", "HTTP requests answered, by route and status.",
                                ("route", "status"), registry=self.registry)
        self.latency = Histogram("deita_request_seconds", "Seconds from a request's arrival to its answer, by route.",
                                 ("route",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_records = Histogram("deita_batch_records", "Records (or embedding inputs) in each engine batch.",
                                       buckets=BATCH_BUCKETS, registry=self.registry)
        self.batch_seconds = Histogram("deita_batch_seconds", "Seconds the engine spent on each batch.",
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.queue = Gauge("deita_queue_records", "Records waiting for the engine.", registry=self.registry)
        self.rejected = Counter("deita_record_errors", "Records answered with an error in their slot, by kind.",
                                ("kind",), registry=self.registry)

    def batch(self, records: int, seconds: float) -> None:
        self.batch_records.observe(records)
        self.batch_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
