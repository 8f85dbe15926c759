"""Prometheus metrics of one daemon, the event-loop lag watchdog behind `/healthz`, and the routes.

`DaemonMetrics` owns its own `CollectorRegistry`: the composition root (`daemon.app.Daemon`)
creates one per daemon and hands it to the parts that observe something (batcher, hub,
publisher). Nothing registers in prometheus-client's process-global default registry, so
two daemons in one process (the tests) never share or collide on a metric.

Refused inputs are counted once, in the daemon's `Refusals` (every ingress already calls
its `refuse()`); `RefusalCollector` reads those counts at scrape time instead of keeping a
second copy.

Names follow Prometheus conventions: seconds, `_total` counters, histograms with `_bucket`,
`_sum` and `_count`. docs/operations.md lists them with example alert rules.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from daemon.refusals import Refusals

if TYPE_CHECKING:
    from daemon.health import HealthReport

log = structlog.get_logger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# hop -> result latency and queue waits: a hop is 20-40 ms of audio; real time is lost past ~1 s
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0)
INFERENCE_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)
LAG_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RefusalCollector(Collector):
    """`spoofwatch_refused_inputs_total{transport,reason}` straight from the daemon's `Refusals`."""

    def __init__(self, refusals: Refusals) -> None:
        self._refusals = refusals

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("spoofwatch_refused_inputs", "Inputs turned down, by transport and reason",
                                     labels=["transport", "reason"])
        for (transport, reason), count in self._refusals.counts():
            family.add_metric([transport, reason], count)
        yield family


VERIFIER_OUTCOMES = ("scored", "dropped_backlog", "superseded", "failed")


