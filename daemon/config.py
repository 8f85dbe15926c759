"""Daemon configuration: frozen dataclasses, loaded once from defaults < TOML file < env < CLI.

Every setting is a field below with its help text; `configs/default.toml` lists them all
with comments, and the `serve` CLI derives one `--section.key` flag per field from here.

Environment variables override the file with one scheme: `SPOOFWATCH__<SECTION>__<KEY>`,
e.g. `SPOOFWATCH__ZMQ__INGEST_ENDPOINT=tcp://0.0.0.0:5555`. Values of non-string settings
are TOML literals (`3`, `0.5`, `true`, `["CPUExecutionProvider"]`); string settings take
the raw text. Any invalid value fails at start with a `ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from daemon.errors import ConfigError
from daemon.wire.endpoints import (
    DEFAULT_HTTP_HOST,
    DEFAULT_HTTP_PORT,
    DEFAULT_INGEST_ENDPOINT,
    DEFAULT_RESULTS_ENDPOINT,
)
from streaming_models.runtime.default_model import DEFAULT_MODEL
from streaming_models.runtime.settings import coerce, read_toml

ENV_PREFIX = "SPOOFWATCH__"

# The fixed parts of a graceful stop (DaemonConfig.graceful_stop_s): how long the HTTP server waits
# for its handlers once its features have stopped, how long the results socket lingers so the last
# `closed` summaries leave, and how long the exit waits for an inference thread to finish its call.
HTTP_SHUTDOWN_TIMEOUT_S = 2.0
PUB_LINGER_S = 1.0
INFERENCE_EXIT_WAIT_S = 1.0


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@dataclass(frozen=True)
class InferenceConfig:
    """The [model] section: which exported model the daemon runs, and how (not the network's own
    configuration, which is streaming_models.model.ModelConfig)."""

    path: str = field(default=DEFAULT_MODEL, metadata=_help(
        "exported detector: .onnx for the onnx backend, TorchScript .pt for torch; a relative "
        "path is looked up in the working directory (the default, when not there, is the model "
        "packaged with spoofwatch)"))
    backend: Literal["onnx", "torch", "triton"] = field(default="onnx", metadata=_help(
        "inference backend (triton: a Triton Inference Server at model.triton_endpoints; docs/scale-out.md)"))
    providers: tuple[str, ...] = field(
        default=("CUDAExecutionProvider", "CPUExecutionProvider"), metadata=_help(
            "onnxruntime execution providers in order of preference; unavailable ones are skipped"))
    intra_op_threads: int = field(default=1, metadata=_help(
        "threads per inference call (0 = the runtime's default)"))
    torch_device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata=_help(
        "device of the torch backend (auto = cuda when available)"))
    triton_endpoints: tuple[str, ...] = field(default=("127.0.0.1:8001",), metadata=_help(
        "gRPC HOST:PORT of the Triton servers of the triton backend; a failed call is retried on the next"))
    triton_model: str = field(default="spoofwatch", metadata=_help(
        "name of the model in the Triton repository (`spoofwatch export --triton`)"))
    triton_timeout_s: float = field(default=1.0, metadata=_help(
        "longest wait for one Triton call (a whole batch) before it counts as failed"))
    triton_retries: int = field(default=1, metadata=_help(
        "further attempts of a failed Triton call, each on the next endpoint"))
    triton_fallback: bool = field(default=False, metadata=_help(
        "when no Triton endpoint can score a batch, score it in-process with model.path (onnx); "
        "false: the batch's streams end with an error"))
    stall_timeout_s: float = field(default=10.0, metadata=_help(
        "a model call (one batch) running this long counts as hung: /healthz and /readyz answer 503 "
        "(inference_stalled) and the systemd watchdog is no longer fed, so the daemon gets restarted. "
        "Far above the slowest batch (a 64-hop batch takes ~10 ms on a CPU core, 4096 hops under 1 s)"))

    def validate(self) -> None:
        _require("model.path", bool(self.path), "must not be empty")
        _require("model.stall_timeout_s", 0.1 <= self.stall_timeout_s <= 3600, "must be 0.1..3600")
        if self.backend == "triton":
            worst_s = self.triton_timeout_s * (self.triton_retries + 1)
            _require("model.stall_timeout_s", self.stall_timeout_s > worst_s,
                     f"must be above model.triton_timeout_s x (model.triton_retries + 1) = {worst_s:g} s, "
                     "the longest a Triton batch may take before it fails over")
        _require("model.triton_endpoints", len(self.triton_endpoints) > 0 and
                 all(":" in e and "://" not in e for e in self.triton_endpoints),
                 "must list at least one gRPC HOST:PORT (no scheme)")
        _require("model.triton_timeout_s", 0 < self.triton_timeout_s <= 60, "must be 0..60 (exclusive of 0)")
        _require("model.triton_retries", 0 <= self.triton_retries <= 10, "must be 0..10")
        _require("model.providers", len(self.providers) > 0, "must name at least one provider")
        _require("model.intra_op_threads", self.intra_op_threads >= 0, "must be >= 0")


@dataclass(frozen=True)
class BatchingConfig:
    max_batch: int = field(default=64, metadata=_help(
        "run a batch as soon as this many streams have a hop ready"))
    max_wait_ms: float = field(default=20.0, metadata=_help(
        "run a smaller batch when its oldest hop has waited this long"))

    def validate(self) -> None:
        _require("batching.max_batch", 1 <= self.max_batch <= 4096, "must be 1..4096")
        _require("batching.max_wait_ms", 0 <= self.max_wait_ms <= 10_000, "must be 0..10000")


@dataclass(frozen=True)
class StreamsConfig:
    max_streams: int = field(default=1000, metadata=_help(
        "open streams at once; more are rejected with too_many_streams"))
    max_buffered_s: float = field(default=5.0, metadata=_help(
        "cap on audio waiting to be scored per stream; over it the oldest is dropped and counted"))
    idle_timeout_s: float = field(default=10.0, metadata=_help(
        "close a stream (reason idle) when no audio arrived for this long"))
    events_queue_size: int = field(default=256, metadata=_help(
        "messages buffered per in-process event subscriber (WebRTC data channel); more are dropped"))
    resample_quality: Literal["QQ", "LQ", "MQ", "HQ", "VHQ"] = field(default="HQ", metadata=_help(
        "soxr quality of the per-stream resampler"))
    low_delay_resampling: bool = field(default=True, metadata=_help(
        "for integer upsampling (8 -> 16 kHz) apply soxr's filter directly: the same samples, "
        "~10 ms look-ahead instead of soxr's 80-120 ms block buffering, ~8 us more CPU per 20 ms message"))

    def validate(self) -> None:
        _require("streams.max_streams", self.max_streams >= 1, "must be >= 1")
        _require("streams.max_buffered_s", 0.1 <= self.max_buffered_s <= 600, "must be 0.1..600")
        _require("streams.idle_timeout_s", self.idle_timeout_s > 0, "must be > 0")
        _require("streams.events_queue_size", self.events_queue_size >= 2, "must be >= 2")


@dataclass(frozen=True)
class DecisionConfig:
    policy: Literal["codec_as_bonafide", "codec_as_spoof"] = field(
        default="codec_as_bonafide", metadata=_help(
            "how neural-codec resynthesis counts: codec_as_bonafide reports it as `codec` "
            "(genuine speech through a codec), codec_as_spoof counts p_codec as spoof evidence"))
    window_hops: int = field(default=5, metadata=_help(
        "moving-average window of the smoothed probabilities, in hops"))
    min_hops: int = field(default=3, metadata=_help(
        "hops before any decision other than undecided"))
    thresholds: Literal["model", "config"] = field(default="model", metadata=_help(
        "model: spoof_enter and codec_enter are the model's operating thresholds from its metadata "
        "(chosen in training for 1 % false alarms on its dev split), each exit keeping its configured "
        "distance below its enter, and a calibrated model's early thresholds (`spoofwatch calibrate`) "
        "hold for a stream's first seconds; a model without them falls back to the values here. "
        "config: the values here as they are"))
    spoof_enter: float = field(default=0.7, metadata=_help(
        "smoothed spoof score at or above which the decision becomes spoof (with thresholds = "
        "\"model\" the model's threshold takes its place and only its distance to spoof_exit counts)"))
    spoof_exit: float = field(default=0.4, metadata=_help(
        "smoothed spoof score below which a spoof decision is left (hysteresis); "
        "between exit and enter the previous decision holds"))
    codec_enter: float = field(default=0.7, metadata=_help(
        "smoothed p_codec at or above which the decision becomes codec (codec_as_bonafide; with "
        "thresholds = \"model\" the model's threshold takes its place, as for spoof_enter)"))
    codec_exit: float = field(default=0.4, metadata=_help(
        "smoothed p_codec below which a codec decision is left"))

    def validate(self) -> None:
        _require("decision.window_hops", self.window_hops >= 1, "must be >= 1")
        _require("decision.min_hops", self.min_hops >= 1, "must be >= 1")
        for name in ("spoof_enter", "spoof_exit", "codec_enter", "codec_exit"):
            value = getattr(self, name)
            _require(f"decision.{name}", 0.0 <= value <= 1.0, f"must be 0..1, got {value}")
        _require("decision.spoof_exit", self.spoof_exit <= self.spoof_enter,
                 "must be <= decision.spoof_enter")
        _require("decision.codec_exit", self.codec_exit <= self.codec_enter,
                 "must be <= decision.codec_enter")


@dataclass(frozen=True)
class VerifierConfig:
    """The [verifier] section: the second tier (docs/verifier.md), a window model scored beside the
    streaming detector on a sliding window of each stream, off by default."""

    enabled: bool = field(default=False, metadata=_help(
        "score a sliding window of each stream with the second-tier verifier and publish its scores and the "
        "fused p_spoof_fused with every result (docs/verifier.md); needs verifier.path"))
    path: str = field(default="", metadata=_help(
        "the verifier's ONNX file (streaming_models.verifier.model.export_onnx); a relative path is looked "
        "up in the working directory"))
    window_s: float = field(default=4.0, metadata=_help(
        "seconds of a stream's latest audio in each window (kept per stream: 64 kB per second of window); "
        "before a stream has this much, its audio so far, zero-padded as in training"))
    every_hops: int = field(default=10, metadata=_help(
        "score a stream's window every this many of its hops (10 = every second at 100 ms hops)"))
    screen_threshold: float = field(default=0.0, metadata=_help(
        "score only streams whose per-hop streaming p_spoof has reached this once (they stay screened in); "
        "0 = every stream"))
    fusion: Literal["log_odds_mean"] = field(default="log_odds_mean", metadata=_help(
        "how p_spoof_fused is made: log_odds_mean = sigmoid((logit(p_spoof) + logit(p_spoof_verifier)) / 2), "
        "with the latest verifier score; p_spoof alone before the stream's first"))
    max_batch: int = field(default=8, metadata=_help("windows of different streams scored in one call"))
    max_queued: int = field(default=32, metadata=_help(
        "windows waiting for the verifier, all streams together (at most one per stream: a newer window "
        "replaces its stream's waiting one); when full, new windows are dropped and counted, never queued"))
    providers: tuple[str, ...] = field(
        default=("CUDAExecutionProvider", "CPUExecutionProvider"), metadata=_help(
            "onnxruntime execution providers of the verifier in order of preference; unavailable ones are skipped"))
    intra_op_threads: int = field(default=1, metadata=_help(
        "threads per verifier call (0 = the runtime's default); it runs on its own thread beside the "
        "streaming model's"))

    def validate(self) -> None:
        _require("verifier.path", not self.enabled or bool(self.path),
                 "must name the verifier's ONNX file when verifier.enabled is true")
        _require("verifier.window_s", 0 < self.window_s <= 30, f"must be within (0, 30] s, got {self.window_s}")
        _require("verifier.every_hops", 1 <= self.every_hops <= 10_000, f"must be 1..10000, got {self.every_hops}")
        _require("verifier.screen_threshold", 0.0 <= self.screen_threshold <= 1.0,
                 f"must be 0..1 (0 = every stream), got {self.screen_threshold}")
        _require("verifier.max_batch", 1 <= self.max_batch <= 1024, f"must be 1..1024, got {self.max_batch}")
        _require("verifier.max_queued", self.max_queued >= self.max_batch,
                 f"must be >= verifier.max_batch ({self.max_batch}), got {self.max_queued}")
        _require("verifier.providers", len(self.providers) > 0, "must name at least one provider")
        _require("verifier.intra_op_threads", self.intra_op_threads >= 0, "must be >= 0")


@dataclass(frozen=True)
class ZmqConfig:
    ingest_endpoint: str = field(default=DEFAULT_INGEST_ENDPOINT, metadata=_help(
        "ROUTER endpoint the clients connect to (port * = any free port, logged at start)"))
    pub_endpoint: str = field(default=DEFAULT_RESULTS_ENDPOINT, metadata=_help(
        "PUB endpoint of results and lifecycle events"))
    pub_hwm: int = field(default=2000, metadata=_help(
        "messages queued per subscriber (each at most ~5 kB with the metadata limit, so a stuck "
        "subscriber holds at most ~10 MB plus its kernel buffer); a full queue drops that subscriber's "
        "messages only, never blocks"))
    pub_sndbuf_bytes: int = field(default=0, metadata=_help(
        "kernel send buffer per subscriber connection (0 = OS default, autotuned up to a few MB); "
        "with pub_hwm it bounds what a stuck subscriber holds"))
    pub_count_drops: bool = field(default=False, metadata=_help(
        "false: each subscriber loses only its own overflow (a subscriber counts its losses as a "
        "closed summary's hops minus the results it got); true: count drops in the daemon "
        "(ZMQ_XPUB_NODROP), but while one subscriber of a topic is full, that topic's messages are "
        "dropped for all its subscribers - one stuck subscriber starves the others"))
    ingest_hwm: int = field(default=10000, metadata=_help(
        "messages queued from all clients before the transport pushes back"))
    max_message_bytes: int = field(default=1 << 20, metadata=_help(
        "larger client messages drop the connection (1 s of 48 kHz stereo f32 is 384000 bytes)"))
    receive_tick_ms: float = field(default=2.0, metadata=_help(
        "after draining the ingest socket, wait this long before looking again, so one wakeup "
        "handles every message that arrived meanwhile (adds at most this to a hop's latency; 0 = off)"))
    enabled: bool = field(default=True, metadata=_help("run the ZeroMQ ingest"))
    pub_connect: tuple[str, ...] = field(default=(), metadata=_help(
        "the results socket also connects to these endpoints, e.g. the XSUB side of `spoofwatch proxy`, "
        "so the results of every replica reach one subscriber endpoint (docs/scale-out.md); "
        "not with ZeroMQ authentication"))

    def validate(self) -> None:
        for value in self.pub_connect:
            _require("zmq.pub_connect", "://" in value, f"entries must be ZeroMQ endpoints, got {value!r}")
        for key in ("ingest_endpoint", "pub_endpoint"):
            value = getattr(self, key)
            _require(f"zmq.{key}", "://" in value, f"must be a ZeroMQ endpoint like tcp://HOST:PORT, got {value!r}")
        _require("zmq.pub_hwm", self.pub_hwm >= 1, "must be >= 1")
        _require("zmq.pub_sndbuf_bytes", self.pub_sndbuf_bytes >= 0, "must be >= 0")
        _require("zmq.ingest_hwm", self.ingest_hwm >= 1, "must be >= 1")
        _require("zmq.max_message_bytes", self.max_message_bytes >= 4096, "must be >= 4096")
        _require("zmq.receive_tick_ms", 0 <= self.receive_tick_ms <= 50, "must be 0..50")


@dataclass(frozen=True)
class WebRTCConfig:
    enabled: bool = field(default=True, metadata=_help("run the WHIP (WebRTC) ingest"))
    host: str = field(default=DEFAULT_HTTP_HOST, metadata=_help("WHIP HTTP listen address"))
    port: int = field(default=DEFAULT_HTTP_PORT, metadata=_help("WHIP HTTP port (0 = any free port)"))
    max_sessions: int = field(default=100, metadata=_help("concurrent WHIP sessions"))

    def validate(self) -> None:
        _require("webrtc.port", 0 <= self.port <= 65535, "must be 0..65535")
        _require("webrtc.max_sessions", self.max_sessions >= 1, "must be >= 1")


def _check_path(key: str, value: str) -> None:
    _require(key, value.startswith("/") and " " not in value and len(value) > 1,
             f"must be an absolute URL path like /twilio, got {value!r}")


@dataclass(frozen=True)
class WebhooksConfig:
    timeout_s: float = field(default=2.0, metadata=_help(
        "timeout of one webhook POST (connect + answer)"))
    max_attempts: int = field(default=3, metadata=_help(
        "POSTs per notification before it is given up (timeouts, connection errors, 5xx, 429 are retried)"))
    backoff_initial_s: float = field(default=0.5, metadata=_help(
        "wait before the first retry; doubled for each further retry"))
    backoff_max_s: float = field(default=5.0, metadata=_help("longest wait between retries"))
    queue_size: int = field(default=32, metadata=_help(
        "notifications waiting per call; more are dropped (counted)"))
    max_concurrent_requests: int = field(default=64, metadata=_help(
        "webhook POSTs in flight at once, all calls together"))
    allowed_url_prefixes: tuple[str, ...] = field(default=(), metadata=_help(
        "a webhook URL taken from call metadata (see the adapters' webhook_parameter) is used only "
        "when it starts with one of these, e.g. [\"https://hooks.example.com/\"]; empty = never"))

    def validate(self) -> None:
        _require("webhooks.timeout_s", 0 < self.timeout_s <= 60, "must be 0..60 (exclusive of 0)")
        _require("webhooks.max_attempts", 1 <= self.max_attempts <= 10, "must be 1..10")
        _require("webhooks.backoff_initial_s", self.backoff_initial_s >= 0, "must be >= 0")
        _require("webhooks.backoff_max_s", self.backoff_max_s >= self.backoff_initial_s,
                 "must be >= webhooks.backoff_initial_s")
        _require("webhooks.queue_size", self.queue_size >= 1, "must be >= 1")
        _require("webhooks.max_concurrent_requests", self.max_concurrent_requests >= 1, "must be >= 1")
        for prefix in self.allowed_url_prefixes:
            _require("webhooks.allowed_url_prefixes", prefix.startswith(("http://", "https://")),
                     f"entries must start with http:// or https://, got {prefix!r}")


@dataclass(frozen=True)
class AudioSocketConfig:
    enabled: bool = field(default=False, metadata=_help(
        "run the Asterisk AudioSocket ingest (TCP; docs/integrations.md)"))
    host: str = field(default="127.0.0.1", metadata=_help("AudioSocket listen address"))
    port: int = field(default=9019, metadata=_help("AudioSocket TCP port (0 = any free port)"))
    max_connections: int = field(default=500, metadata=_help("concurrent AudioSocket calls"))
    read_timeout_s: float = field(default=10.0, metadata=_help(
        "close a call's connection when no message arrived for this long"))
    webhook_url: str = field(default="", metadata=_help(
        "POST each AudioSocket call's decision changes here (empty = no webhook)"))
    allowed_peers: tuple[str, ...] = field(default=(), metadata=_help(
        "addresses or networks (CIDR) whose connections are accepted, e.g. [\"10.0.0.5\", \"10.1.0.0/16\"]; "
        "empty = any. AudioSocket carries no credentials, so with authentication on (auth.mode) a "
        "listener off loopback needs this list"))

    def validate(self) -> None:
        _require("audiosocket.port", 0 <= self.port <= 65535, "must be 0..65535")
        import ipaddress

        for peer in self.allowed_peers:
            try:
                ipaddress.ip_network(peer, strict=False)
            except ValueError:
                raise ConfigError("audiosocket.allowed_peers", f"{peer!r} is not an address or network") from None
        _require("audiosocket.max_connections", self.max_connections >= 1, "must be >= 1")
        _require("audiosocket.read_timeout_s", self.read_timeout_s > 0, "must be > 0")
        _require("audiosocket.webhook_url", self.webhook_url == "" or
                 self.webhook_url.startswith(("http://", "https://")), "must be an http(s) URL or empty")


@dataclass(frozen=True)
class TwilioConfig:
    enabled: bool = field(default=False, metadata=_help(
        "run the Twilio Media Streams ingest (WebSocket on the HTTP server at webrtc.host:webrtc.port; "
        "Telnyx and SignalWire speak the same protocol)"))
    path: str = field(default="/twilio", metadata=_help("WebSocket URL path"))
    max_connections: int = field(default=500, metadata=_help("concurrent media-stream WebSockets"))
    webhook_url: str = field(default="", metadata=_help(
        "POST each call's decision changes here (empty = no webhook)"))
    webhook_parameter: str = field(default="", metadata=_help(
        "name of a <Stream> customParameter whose value is a per-call webhook URL (used only when it "
        "matches webhooks.allowed_url_prefixes); empty = ignore call-supplied URLs"))

    def validate(self) -> None:
        _check_path("twilio.path", self.path)
        _require("twilio.max_connections", self.max_connections >= 1, "must be >= 1")
        _require("twilio.webhook_url", self.webhook_url == "" or
                 self.webhook_url.startswith(("http://", "https://")), "must be an http(s) URL or empty")


@dataclass(frozen=True)
class AudioForkConfig:
    enabled: bool = field(default=False, metadata=_help(
        "run the FreeSWITCH mod_audio_fork / jambonz listen ingest (WebSocket on the HTTP server "
        "at webrtc.host:webrtc.port)"))
    path: str = field(default="/audiofork", metadata=_help("WebSocket URL path"))
    default_sample_rate_hz: int = field(default=8000, metadata=_help(
        "rate of the L16 frames when neither the JSON preamble (sampleRate) nor the URL (?sample_rate=) says"))
    max_connections: int = field(default=500, metadata=_help("concurrent audio-fork WebSockets"))
    webhook_url: str = field(default="", metadata=_help(
        "POST each call's decision changes here (empty = no webhook)"))
    webhook_parameter: str = field(default="", metadata=_help(
        "key of the JSON preamble whose value is a per-call webhook URL (used only when it matches "
        "webhooks.allowed_url_prefixes); empty = ignore call-supplied URLs"))

    def validate(self) -> None:
        _check_path("audiofork.path", self.path)
        _require("audiofork.default_sample_rate_hz", 8000 <= self.default_sample_rate_hz <= 48000,
                 "must be 8000..48000")
        _require("audiofork.max_connections", self.max_connections >= 1, "must be >= 1")
        _require("audiofork.webhook_url", self.webhook_url == "" or
                 self.webhook_url.startswith(("http://", "https://")), "must be an http(s) URL or empty")


@dataclass(frozen=True)
class ConsoleConfig:
    enabled: bool = field(default=True, metadata=_help(
        "serve the live web console at /console/ on the HTTP server (webrtc.host:webrtc.port), "
        "which runs when webrtc, twilio, audiofork or observability is enabled"))
    max_clients: int = field(default=16, metadata=_help("browsers connected to the live feed at once"))
    client_queue_size: int = field(default=500, metadata=_help(
        "events buffered per browser; a slower browser loses events (counted), never stalls the daemon"))
    history_points: int = field(default=600, metadata=_help(
        "results kept per stream for a browser that connects mid-call"))
    max_tracked_streams: int = field(default=200, metadata=_help(
        "streams the console remembers (the oldest closed ones are forgotten first)"))

    def validate(self) -> None:
        _require("console.max_clients", self.max_clients >= 1, "must be >= 1")
        _require("console.client_queue_size", self.client_queue_size >= 10, "must be >= 10")
        _require("console.history_points", self.history_points >= 1, "must be >= 1")
        _require("console.max_tracked_streams", self.max_tracked_streams >= 1, "must be >= 1")


@dataclass(frozen=True)
class ObservabilityConfig:
    enabled: bool = field(default=True, metadata=_help(
        "serve Prometheus /metrics, /healthz (event-loop lag watchdog) and /readyz on the HTTP "
        "server at webrtc.host:webrtc.port, which then runs even when webrtc, twilio and audiofork are off"))
    lag_interval_s: float = field(default=0.25, metadata=_help(
        "the watchdog sleeps this long per tick and measures how late it wakes (the event-loop lag)"))
    lag_threshold_s: float = field(default=1.0, metadata=_help(
        "/healthz answers 503 while the worst lag within lag_window_s is at or above this"))
    lag_window_s: float = field(default=10.0, metadata=_help(
        "how long a lag spike keeps /healthz unhealthy"))

    def validate(self) -> None:
        _require("observability.lag_interval_s", 0.01 <= self.lag_interval_s <= 10, "must be 0.01..10")
        _require("observability.lag_threshold_s", self.lag_threshold_s > 0, "must be > 0")
        _require("observability.lag_window_s", self.lag_window_s >= self.lag_interval_s,
                 "must be >= observability.lag_interval_s")


@dataclass(frozen=True)
class AuthConfig:
    mode: Literal["auto", "on", "off"] = field(default="auto", metadata=_help(
        "auto: authenticate on every listener that is not on loopback; on: on every listener; "
        "off: nowhere (a trusted network, or a reverse proxy that authenticates; docs/security.md)"))
    tokens_file: str = field(default="", metadata=_help(
        "bearer tokens of the HTTP listener, one `NAME ROLE TOKEN` per line (ROLE client or monitor); "
        "required when HTTP authentication is on"))
    zmq_keys_dir: str = field(default="", metadata=_help(
        "ZeroMQ CURVE keys: server.key_secret (the daemon's key pair), clients/*.key and monitors/*.key "
        "(allowed public keys; `spoofwatch keys generate` and `spoofwatch keys add`); required when "
        "ZeroMQ authentication is on"))
    webhook_secret: str = field(default="", metadata=_help(
        "HMAC-SHA256 key signing every webhook POST (X-Spoofwatch-Signature); required for webhooks "
        "when authentication is on (set it from the environment: SPOOFWATCH__AUTH__WEBHOOK_SECRET)"))

    def validate(self) -> None:
        _require("auth.webhook_secret", self.webhook_secret == "" or len(self.webhook_secret) >= 16,
                 "must be at least 16 characters")


@dataclass(frozen=True)
class LoggingConfig:
    level: Literal["debug", "info", "warning", "error"] = field(default="info", metadata=_help(
        "lowest level logged"))
    format: Literal["auto", "json", "console"] = field(default="auto", metadata=_help(
        "auto = JSON lines unless stderr is a terminal"))


@dataclass(frozen=True)
class ShutdownConfig:
    timeout_s: float = field(default=10.0, metadata=_help(
        "on SIGTERM/SIGINT, how long draining may take before leftovers are cancelled"))
    drain_wait_s: float = field(default=0.0, metadata=_help(
        "on SIGTERM/SIGINT, first refuse new streams (/readyz 503) but keep every listener up and let "
        "the open streams end by themselves for up to this long, then drain the rest (0 = drain at "
        "once; a replica behind a load balancer sets it to about a call's length; docs/scale-out.md)"))

    def validate(self) -> None:
        _require("shutdown.timeout_s", self.timeout_s > 0, "must be > 0")
        _require("shutdown.drain_wait_s", 0 <= self.drain_wait_s <= 86400, "must be 0..86400")


@dataclass(frozen=True)
class MemoryConfig:
    trim_interval_s: float = field(default=30.0, metadata=_help(
        "every this long, hand the heap's free memory back to the system (glibc malloc_trim; well "
        "under 1 ms): without it, bursts of large inputs leave RSS higher although nothing leaks "
        "(docs/performance.md, \"Hostile input against a live daemon\"); 0 = never"))

    def validate(self) -> None:
        _require("memory.trim_interval_s", self.trim_interval_s == 0 or 0.1 <= self.trim_interval_s <= 86400,
                 "must be 0 (never) or 0.1..86400")


@dataclass(frozen=True)
class DaemonConfig:
    model: InferenceConfig = field(default_factory=InferenceConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    streams: StreamsConfig = field(default_factory=StreamsConfig)
    decision: DecisionConfig = field(default_factory=DecisionConfig)
    verifier: VerifierConfig = field(default_factory=VerifierConfig)
    zmq: ZmqConfig = field(default_factory=ZmqConfig)
    webrtc: WebRTCConfig = field(default_factory=WebRTCConfig)
    audiosocket: AudioSocketConfig = field(default_factory=AudioSocketConfig)
    twilio: TwilioConfig = field(default_factory=TwilioConfig)
    audiofork: AudioForkConfig = field(default_factory=AudioForkConfig)
    webhooks: WebhooksConfig = field(default_factory=WebhooksConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)
    observability: ObservabilityConfig = field(default_factory=ObservabilityConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    shutdown: ShutdownConfig = field(default_factory=ShutdownConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)

    def validate(self) -> None:
        for section in dataclasses.fields(self):
            check = getattr(getattr(self, section.name), "validate", None)
            if check is not None:
                check()
        if self.http_auth_required:
            _require("auth.tokens_file", bool(self.auth.tokens_file),
                     f"the HTTP listener on {self.webrtc.host} needs tokens (auth.mode = \"{self.auth.mode}\"); "
                     "make a file with `spoofwatch keys token NAME ROLE`, or set auth.mode = \"off\"")
        if self.zmq_auth_required:
            _require("zmq.pub_connect", not self.zmq.pub_connect,
                     "a results proxy forwards every stream's results to whoever subscribes, past the "
                     "per-client CURVE filter; run it on a trusted network with auth.mode = \"off\"")
            _require("auth.zmq_keys_dir", bool(self.auth.zmq_keys_dir),
                     f"ZeroMQ on {self.zmq.ingest_endpoint} / {self.zmq.pub_endpoint} needs CURVE keys "
                     f"(auth.mode = \"{self.auth.mode}\"); make them with `spoofwatch keys generate server "
                     "--dir DIR`, or set auth.mode = \"off\"")
        if self.audiosocket.enabled and self._auth_for(_loopback_host(self.audiosocket.host)):
            _require("audiosocket.allowed_peers", bool(self.audiosocket.allowed_peers),
                     f"AudioSocket on {self.audiosocket.host} has no credentials of its own: list the "
                     "gateways' addresses (authentication is on, auth.mode = "
                     f"\"{self.auth.mode}\"), or keep it on loopback")
        if self.auth_enabled_anywhere and self.webhooks_configured:
            _require("auth.webhook_secret", bool(self.auth.webhook_secret),
                     "webhooks must be signed while authentication is on; set a secret of 16+ characters")

    @property
    def graceful_stop_s(self) -> float:
        """The longest a graceful stop takes, from SIGTERM to exit (`Daemon.shutdown`, then
        `daemon.__main__.serve`): the streams may end by themselves for shutdown.drain_wait_s,
        pending webhooks get one webhooks.timeout_s, the HTTP server HTTP_SHUTDOWN_TIMEOUT_S, the
        drain shutdown.timeout_s, the results socket PUB_LINGER_S, a hung inference thread
        INFERENCE_EXIT_WAIT_S. A process manager must wait at least this long before SIGKILL
        (systemd's TimeoutStopSec, `docker stop`'s --stop-timeout; tests/test_deploy.py holds the
        shipped ones to it)."""
        webhooks_s = self.webhooks.timeout_s if self.webhooks_configured else 0.0
        return (self.shutdown.drain_wait_s + webhooks_s + HTTP_SHUTDOWN_TIMEOUT_S + self.shutdown.timeout_s
                + PUB_LINGER_S + INFERENCE_EXIT_WAIT_S)

    def _auth_for(self, loopback: bool) -> bool:
        return self.auth.mode == "on" or (self.auth.mode == "auto" and not loopback)

    @property
    def http_enabled(self) -> bool:
        return self.webrtc.enabled or self.twilio.enabled or self.audiofork.enabled or self.observability.enabled

    @property
    def http_auth_required(self) -> bool:
        from daemon.auth import is_loopback_host

        return self.http_enabled and self._auth_for(is_loopback_host(self.webrtc.host))

    @property
    def zmq_auth_required(self) -> bool:
        """CURVE on both ZeroMQ sockets when either is off loopback (or auth.mode = "on")."""
        from daemon.auth import is_loopback_endpoint

        loopback = is_loopback_endpoint(self.zmq.ingest_endpoint) and is_loopback_endpoint(self.zmq.pub_endpoint)
        return self.zmq.enabled and self._auth_for(loopback)

    @property
    def auth_enabled_anywhere(self) -> bool:
        from daemon.auth import is_loopback_endpoint, is_loopback_host

        hosts = [is_loopback_host(self.webrtc.host)] if self.http_enabled else []
        if self.audiosocket.enabled:
            hosts.append(is_loopback_host(self.audiosocket.host))
        if self.zmq.enabled:
            hosts += [is_loopback_endpoint(self.zmq.ingest_endpoint), is_loopback_endpoint(self.zmq.pub_endpoint)]
        return any(self._auth_for(loopback) for loopback in hosts)

    @property
    def webhooks_configured(self) -> bool:
        return any(s.enabled and bool(s.webhook_url or getattr(s, "webhook_parameter", ""))
                   for s in (self.audiosocket, self.twilio, self.audiofork))


def _loopback_host(host: str) -> bool:
    from daemon.auth import is_loopback_host

    return is_loopback_host(host)


def _require(key: str, ok: bool, reason: str) -> None:
    if not ok:
        raise ConfigError(key, reason)


def sections() -> dict[str, type]:
    """Section name -> its dataclass, in file order."""
    hints = typing.get_type_hints(DaemonConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(DaemonConfig)}


def section_fields(section_cls: type) -> list[tuple[dataclasses.Field[Any], Any]]:
    """(field, resolved type) of one section."""
    hints = typing.get_type_hints(section_cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(section_cls)]


def parse_text_value(text: str, kind: Any) -> Any:
    """An env/CLI value: raw text for string settings, else a TOML literal."""
    if kind is str:
        return text
    if kind is bool and text.lower() in ("1", "0", "yes", "no", "on", "off"):
        return text.lower() in ("1", "yes", "on")
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word for a Literal setting; coerce checks it


def _field_kind(section: str, key: str, source: str) -> Any:
    table = sections()
    if section not in table:
        raise ConfigError(section, f"unknown section (from {source}); known: {', '.join(table)}")
    kinds = {f.name: kind for f, kind in section_fields(table[section])}
    if key not in kinds:
        raise ConfigError(f"{section}.{key}", f"unknown setting (from {source}); known: {', '.join(kinds)}")
    return kinds[key]


def env_overrides(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """`SPOOFWATCH__SECTION__KEY=value` entries as {section: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for name, text in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if len(parts) != 2:
            raise ConfigError(name, f"environment overrides are named {ENV_PREFIX}SECTION__KEY")
        section, key = parts
        kind = _field_kind(section, key, f"environment variable {name}")
        out.setdefault(section, {})[key] = parse_text_value(text, kind)
    return out


def dotted_overrides(values: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """{"zmq.pub_hwm": "100"} (CLI flags) as {section: {key: value}}."""
    out: dict[str, dict[str, Any]] = {}
    for dotted, text in values.items():
        section, _, key = dotted.partition(".")
        kind = _field_kind(section, key, f"flag --{section}.{key.replace('_', '-')}")
        out.setdefault(section, {})[key] = parse_text_value(text, kind)
    return out


def build_config(*layers: Mapping[str, Mapping[str, Any]]) -> DaemonConfig:
    """Merge layers (later wins) over the defaults, type-check every value, validate."""
    merged: dict[str, dict[str, Any]] = {}
    for layer in layers:
        for section, values in layer.items():
            if not isinstance(values, Mapping):
                raise ConfigError(section, "must be a table of settings")
            merged.setdefault(section, {}).update(values)
    built: dict[str, Any] = {}
    table = sections()
    for section, values in merged.items():
        if section not in table:
            raise ConfigError(section, f"unknown section; known: {', '.join(table)}")
    for section, cls in table.items():
        values = merged.get(section, {})
        kinds = {f.name: kind for f, kind in section_fields(cls)}
        kwargs = {}
        for key, value in values.items():
            if key not in kinds:
                raise ConfigError(f"{section}.{key}", f"unknown setting; known: {', '.join(kinds)}")
            kwargs[key] = coerce(f"{section}.{key}", value, kinds[key])
        built[section] = cls(**kwargs)
    config = DaemonConfig(**built)
    config.validate()
    return config


def load_config(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    flags: Mapping[str, str] | None = None,
) -> DaemonConfig:
    """Defaults < TOML file < environment < CLI flags; raises `ConfigError` on anything invalid."""
    file_layer = read_toml(path) if path is not None else {}
    env_layer = env_overrides(os.environ if environ is None else environ)
    flag_layer = dotted_overrides(flags or {})
    return build_config(file_layer, env_layer, flag_layer)
