"""Prometheus metrics of one server (its own registry, so several apps can live in one process).

llm2vec_gen_requests_total{route,status}         requests answered (499: the client went away)
llm2vec_gen_request_duration_seconds{route}      latency histogram
llm2vec_gen_requests_in_flight                   requests being served (embed, decode)
llm2vec_gen_queue_depth                          rows waiting for a forward pass
llm2vec_gen_batch_size{kind}                     rows per forward pass (embed or decode)
llm2vec_gen_batch_tokens{kind}                   padded tokens per forward pass
llm2vec_gen_forward_seconds{kind}                time of one batch
llm2vec_gen_tokens_total{kind}                   real input tokens processed (rate() = tokens/s)
llm2vec_gen_tokens_per_second{kind}              input tokens per second of the last batch
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_TOKEN_BUCKETS = tuple(2**i for i in range(4, 20))


class Metrics:
    """The server's instruments (thread-safe: the engine thread and the event loop both record)."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r, p = self.registry, "llm2vec_gen_"
        self.requests = Counter(p + "requests", "Requests answered", ["route", "status"], registry=r)
        self.latency = Histogram(
            p + "request_duration_seconds", "Request latency", ["route"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.in_flight = Gauge(p + "requests_in_flight", "Embed and decode requests being served", registry=r)
        self.queue_depth = Gauge(p + "queue_depth", "Rows waiting for a forward pass", registry=r)
        self.batch_size = Histogram(
            p + "batch_size", "Rows per forward pass", ["kind"], buckets=_SIZE_BUCKETS, registry=r
        )
        self.batch_tokens = Histogram(
            p + "batch_tokens", "Padded tokens per forward pass", ["kind"], buckets=_TOKEN_BUCKETS, registry=r
        )
        self.forward_seconds = Histogram(
            p + "forward_seconds", "Time of one batch", ["kind"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.tokens = Counter(p + "tokens", "Input tokens processed", ["kind"], registry=r)
        self.tokens_per_second = Gauge(
            p + "tokens_per_second", "Input tokens/s of the last batch", ["kind"], registry=r
        )

    def request(self, route: str, status: int, seconds: float) -> None:
        """Records one answered request."""
        self.requests.labels(route, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def batch(self, kind: str, rows: int, padded_tokens: int, tokens: int, seconds: float) -> None:
        """Records one forward pass of ``rows`` rows (``tokens`` real, ``padded_tokens`` computed)."""
        self.batch_size.labels(kind).observe(rows)
        self.batch_tokens.labels(kind).observe(padded_tokens)
        self.forward_seconds.labels(kind).observe(seconds)
        self.tokens.labels(kind).inc(tokens)
        self.tokens_per_second.labels(kind).set(tokens / max(seconds, 1e-9))

    def render(self) -> bytes:
        """The text exposition format of every metric."""
        return generate_latest(self.registry)
