"""The composition root: builds every part from the config, owns the tasks, shuts down in order.

Startup: backend -> publisher (PUB) -> batcher -> hub -> ingest adapters (ZeroMQ; WHIP, Twilio,
audio-fork and the web console on one HTTP server; AudioSocket; webhooks for the telephony ones).
Shutdown (uvicorn style, on the first SIGTERM/SIGINT): stop accepting (adapters stop, the
hub refuses new streams) -> drain (each open stream scores its pending full hops and
publishes its `closed` summary, bounded by shutdown.timeout_s) -> stop the batcher and the
reaper -> close the PUB socket (lingers so the summaries leave) -> exit 0. A second signal
cancels the drain and exits at once with status 1.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import signal
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
import zmq
import zmq.asyncio

from daemon.auth import TokenStore, http_middleware
from daemon.batcher import Batcher
from daemon.config import PUB_LINGER_S, DaemonConfig
from daemon.console import WebConsole
from daemon.errors import ModelNotFoundError
from daemon.health import DaemonHealth, InferenceStallCheck
from daemon.heap_trim import HeapTrimmer
from daemon.http import HttpServer
from daemon.hub import DaemonHub
from daemon.ingest.audiofork import AudioForkIngest
from daemon.ingest.audiosocket import AudioSocketIngest
from daemon.ingest.base import IngestAdapter
from daemon.ingest.twilio import TwilioIngest
from daemon.ingest.zmq import ZmqIngest
from daemon.metrics import DaemonMetrics, LoopLagWatchdog, add_routes
from daemon.policy import early_thresholds, resolve_thresholds
from daemon.publisher import ResultPublisher
from daemon.refusals import Refusals
from daemon.supervise import Supervisor
from daemon.systemd_notify import SystemdNotifier
from daemon.verifier import VerifierBatcher, WindowScorer, load_verifier
from daemon.webhooks import WebhookSender
from daemon.wire.endpoints import WHIP_PATH
from daemon.zmq_auth import Authenticator, CurveKeys, load_server_keys
from streaming_models.runtime.backend import Backend, load_backend
from streaming_models.runtime.default_model import DEFAULT_MODEL, find_model, packaged_model_path
from streaming_models.runtime.model_format import ModelMetadata

log = structlog.get_logger(__name__)

INFERENCE_THREAD_PREFIX = "spoofwatch-inference"


def resolve_model_path(path: str, cwd: Path | None = None) -> Path:
    """An absolute path as is; a relative one in the working directory, and the default model's
    name, when not there, the packaged model (streaming_models/runtime/default_model.py)."""
    found = find_model(path, cwd)
    if found is not None:
        return found
    candidate = Path(path).expanduser()
    if candidate.is_absolute():
        raise ModelNotFoundError(str(candidate))
    packaged = f" and at {packaged_model_path()}" if candidate == Path(DEFAULT_MODEL) else ""
    raise ModelNotFoundError(f"{candidate} (looked in {cwd or Path.cwd()}{packaged})")


def build_backend(config: DaemonConfig, model_path: Path | None) -> Backend:
    """The configured backend; `model_path` may be None only for triton without a fallback."""
    model = config.model
    if model.backend == "triton":
        fallback = None
        if model.triton_fallback:
            assert model_path is not None, "triton_fallback needs the local model"
            fallback = load_backend("onnx", model_path, providers=model.providers,
                                    intra_op_threads=model.intra_op_threads)
        return load_backend("triton", model_path, endpoints=model.triton_endpoints, model_name=model.triton_model,
                            timeout_s=model.triton_timeout_s, retries=model.triton_retries, fallback=fallback)
    assert model_path is not None, f"the {model.backend} backend needs a model file"
    if model.backend == "onnx":
        return load_backend("onnx", model_path, providers=model.providers,
                            intra_op_threads=model.intra_op_threads)
    return load_backend("torch", model_path, device=config.model.torch_device,
                        intra_op_threads=config.model.intra_op_threads)


@dataclass
class DaemonState:
    """The daemon-wide mutable state, created by the app and passed down explicitly."""

    config: DaemonConfig
    metadata: ModelMetadata
    shutting_down: bool = False
    endpoints: dict[str, str] = field(default_factory=dict)


class Daemon:
    def __init__(self, config: DaemonConfig, backend: Backend, verifier: WindowScorer | None = None) -> None:
        """`verifier`: the second tier, when verifier.enabled; None loads it from verifier.path."""
        self.config = config
        self.backend = backend
        self.state = DaemonState(config, backend.metadata)
        # named per daemon, so `inference_threads` never counts another daemon's (tests run several)
        self._inference_threads = f"{INFERENCE_THREAD_PREFIX}-{id(self):x}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=self._inference_threads)
        if config.verifier.enabled and verifier is None:
            verifier = load_verifier(config.verifier, backend.metadata)
        self.verifier_model = verifier if config.verifier.enabled else None
        self.verifier: VerifierBatcher | None = None
        self._verifier_executor: ThreadPoolExecutor | None = None
        self._context = zmq.asyncio.Context()
        self.publisher: ResultPublisher | None = None
        self.batcher: Batcher | None = None
        self.hub: DaemonHub | None = None
        self.adapters: list[IngestAdapter] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self._supervisors: list[Supervisor] = []
        # this daemon's refused inputs and metrics, its own (never process-global)
        self.refusals = Refusals()
        self.metrics = DaemonMetrics(self.refusals)
        self.authenticator: Authenticator | None = None
        self._curve: CurveKeys | None = None
        self._console_keys: tuple[bytes, bytes] | None = None  # the console's own monitor key pair
        obs = config.observability
        self.watchdog = LoopLagWatchdog(self.metrics, obs.lag_interval_s, obs.lag_threshold_s, obs.lag_window_s)
        self.stall_check = InferenceStallCheck(self._inference_in_flight_s, config.model.stall_timeout_s,
                                               self.metrics, self._inference_in_flight_size)
        self.health = DaemonHealth(self.watchdog, self.stall_check, self.metrics)
        # under systemd (Type=notify): READY/STOPPING, and WatchdogSec fed while /healthz is healthy
        self.systemd = SystemdNotifier.from_environ(os.environ, self.health.healthy, obs.lag_window_s,
                                                    problem=self.health.problem)
        self.metrics.watch_task_restarts(self.task_restarts)
        self.heap_trimmer = HeapTrimmer(config.memory.trim_interval_s, self.metrics)

    async def start(self) -> None:
        cfg = self.config
        meta = self.backend.metadata
        if cfg.zmq_auth_required:
            self._start_curve(Path(cfg.auth.zmq_keys_dir))
        self.publisher = ResultPublisher(self._context, cfg.zmq.pub_endpoint, cfg.zmq.pub_hwm,
                                         count_drops=cfg.zmq.pub_count_drops,
                                         sndbuf_bytes=cfg.zmq.pub_sndbuf_bytes, curve=self._curve,
                                         connect=cfg.zmq.pub_connect, linger_ms=int(PUB_LINGER_S * 1000))
        self.state.endpoints["pub"] = self.publisher.endpoint
        self.metrics.subscriber_gauge("zmq_pub", lambda: self.publisher.connections if self.publisher else 0)
        self.batcher = Batcher(self.backend, cfg.batching.max_batch, cfg.batching.max_wait_ms, self._executor,
                               metrics=self.metrics)
        early = early_thresholds(cfg.decision, meta)
        decision, no_threshold = resolve_thresholds(cfg.decision, meta)
        if no_threshold:
            log.warning("model_has_no_operating_threshold", heads=no_threshold,
                        using="the configured decision.*_enter/_exit values")
        log.info("decision_thresholds", source=cfg.decision.thresholds,
                 early_hops={head: len(by_hop) for head, by_hop in early.items()},
                 **{k: round(getattr(decision, k), 4) for k in ("spoof_enter", "spoof_exit", "codec_enter", "codec_exit")})
        if self.verifier_model is not None:
            # its own thread: a verifier call (tens of ms) never holds up a streaming batch
            self._verifier_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spoofwatch-verifier")
            self.verifier = VerifierBatcher(self.verifier_model, cfg.verifier, self._verifier_executor,
                                            self.metrics.watch_verifier())
            log.info("verifier_on", model_id=self.verifier_model.metadata.model_id, window_s=cfg.verifier.window_s,
                     every_hops=cfg.verifier.every_hops, screen_threshold=cfg.verifier.screen_threshold,
                     fusion=cfg.verifier.fusion)
        self.hub = DaemonHub(meta, self.batcher, self.publisher, cfg.streams, decision, early, metrics=self.metrics,
                             verifier=self.verifier)
        self._tasks = [self._supervised("batcher", self.batcher.run_batches),
                       self._supervised("idle-reaper", self.hub.run_idle_reaper),
                       self._supervised("loop-lag-watchdog", self.watchdog.run),
                       self._supervised("inference-stall-check", self.stall_check.run),
                       self._supervised("pub-connections", self.publisher.watch_connections)]
        # loops that return at once when they have nothing to do are not started (a supervisor
        # restarts a loop that returns)
        if self._curve is not None:
            self._tasks.append(self._supervised("pub-subscriptions", self.publisher.run_subscriptions))
        if self.heap_trimmer.enabled:
            self._tasks.append(self._supervised("heap-trim", self.heap_trimmer.run))
        if self.verifier is not None:
            self._tasks.append(self._supervised("verifier", self.verifier.run))
        if cfg.zmq.enabled:
            zmq_ingest = ZmqIngest(self.hub, cfg.zmq, refusals=self.refusals, model_id=meta.model_id,
                                   hop_ms=meta.hop_ms, context=self._context, curve=self._curve)
            await zmq_ingest.start()
            self.adapters.append(zmq_ingest)
            self.state.endpoints["ingest"] = zmq_ingest.endpoint
        await self._start_front_doors()
        log.info("daemon_ready", model_id=meta.model_id, sample_rate_hz=meta.sample_rate_hz,
                 hop_samples=meta.hop_samples, **{f"{k}_endpoint": v for k, v in self.state.endpoints.items()})
        self.systemd.ready(f"serving {meta.model_id} on " + " ".join(self.state.endpoints.values()))

    def _supervised(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """A long-running loop that is restarted (and logged) if a bug ends it (daemon/supervise.py)."""
        supervisor = Supervisor(name, run)
        self._supervisors.append(supervisor)
        return asyncio.create_task(supervisor.run(), name=name)

    def task_restarts(self) -> dict[str, int]:
        """How often each supervised loop died and was restarted, the adapters' own included."""
        counts = {supervisor.name: supervisor.restarts for supervisor in self._supervisors}
        for adapter in self.adapters:
            if isinstance(adapter, ZmqIngest):
                counts["zmq-ingest"] = adapter.restarts
            elif isinstance(adapter, WebConsole):
                counts["console-relay"] = adapter.relay_restarts
        return counts

    def inference_threads(self) -> list[threading.Thread]:
        """This daemon's inference threads still alive: after shutdown, only one stuck in a model call."""
        return [thread for thread in threading.enumerate()
                if thread.name.startswith(f"{self._inference_threads}_") and thread.is_alive()]

    def _inference_in_flight_s(self) -> float:
        return self.batcher.in_flight_s() if self.batcher is not None else 0.0

    def _inference_in_flight_size(self) -> int:
        return self.batcher.in_flight_size if self.batcher is not None else 0

    async def _start_front_doors(self) -> None:
        """WHIP, the WebSocket telephony adapters and the web console share one HTTP server (at
        webrtc.host:webrtc.port); AudioSocket listens on its own TCP port. Adapters are stopped in
        reverse order, so the HTTP server stops after its features and webhooks after every ingest."""
        cfg = self.config
        assert self.hub is not None and self.publisher is not None
        telephony = (cfg.audiosocket, cfg.twilio, cfg.audiofork)
        webhooks: WebhookSender | None = None
        if any(s.enabled and (s.webhook_url or getattr(s, "webhook_parameter", "")) for s in telephony):
            webhooks = WebhookSender(cfg.webhooks, signing_secret=cfg.auth.webhook_secret)
            self.metrics.watch_webhooks(webhooks.counters)
            await webhooks.start()
            self.adapters.append(webhooks)
        if cfg.http_enabled:
            middlewares = []
            if cfg.http_auth_required:
                tokens = TokenStore.from_file(Path(cfg.auth.tokens_file))
                middlewares.append(http_middleware(tokens, self.refusals))
                log.info("http_auth_on", tokens=len(tokens), host=cfg.webrtc.host, mode=cfg.auth.mode)
            http = HttpServer(cfg.webrtc.host, cfg.webrtc.port, middlewares)  # the console rides along
            self.adapters.append(http)
            if cfg.observability.enabled:
                add_routes(http.app, self.metrics, self.health.report, self.readiness)
            features: list[IngestAdapter] = []
            if cfg.webrtc.enabled:
                features += self._whip_ingest(http)
            if cfg.twilio.enabled:
                features.append(TwilioIngest(self.hub, cfg.twilio, http, webhooks, refusals=self.refusals))
            if cfg.audiofork.enabled:
                features.append(AudioForkIngest(self.hub, cfg.audiofork, http, webhooks, refusals=self.refusals))
            if cfg.console.enabled:
                console = WebConsole(cfg.console, http, self.publisher.endpoint, self._context,
                                     curve=self._console_curve())
                self.metrics.subscriber_gauge("console", lambda: len(console.clients))
                features.append(console)
            await http.start()
            for feature in features:
                await feature.start()
                self.adapters.append(feature)
            base = f"http://{cfg.webrtc.host}:{http.port}"
            self.state.endpoints["http"] = base
            if cfg.webrtc.enabled:
                self.state.endpoints["whip"] = f"{base}{WHIP_PATH}"
        if cfg.audiosocket.enabled:
            audiosocket = AudioSocketIngest(self.hub, cfg.audiosocket, webhooks, refusals=self.refusals)
            await audiosocket.start()
            self.adapters.append(audiosocket)
            self.state.endpoints["audiosocket"] = f"tcp://{cfg.audiosocket.host}:{audiosocket.port}"

    def _start_curve(self, keys_dir: Path) -> None:
        """CURVE on the ROUTER and the results socket; ZAP admits the allow-list (daemon/zmq_auth.py)."""
        self._curve = load_server_keys(keys_dir)
        self.authenticator = Authenticator(self._context, keys_dir, self.refusals)
        public, secret = zmq.curve_keypair()
        self.authenticator.admit(public, "monitor:console")  # the in-process console reads every stream
        self._console_keys = (public, secret)
        self.authenticator.start()
        log.info("zmq_curve_on", keys_dir=str(keys_dir), clients=len(self.authenticator.allowed))

    def _console_curve(self) -> tuple[bytes, bytes, bytes] | None:
        if self._curve is None or self._console_keys is None:
            return None
        return (*self._console_keys, self._curve.public)

    def readiness(self) -> dict[str, bool]:
        """What `/readyz` checks: the model is loaded, the daemon is not draining, a new stream
        would be admitted (fewer than streams.max_streams are open), and no model call has hung
        (a stalled daemon would take calls and never score them)."""
        hub = self.hub
        return {"model_loaded": self.backend is not None and hub is not None,
                "not_draining": hub is not None and hub.accepting and not self.state.shutting_down,
                "under_admission_limit": hub is not None and not hub.at_capacity,
                "inference_progressing": not self.stall_check.report().stalled}

    def _whip_ingest(self, http: HttpServer) -> list[IngestAdapter]:
        assert self.hub is not None
        try:
            module = importlib.import_module("daemon.ingest.webrtc")
        except ImportError as exc:  # aiortc is not installed
            log.warning("webrtc_ingest_unavailable", error=repr(exc))
            return []
        whip = module.WhipIngest(self.hub, self.config.webrtc, server=http, refusals=self.refusals)
        self.metrics.subscriber_gauge("whip_session", lambda: len(whip.sessions))
        return [whip]

    async def shutdown(self) -> None:
        """Stop accepting, drain, then release everything. Safe to call once."""
        assert self.hub is not None and self.batcher is not None and self.publisher is not None
        self.state.shutting_down = True
        log.info("shutdown_started", open_streams=len(self.hub.registry),
                 at_most_s=self.config.graceful_stop_s)
        self.systemd.stopping(f"draining {len(self.hub.registry)} streams")
        self.hub.stop_accepting()
        try:
            await self._let_streams_end(self.config.shutdown.drain_wait_s)
            for adapter in reversed(self.adapters):
                await adapter.stop()
            try:
                async with asyncio.timeout(self.config.shutdown.timeout_s):
                    await self.hub.close_all("shutdown")
            except TimeoutError:
                log.warning("drain_timed_out", timeout_s=self.config.shutdown.timeout_s)
        finally:
            await self._release()

    async def _let_streams_end(self, wait_s: float) -> None:
        """With every listener still up (new streams refused, /readyz 503), let the open streams end
        by themselves for up to `wait_s`: a replica leaving a pool finishes its calls, moving none."""
        assert self.hub is not None
        if wait_s <= 0 or not len(self.hub.registry):
            return
        log.info("drain_waiting_for_streams", open_streams=len(self.hub.registry), wait_s=wait_s)
        try:
            async with asyncio.timeout(wait_s):
                await self.hub.wait_until_empty()
        except TimeoutError:
            log.warning("drain_wait_over", open_streams=len(self.hub.registry), wait_s=wait_s)

    async def _release(self) -> None:
        assert self.hub is not None and self.batcher is not None and self.publisher is not None
        await self.hub.cancel_tasks()
        self.batcher.close()
        if self.verifier is not None:
            self.verifier.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self.publisher.close()
        if self.authenticator is not None:
            self.authenticator.stop()
        self._context.destroy()  # closes anything left open, then terminates
        self._executor.shutdown(wait=False, cancel_futures=True)
        if self._verifier_executor is not None:
            self._verifier_executor.shutdown(wait=False, cancel_futures=True)
        await self.systemd.close()
        log.info("shutdown_complete")

    async def run_until_signal(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit status (0 graceful, 1 forced)."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        forced = False
        shutdown_task: asyncio.Task[None] | None = None

        def on_signal(signum: int) -> None:
            nonlocal forced
            if not stop.is_set():
                log.info("signal_received", signal=signal.Signals(signum).name, action="graceful shutdown")
                stop.set()
            elif shutdown_task is not None and not shutdown_task.done():
                log.warning("signal_received", signal=signal.Signals(signum).name, action="forced exit")
                forced = True
                shutdown_task.cancel()

        signals = (signal.SIGTERM, signal.SIGINT)
        for sig in signals:
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            await self.start()
            await stop.wait()
            shutdown_task = asyncio.create_task(self.shutdown(), name="shutdown")
            try:
                await shutdown_task
            except asyncio.CancelledError:
                if not forced:
                    raise
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
        return 1 if forced else 0
