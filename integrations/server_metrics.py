"""``GET /metrics``: the server's counters in the Prometheus text format.

Every app has its own :class:`prometheus_client.CollectorRegistry` (two apps in one
process, as the tests and Ray Serve replicas build them, never share a counter), and
nothing is labelled by user or key: the metrics tell how busy the server is, not who
uses it. What is measured where:

- ``pad_http_requests_total{route, method, status}``: an ASGI middleware, by route
  template (``/v1/models/{model_id:path}``, never the raw path), 404s for paths no
  route has under ``route="unmatched"``;
- ``pad_generated_tokens_total`` (``rate()`` of it is tokens/s),
  ``pad_guided_tokens_total`` and ``pad_changed_tokens_total`` (tokens of personalized
  answers, whether PAD scored them or the gate or a grammar left them to the base model,
  and those where its choice differs from the base model's: their ratio is the share PAD
  changed), ``pad_queue_wait_seconds`` (from a request's admission to its first token:
  waiting for a wave, the batch window and the token budget, plus the prefill):
  counted from each answer's chunks and their per-token PAD records;
- ``pad_batch_size`` (rows per wave), ``pad_waves_total``, ``pad_forward_passes_total``:
  read from the runtime's statistics when ``/metrics`` is scraped. The runtime keeps
  its last 256 waves; waves that fell out of that window between two scrapes are in
  ``pad_waves_total`` but not in the histogram.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from typing import TYPE_CHECKING, Any

try:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "the server's /metrics needs prometheus-client (the server extra): "
        "pip install 'langchain-pad[server]'"
    ) from exc

if TYPE_CHECKING:
    from langchain_core.messages import AIMessageChunk

    from langchain_pad.runtime import PADRuntime

__all__ = ["CONTENT_TYPE", "MetricsMiddleware", "ServerMetrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServerMetrics:
    """The counters of one app, in a registry of its own."""

    def __init__(self, runtime: PADRuntime) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pad_http_requests",
            "HTTP requests answered, by route template, method and status code.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "pad_completions_in_flight",
            "Chat completions admitted and not yet finished.",
            registry=self.registry,
        )
        self.generated = Counter(
            "pad_generated_tokens",
            "Tokens generated for answers (rate() of it is tokens per second).",
            registry=self.registry,
        )
        self.guided = Counter(
            "pad_guided_tokens",
            "Generated tokens of personalized rows (scored, gated or forced alike).",
            registry=self.registry,
        )
        self.changed = Counter(
            "pad_changed_tokens",
            "Guided tokens where PAD chose another token than the base model would have.",
            registry=self.registry,
        )
        self.queue_wait = Histogram(
            "pad_queue_wait_seconds",
            "Seconds from a completion's admission to its first token (queueing for a "
            "wave, the batch window and the token budget, plus the prefill).",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "pad_batch_size",
            "Rows decoded together in one wave of the runtime.",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.guided_total = 0
        self.changed_total = 0
        self.runtime = runtime
        self._seen_waves = 0
        self.registry.register(_RuntimeCollector(runtime, self))

    def chunk(self, chunk: AIMessageChunk) -> None:
        """Count one answer chunk's tokens, and what PAD did to them."""
        meta = chunk.response_metadata
        self.generated.inc(len(meta.get("token_ids", ())))
        pad = meta.get("pad")
        if isinstance(pad, dict):
            flags = pad.get("changed") or []
            changed = sum(1 for c in flags if c)
            self.guided.inc(len(flags))
            self.changed.inc(changed)
            self.guided_total += len(flags)
            self.changed_total += changed

    def render(self) -> bytes:
        """The exposition (the runtime's new waves are read first)."""
        self._observe_waves()
        return generate_latest(self.registry)

    def _observe_waves(self) -> None:
        """The waves started since the last scrape, into ``pad_batch_size``."""
        stats = self.runtime.stats()
        waves = int(stats["totals"]["waves"])
        if waves < self._seen_waves:  # the runtime was closed and restarted
            self._seen_waves = 0
        sizes = list(stats["wave_sizes"])
        new = min(waves - self._seen_waves, len(sizes))
        for size in sizes[len(sizes) - new :] if new > 0 else []:
            self.batch_size.observe(size)
        self._seen_waves = waves


class _RuntimeCollector:
    """The runtime's totals at scrape time."""

    def __init__(self, runtime: PADRuntime, metrics: ServerMetrics) -> None:
        self.runtime = runtime
        self.metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # registering must not read the runtime (it may not be loaded yet)

    def collect(self) -> Iterator[Metric]:
        totals = self.runtime.stats()["totals"]
        waves = int(totals["waves"])
        yield CounterMetricFamily("pad_waves", "Waves (batches) the runtime started.", value=waves)
        yield CounterMetricFamily(
            "pad_forward_passes",
            "Decoding steps the runtime ran (one forward pass of a wave each).",
            value=int(totals["forward_passes"]),
        )
        guided, changed = self.metrics.guided_total, self.metrics.changed_total
        yield GaugeMetricFamily(
            "pad_changed_token_share",
            "Share of guided tokens PAD changed since the server started (0 before any).",
            value=changed / guided if guided else 0.0,
        )


class MetricsMiddleware:
    """Counts every HTTP response by route template, method and status (pure ASGI: it
    leaves streaming and disconnect detection as they are)."""

    def __init__(self, app: ASGIApp, metrics: ServerMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(path, scope.get("method", ""), str(status)).inc()