class VerifierMetrics:
    """The second tier's metrics (docs/verifier.md), registered only when the verifier is on."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.windows = Counter("spoofwatch_verifier_windows", "Verifier windows by outcome: scored; dropped_backlog "
                               "(the queue was full); superseded (a newer window of the stream replaced it); failed",
                               ["outcome"], registry=r)
        self.batch_size = Histogram("spoofwatch_verifier_batch_size", "Windows per verifier call",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.queue_wait = Histogram("spoofwatch_verifier_queue_wait_seconds",
                                    "Time a window waited before its verifier call", buckets=LATENCY_BUCKETS,
                                    registry=r)
        self.inference = Histogram("spoofwatch_verifier_inference_seconds", "Duration of one verifier call",
                                   buckets=INFERENCE_BUCKETS, registry=r)
        self.queued = Gauge("spoofwatch_verifier_queued", "Windows waiting for the verifier now", registry=r)
        for outcome in VERIFIER_OUTCOMES:
            self.windows.labels(outcome)  # present at 0 from the start


class DaemonMetrics:
    """Every metric of one daemon, registered in the registry it owns; refused inputs are read
    from `refusals` (the daemon's; a metrics object of its own gets an empty one)."""

    def __init__(self, refusals: Refusals | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.streams_open = Gauge("spoofwatch_streams_open", "Streams open now", registry=r)
        self.streams_max = Gauge("spoofwatch_streams_max", "The admission limit (streams.max_streams)", registry=r)
        self.streams_opened = Counter("spoofwatch_streams_opened", "Streams opened", ["transport"], registry=r)
        self.streams_closed = Counter("spoofwatch_streams_closed", "Streams closed, by reason", ["reason"],
                                      registry=r)
        self.hops = Counter("spoofwatch_hops_scored", "Hops scored by the model (rate() = hops/s)", registry=r)
        self.batches = Counter("spoofwatch_batches", "Model calls", registry=r)
        self.batch_failures = Counter("spoofwatch_hop_failures", "Hops whose model call failed", registry=r)
        self.batch_size = Histogram("spoofwatch_batch_size", "Streams per model call", buckets=BATCH_BUCKETS,
                                    registry=r)
        self.queue_wait = Histogram("spoofwatch_queue_wait_seconds",
                                    "Time a hop waited in the batcher before its model call",
                                    buckets=LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("spoofwatch_inference_seconds", "Duration of one model call (one batch)",
                                   buckets=INFERENCE_BUCKETS, registry=r)
        self.inference_in_flight = Gauge("spoofwatch_inference_in_flight_seconds",
                                         "How long the model call now running has run (0 when none is)",
                                         registry=r)
        self.inference_stalls = Counter("spoofwatch_inference_stalls",
                                        "Model calls that ran model.stall_timeout_s or longer", registry=r)
        self.hop_latency = Histogram("spoofwatch_hop_latency_seconds",
                                     "From a hop's last sample arriving to its result being published",
                                     buckets=LATENCY_BUCKETS, registry=r)
        self.drops = Counter("spoofwatch_dropped", "Audio or messages dropped, by reason", ["reason"], registry=r)
        self.subscribers = Gauge("spoofwatch_subscribers", "Result subscribers connected, by kind", ["kind"],
                                 registry=r)
        self.loop_lag = Gauge("spoofwatch_event_loop_lag_seconds", "Latest event-loop lag measured", registry=r)
        self.loop_lag_max = Gauge("spoofwatch_event_loop_lag_max_seconds",
                                  "Worst event-loop lag within the watchdog window", registry=r)
        self.loop_lag_hist = Histogram("spoofwatch_event_loop_lag_histogram_seconds",
                                       "Event-loop lag per watchdog tick", buckets=LAG_BUCKETS, registry=r)
        self.heap_trimmed = Counter("spoofwatch_heap_trimmed_bytes",
                                    "RSS handed back to the system by malloc_trim (memory.trim_interval_s)",
                                    registry=r)
        self.ready = Gauge("spoofwatch_ready", "1 when /readyz answers 200", registry=r)
        self.healthy = Gauge("spoofwatch_healthy", "1 when /healthz answers 200", registry=r)
        r.register(RefusalCollector(refusals if refusals is not None else Refusals()))
        for reason in ("buffer_overflow", "pub_full", "event_queue_full"):
            self.drops.labels(reason)  # present at 0 from the start, so rate() and alerts see them
        self.verifier: VerifierMetrics | None = None

    def watch_verifier(self) -> VerifierMetrics:
        """Register the verifier's metrics (once; the daemon calls it when verifier.enabled)."""
        if self.verifier is None:
            self.verifier = VerifierMetrics(self.registry)
        return self.verifier

    def subscriber_gauge(self, kind: str, count: Callable[[], float]) -> None:
        """A subscriber count read at scrape time."""
        self.subscribers.labels(kind).set_function(count)

    def watch_webhooks(self, counters: Any) -> None:
        """`spoofwatch_webhooks_total{outcome}` (sent, retries, failed, dropped) read from the
        webhook sender's own counters at scrape time."""

        class WebhookCollector(Collector):
            def collect(self) -> Iterator[Metric]:
                family = CounterMetricFamily("spoofwatch_webhooks", "Webhook notifications by outcome",
                                             labels=["outcome"])
                for outcome in ("sent", "retries", "failed", "dropped"):
                    family.add_metric([outcome], getattr(counters, outcome))
                yield family

        self.registry.register(WebhookCollector())

    def watch_task_restarts(self, restarts: Callable[[], Mapping[str, int]]) -> None:
        """`spoofwatch_task_restarts_total{task}`: supervised loops restarted after dying
        (daemon/supervise.py), read from the supervisors at scrape time."""

        class RestartCollector(Collector):
            def collect(self) -> Iterator[Metric]:
                family = CounterMetricFamily("spoofwatch_task_restarts",
                                             "Supervised background loops restarted after an error", labels=["task"])
                for task, count in sorted(restarts().items()):
                    family.add_metric([task], count)
                yield family

        self.registry.register(RestartCollector())

    def render(self) -> bytes:
        return generate_latest(self.registry)


@dataclass(frozen=True)
class LagReport:
    healthy: bool
    last_lag_s: float
    max_lag_s: float
    window_s: float
    threshold_s: float
    since_last_tick_s: float


class LoopLagWatchdog:
    """Sleeps `interval_s` in a loop and measures how late it wakes: the event loop's lag.

    Healthy while the worst lag within the last `window_s` is below `threshold_s` and the
    last tick is recent (a blocked loop cannot tick; if /healthz answers at all after a
    block, the lag it reports includes the block).
    """

    def __init__(self, metrics: DaemonMetrics, interval_s: float, threshold_s: float, window_s: float) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self.threshold_s = threshold_s
        self.window_s = window_s
        self._ticks: deque[tuple[float, float]] = deque()  # (monotonic time, lag)
        self._last_tick = time.monotonic()
        self.last_lag_s = 0.0
        self.unhealthy_since: float | None = None

    async def run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval_s)
            self.record(max(0.0, time.monotonic() - before - self.interval_s))

    def record(self, lag_s: float) -> None:
        now = time.monotonic()
        self._last_tick = now
        self.last_lag_s = lag_s
        self._ticks.append((now, lag_s))
        while self._ticks and self._ticks[0][0] < now - self.window_s:
            self._ticks.popleft()
        self.metrics.loop_lag.set(lag_s)
        self.metrics.loop_lag_hist.observe(lag_s)
        self.metrics.loop_lag_max.set(self.max_lag_s())
        if lag_s >= self.threshold_s:
            log.warning("event_loop_lag", lag_s=round(lag_s, 3), threshold_s=self.threshold_s)

    def max_lag_s(self) -> float:
        return max((lag for _, lag in self._ticks), default=0.0)

    def report(self) -> LagReport:
        since = time.monotonic() - self._last_tick
        worst = max(self.max_lag_s(), since - self.interval_s)
        healthy = worst < self.threshold_s
        return LagReport(healthy, self.last_lag_s, worst, self.window_s, self.threshold_s, since)


def add_routes(app: web.Application, metrics: DaemonMetrics, health: Callable[[], HealthReport],
               readiness: Callable[[], dict[str, bool]]) -> None:
    """`GET /metrics` (Prometheus text), `/healthz` (`health()`: the lag watchdog and the inference
    stall check, daemon/health.py), `/readyz` (`readiness()`)."""

    async def handle_metrics(request: web.Request) -> web.Response:
        return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})

    async def handle_healthz(request: web.Request) -> web.Response:
        report = health()
        lag, stall = report.lag, report.stall
        body = {"status": report.reasons[0] if report.reasons else "ok", "reasons": report.reasons,
                "event_loop_lag_s": round(lag.last_lag_s, 6), "max_lag_s": round(lag.max_lag_s, 6),
                "window_s": lag.window_s, "threshold_s": lag.threshold_s,
                "inference_in_flight_s": round(stall.in_flight_s, 3), "stall_timeout_s": stall.limit_s}
        return web.json_response(body, status=200 if report.healthy else 503)

    async def handle_readyz(request: web.Request) -> web.Response:
        checks = readiness()
        ready = all(checks.values())
        metrics.ready.set(1 if ready else 0)
        return web.json_response({"status": "ready" if ready else "not_ready", "checks": checks},
                                 status=200 if ready else 503)

    app.router.add_get("/metrics", handle_metrics)
    app.router.add_get("/healthz", handle_healthz)
    app.router.add_get("/readyz", handle_readyz)
