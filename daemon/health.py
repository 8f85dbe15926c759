"""The daemon's health: what `/healthz` answers and what decides whether systemd's watchdog is fed.

Two things can stop every stream while the process looks alive:

- the event loop lags or is blocked (`daemon/metrics.LoopLagWatchdog`);
- a model call never returns. It runs in the inference executor's thread, so the event loop
  stays healthy, but the batcher waits on that call and no stream gets another result.
  `InferenceStallCheck` reads how long the call in flight has run (`Batcher.in_flight_s`) and
  calls inference stalled from `model.stall_timeout_s` on. It checks on its own every
  `check_interval_s`, so the `inference_stalled` log line and `spoofwatch_inference_stalls_total`
  come even when nobody probes; a call that returns late ends the stall (`inference_resumed`).

`DaemonHealth` combines the two. Unhealthy has a reason for each failing check
(`event_loop_lagging`, `inference_stalled`): `/healthz` answers 503 with them, `/readyz` 503
(check `inference_progressing`), and the systemd watchdog pings are held back, so systemd
restarts a daemon whose inference hangs just as one whose loop hangs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from daemon.metrics import DaemonMetrics, LagReport, LoopLagWatchdog

log = structlog.get_logger(__name__)

MAX_CHECK_INTERVAL_S = 1.0


@dataclass(frozen=True)
class StallReport:
    stalled: bool
    in_flight_s: float  # how long the model call now running has run (0.0: none is running)
    limit_s: float


class InferenceStallCheck:
    """Stalled while one model call has been in flight for `limit_s` or longer."""

    def __init__(self, in_flight_s: Callable[[], float], limit_s: float, metrics: DaemonMetrics,
                 in_flight_size: Callable[[], int] = lambda: 0) -> None:
        self._in_flight_s = in_flight_s
        self._in_flight_size = in_flight_size
        self.limit_s = limit_s
        self.check_interval_s = min(MAX_CHECK_INTERVAL_S, limit_s / 4)
        self._metrics = metrics
        self._stalled = False
        metrics.inference_in_flight.set_function(in_flight_s)

    def report(self) -> StallReport:
        in_flight_s = self._in_flight_s()
        stalled = in_flight_s >= self.limit_s
        if stalled and not self._stalled:
            self._metrics.inference_stalls.inc()
            log.error("inference_stalled", in_flight_s=round(in_flight_s, 3), limit_s=self.limit_s,
                      batch_size=self._in_flight_size(),
                      effect="no stream gets results; /healthz 503, systemd watchdog held back")
        elif self._stalled and not stalled:
            log.warning("inference_resumed", limit_s=self.limit_s)
        self._stalled = stalled
        return StallReport(stalled, in_flight_s, self.limit_s)

    async def run(self) -> None:
        while True:
            self.report()
            await asyncio.sleep(self.check_interval_s)


@dataclass(frozen=True)
class HealthReport:
    lag: LagReport
    stall: StallReport

    @property
    def reasons(self) -> list[str]:
        """Why the daemon is unhealthy; empty when it is healthy."""
        return ([] if self.lag.healthy else ["event_loop_lagging"]) + (
            ["inference_stalled"] if self.stall.stalled else [])

    @property
    def healthy(self) -> bool:
        return not self.reasons


class DaemonHealth:
    """The verdict of both checks; sets `spoofwatch_healthy` each time it is asked."""

    def __init__(self, lag: LoopLagWatchdog, stall: InferenceStallCheck, metrics: DaemonMetrics) -> None:
        self.lag = lag
        self.stall = stall
        self._metrics = metrics

    def report(self) -> HealthReport:
        report = HealthReport(self.lag.report(), self.stall.report())
        self._metrics.healthy.set(1 if report.healthy else 0)
        return report

    def healthy(self) -> bool:
        return self.report().healthy

    def problem(self) -> str:
        """The reasons in words, for systemd's STATUS= line."""
        words = {"event_loop_lagging": "event loop lagging", "inference_stalled": "inference stalled"}
        return ", ".join(words[reason] for reason in self.report().reasons) or "healthy"
