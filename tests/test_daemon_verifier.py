"""The second tier in the daemon (daemon/verifier.py): the [verifier] settings, loading the model,
each stream's window, the batcher that never holds the streaming path up, and a real daemon with a
tiny real verifier publishing the verifier's scores and the fused p_spoof."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq.asyncio
from daemon_harness import Client, Subscriber, is_event, running_daemon, wait_subscribed
from daemon_harness import settings as harness_settings

from daemon.__main__ import main
from daemon.app import Daemon
from daemon.config import VerifierConfig, build_config, load_config
from daemon.errors import ConfigError
from daemon.metrics import DaemonMetrics
from daemon.stream_api import AudioChunk, StreamSpec
from daemon.verifier import (
    VerifierBatcher,
    VerifierError,
    VerifierScore,
    VerifierTrack,
    load_verifier,
)
from daemon.wire.frames import AudioFormat
from daemon.wire.pcm import encode_samples
from daemon.wire.zmq_messages import AudioMessage, CloseMessage, OpenMessage
from streaming_models.runtime.fusion import fuse_log_odds_mean_scalar
from streaming_models.runtime.model_format import ModelMetadata, StateSpec
from streaming_models.runtime.onnx_backend import OnnxBackend
from streaming_models.runtime.verifier_format import VerifierMetadata
from streaming_models.runtime.verifier_onnx import OnnxVerifier

REPO = Path(__file__).resolve().parent.parent
HOP = 1600  # the tiny streaming model: 100 ms at 16 kHz
F16 = AudioFormat("pcm_f32le", 16000, 1)
CPU = ["CPUExecutionProvider"]
VERIFIER_KEYS = ("p_spoof_verifier", "p_codec_verifier", "verifier_t_end_s", "p_spoof_fused")
STREAMING = ModelMetadata("stream", 16000, HOP, (StateSpec("s_in", "s_out", (1,)),))


def _audio(hops: int, seed: int = 0) -> np.ndarray:
    """Speech-like audio whose level and spectrum change from second to second, so windows differ."""
    rng = np.random.default_rng(seed)
    n = hops * HOP
    t = np.arange(n) / 16000
    level = 0.05 + 0.3 * (np.floor(t * 1.7) % 3) / 2
    tone = np.sin(2 * np.pi * (150 + 60 * np.floor(t * 2.3)) * t)
    return (level * (tone + 0.3 * rng.standard_normal(n))).astype(np.float32)


def _verifier_settings(path: Path, **changes: Any) -> dict[str, Any]:
    return {"enabled": True, "path": str(path), "window_s": 1.0, "every_hops": 3, "providers": CPU,
            "max_batch": 4, "max_queued": 16, **changes}


def _windows_total(daemon: Any, outcome: str) -> float:
    value = daemon.metrics.registry.get_sample_value("spoofwatch_verifier_windows_total", {"outcome": outcome})
    return float(value) if value is not None else 0.0


# ---- settings -----------------------------------------------------------------------------------

@pytest.mark.parametrize("file_text,env,key,needle", [
    ("[verifier]\nenabled = true\n", {}, "verifier.path", "must name the verifier's ONNX file"),
    ("[verifier]\nwindow_s = 0\n", {}, "verifier.window_s", "(0, 30]"),
    ("[verifier]\nwindow_s = 31\n", {}, "verifier.window_s", "(0, 30]"),
    ("[verifier]\nevery_hops = 0\n", {}, "verifier.every_hops", "1..10000"),
    ("[verifier]\nscreen_threshold = 1.5\n", {}, "verifier.screen_threshold", "0..1"),
    ("[verifier]\nscreen_threshold = -0.1\n", {}, "verifier.screen_threshold", "0..1"),
    ("[verifier]\nfusion = \"max\"\n", {}, "verifier.fusion", "log_odds_mean"),
    ("[verifier]\nmax_batch = 0\n", {}, "verifier.max_batch", "1..1024"),
    ("[verifier]\nmax_batch = 8\nmax_queued = 4\n", {}, "verifier.max_queued", ">= verifier.max_batch"),
    ("[verifier]\nproviders = []\n", {}, "verifier.providers", "at least one provider"),
    ("[verifier]\nintra_op_threads = -1\n", {}, "verifier.intra_op_threads", ">= 0"),
    ("[verifier]\nenabled = \"yes\"\n", {}, "verifier.enabled", "true or false"),
    ("[verifier]\nwindow = 4\n", {}, "verifier.window", "unknown setting; known: enabled, path, window_s"),
    ("", {"SPOOFWATCH__VERIFIER__EVERY_HOPS": "0"}, "verifier.every_hops", "1..10000"),
    ("", {"SPOOFWATCH__VERIFIER__TURBO": "1"}, "verifier.turbo", "unknown setting (from environment variable"),
])
def test_invalid_verifier_settings_are_refused_naming_the_key(tmp_path: Path, file_text: str, env: dict[str, str],
                                                              key: str, needle: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(file_text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env)
    assert info.value.key == key
    assert needle in info.value.reason
    assert key in str(info.value)


def test_verifier_settings_layer_like_every_other_section(tmp_path: Path) -> None:
    assert load_config(None, {}).verifier == VerifierConfig() and not VerifierConfig().enabled
    config = load_config(None, {"SPOOFWATCH__VERIFIER__SCREEN_THRESHOLD": "0.6"},
                         {"verifier.every_hops": "20", "verifier.window_s": "8"})
    assert (config.verifier.screen_threshold, config.verifier.every_hops, config.verifier.window_s) == (0.6, 20, 8.0)
    example = REPO / "configs" / "verifier-daemon.toml"
    shipped = load_config(example, {})
    assert shipped.verifier.enabled and shipped.verifier.screen_threshold == 0.5


def test_serve_refuses_a_verifier_it_cannot_run(tmp_path: Path, tiny_verifier: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--verifier.enabled", "true"]) == 2
    assert "verifier.path" in capsys.readouterr().err

    def serve(*flags: str) -> subprocess.CompletedProcess[str]:  # past the config, serve sets up logging: its own process
        return subprocess.run([sys.executable, "-m", "daemon", "--verifier.enabled", "true", "--webrtc.enabled", "false",
                               "--zmq.ingest-endpoint", "tcp://127.0.0.1:*", "--zmq.pub-endpoint", "tcp://127.0.0.1:*",
                               "--verifier.providers", '["CPUExecutionProvider"]', *flags],
                              check=False, cwd=REPO, capture_output=True, text=True, timeout=120)

    missing = tmp_path / "absent.onnx"
    run = serve("--verifier.path", str(missing))
    assert run.returncode == 3 and f"verifier.path: no such file {missing}" in run.stderr
    # a window the model cannot take is the setting's fault: exit 2, naming it
    run = serve("--verifier.path", str(tiny_verifier), "--verifier.window-s", "5")
    assert run.returncode == 2
    assert "verifier.window_s: 5.0 s is longer than the verifier tiny-verifier takes (3 s)" in run.stderr


def test_loading_checks_the_file_against_the_streaming_model_and_the_window(
        tmp_path: Path, tiny_verifier: Path, tiny_model: tuple[Path, Path]) -> None:
    config = VerifierConfig(**_verifier_settings(tiny_verifier))
    assert load_verifier(config, STREAMING).metadata.model_id == "tiny-verifier"
    with pytest.raises(VerifierError, match="verifier.path: no such file"):
        load_verifier(VerifierConfig(**_verifier_settings(tmp_path / "absent.onnx")), STREAMING)
    relative = load_verifier(VerifierConfig(**_verifier_settings(Path(tiny_verifier.name))), STREAMING,
                             cwd=tiny_verifier.parent)
    assert relative.metadata.window_s == 1.0
    with pytest.raises(VerifierError, match="verifier.path: .*a streaming detector"):
        load_verifier(VerifierConfig(**_verifier_settings(tiny_model[0])), STREAMING)
    with pytest.raises(ConfigError, match="verifier.window_s: 3.5 s is longer than .* takes \\(3 s\\)"):
        load_verifier(VerifierConfig(**_verifier_settings(tiny_verifier, window_s=3.5)), STREAMING)
    with pytest.raises(ConfigError, match="shorter than one hop"):
        load_verifier(VerifierConfig(**_verifier_settings(tiny_verifier, window_s=0.05)), STREAMING)
    eight_khz = ModelMetadata("stream8k", 8000, 800, STREAMING.states)
    with pytest.raises(VerifierError, match="takes 16000 Hz audio, the streaming model stream8k cuts 8000 Hz"):
        load_verifier(config, eight_khz)


# ---- one stream's window ------------------------------------------------------------------------

def test_a_track_keeps_the_latest_window_and_pads_a_short_stream_at_its_end() -> None:
    track = VerifierTrack(window_samples=2500, every_hops=2, screen_threshold=0.0)
    audio = _audio(4)
    assert not track.add_hop(audio[:HOP], 0.1)  # hop 1
    assert np.array_equal(track.window(), np.concatenate([audio[:HOP], np.zeros(900, np.float32)]))
    assert track.add_hop(audio[HOP:2 * HOP], 0.1)  # hop 2: due
    assert np.array_equal(track.window(), audio[2 * HOP - 2500:2 * HOP])
    assert not track.add_hop(audio[2 * HOP:3 * HOP], 0.1)
    assert track.add_hop(audio[3 * HOP:], 0.1)
    window = track.window()
    assert np.array_equal(window, audio[-2500:])
    window[:] = 0  # a copy: the ring goes on
    assert np.array_equal(track.window(), audio[-2500:])
    short = VerifierTrack(window_samples=1000, every_hops=1, screen_threshold=0.0)  # a hop longer than the window
    short.add_hop(audio[:HOP], 0.1)
    assert np.array_equal(short.window(), audio[HOP - 1000:HOP])


def test_screening_lets_a_stream_in_once_its_p_spoof_reaches_the_threshold_and_keeps_it_in() -> None:
    track = VerifierTrack(window_samples=HOP, every_hops=2, screen_threshold=0.6)
    hop = np.zeros(HOP, np.float32)
    due = [track.add_hop(hop, p) for p in (0.1, 0.5, 0.59, 0.2, 0.6, 0.1, 0.0, 0.3)]
    # hops 2 and 4 are due by count, but the stream is not screened in until hop 5 (0.6 >= 0.6)
    assert due == [False, False, False, False, False, True, False, True]
    assert track.screened_in


# ---- the batcher ----------------------------------------------------------------------------------

class GatedScorer:
    """A verifier that holds every call until `gate` is set (a verifier far behind real time)."""

    def __init__(self) -> None:
        self.metadata = VerifierMetadata("gated", window_s=0.2, max_window_s=30.0)
        self.gate = threading.Event()
        self.calls: list[int] = []

    def run(self, windows: np.ndarray) -> np.ndarray:
        self.gate.wait(timeout=30)
        self.calls.append(len(windows))
        return np.tile(np.array([[0.9, 0.2]], np.float32), (len(windows), 1))


async def test_a_verifier_that_falls_behind_drops_windows_instead_of_queueing_them() -> None:
    scorer = GatedScorer()
    daemon_metrics = DaemonMetrics()
    metrics = daemon_metrics.watch_verifier()
    config = VerifierConfig(window_s=0.2, every_hops=1, max_batch=2, max_queued=4)
    batcher = VerifierBatcher(scorer, config, None, metrics)
    task = asyncio.create_task(batcher.run())
    try:
        tracks = [batcher.open_track() for _ in range(10)]
        hop = np.full(HOP, 0.1, np.float32)
        for track in tracks[:2]:  # the first call takes these two and then hangs on the gate
            assert track.add_hop(hop, 0.5)
            assert batcher.offer(track, 0.1)
        await asyncio.sleep(0.05)
        assert batcher.waiting == 0
        for round_ in range(3):  # three windows of each stream while the verifier is stuck
            for track in tracks:
                track.add_hop(hop, 0.5)
                batcher.offer(track, 0.2 + 0.1 * round_)
            assert batcher.waiting <= config.max_queued  # bounded, never growing with the backlog
        assert batcher.waiting == 4
        counts = {o: metrics.windows.labels(o)._value.get() for o in ("dropped_backlog", "superseded", "scored")}
        # round 1: 4 queued, 6 dropped; rounds 2 and 3: the 4 waiting streams' newer windows replace theirs
        assert counts == {"dropped_backlog": 18, "superseded": 8, "scored": 0}
        assert daemon_metrics.registry.get_sample_value("spoofwatch_verifier_queued") == 4  # read at scrape time
        scorer.gate.set()
        for _ in range(100):
            if batcher.waiting == 0 and metrics.windows.labels("scored")._value.get() == 6:
                break
            await asyncio.sleep(0.02)
        assert metrics.windows.labels("scored")._value.get() == 6
        assert scorer.calls == [2, 2, 2]  # max_batch windows per call
        # the first two streams' first windows, then the four that held a place in line, each with its newest
        assert [t.latest.t_end_s if t.latest else None for t in tracks] == [pytest.approx(0.4)] * 4 + [None] * 6
        assert tracks[0].latest == VerifierScore(pytest.approx(0.9), pytest.approx(0.2), pytest.approx(0.4))
        batcher.release(tracks[0])
        assert not batcher.offer(tracks[0], 9.9)  # a closed stream's windows are not taken
    finally:
        scorer.gate.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# ---- a real daemon ----------------------------------------------------------------------------------

@pytest.fixture
def context() -> Any:
    ctx = zmq.asyncio.Context()
    yield ctx
    ctx.destroy(linger=0)


async def _stream_over_zmq(daemon: Any, context: Any, stream_id: str, audio: np.ndarray,
                           settle: bool = True) -> list[dict[str, Any]]:
    """Send `audio` as 100 ms messages, wait for the verifier to finish what it was given (`settle`),
    close; the stream's results in order."""
    client = Client(context, daemon.state.endpoints["ingest"])
    sub = Subscriber(context, daemon.state.endpoints["pub"])
    try:
        await wait_subscribed(client, sub, F16)
        await client.request(OpenMessage(stream_id, F16).to_frames())
        for seq, start in enumerate(range(0, len(audio), HOP)):
            await client.send(AudioMessage(stream_id, seq, encode_samples(audio[start:start + HOP], F16)).to_frames())
            if settle:  # as a live stream would: the verifier keeps up, each window is scored before the next
                hop_index = seq
                await sub.until(lambda m, i=hop_index: is_event(stream_id, "result")(m) and m["seq"] == i)
                while daemon.verifier is not None and daemon.verifier.busy:
                    await asyncio.sleep(0.005)
        await client.request(CloseMessage(stream_id).to_frames())
        await sub.until(is_event(stream_id, "closed"), timeout=20)
        return sub.of(stream_id, "result")
    finally:
        client.close()
        sub.close()


def _fused_bounds(p_stream: float, p_verifier: float) -> tuple[float, float]:
    """The rule applied to published values, which are rounded to 6 decimals (as is its result):
    the rule rises with both inputs, so the exact value lies between these."""
    half = 5e-7
    return (fuse_log_odds_mean_scalar(p_stream - half, p_verifier - half) - half,
            fuse_log_odds_mean_scalar(p_stream + half, p_verifier + half) + half)


def _offline_window(audio: np.ndarray, t_end_s: float, window: int) -> np.ndarray:
    end = round(t_end_s * 16000)
    chunk = audio[max(0, end - window):end]
    return np.concatenate([chunk, np.zeros(window - len(chunk), np.float32)])


async def test_results_carry_the_verifier_every_n_hops_and_the_fused_p_spoof(
        tiny_model: tuple[Path, Path], tiny_verifier: Path, context: Any) -> None:
    audio = _audio(25)
    every = 3
    async with running_daemon(tiny_model[0], verifier=_verifier_settings(tiny_verifier, every_hops=every)) as daemon:
        results = await _stream_over_zmq(daemon, context, "v1", audio)
        scored = _windows_total(daemon, "scored")
    assert [r["seq"] for r in results] == list(range(25))
    assert all(set(VERIFIER_KEYS) <= set(r) for r in results)
    # windows at hops 3, 6, ..., 24 (every `every` hops), each scored before the next hop arrived
    assert scored == 25 // every
    # the window of the k-th hop is published from the next hop on (it is queued as hop k's result leaves)
    assert [r["verifier_t_end_s"] for r in results] == [
        None if seq < every else round(0.1 * every * (seq // every), 6) for seq in range(25)]
    offline = OnnxVerifier(tiny_verifier, providers=CPU)
    window = offline.metadata.samples(1.0)
    scores = {}
    for r in results:
        if r["verifier_t_end_s"] is None:
            assert r["p_spoof_verifier"] is None and r["p_codec_verifier"] is None
            assert r["p_spoof_fused"] == r["p_spoof"]  # the streaming score alone before the first window
            continue
        scores[r["verifier_t_end_s"]] = (r["p_spoof_verifier"], r["p_codec_verifier"])
        assert _fused_bounds(r["p_spoof"], r["p_spoof_verifier"])[0] <= r["p_spoof_fused"] \
            <= _fused_bounds(r["p_spoof"], r["p_spoof_verifier"])[1]
    assert len(scores) == 25 // every
    for t_end, (p_spoof, p_codec) in scores.items():
        # the window the daemon scored is the stream's audio up to that hop, zero-padded while short
        expected = offline.run(_offline_window(audio, t_end, window)[None])[0]
        assert (p_spoof, p_codec) == pytest.approx(tuple(expected), abs=2e-6)
    assert len({round(p, 4) for p, _ in scores.values()}) > 1  # different audio, different scores
    assert all(r["p_spoof"] != r["p_spoof_fused"] for r in results if r["p_spoof_verifier"] is not None)


async def test_screening_scores_only_streams_that_reached_the_threshold(
        tiny_model: tuple[Path, Path], tiny_verifier: Path, context: Any) -> None:
    audio = _audio(24, seed=3)
    async with running_daemon(tiny_model[0], verifier=_verifier_settings(tiny_verifier, every_hops=2)) as daemon:
        unscreened = await _stream_over_zmq(daemon, context, "all", audio)
    p_spoof = [r["p_spoof"] for r in unscreened]
    # a threshold first reached at hop k (1-based): windows then come at the even hops from k on
    k = next(i + 1 for i in range(4, len(p_spoof)) if p_spoof[i] > max(p_spoof[:i]) + 1e-5)
    threshold = p_spoof[k - 1] - 2e-6
    async with running_daemon(tiny_model[0], verifier=_verifier_settings(
            tiny_verifier, every_hops=2, screen_threshold=threshold)) as daemon:
        screened = await _stream_over_zmq(daemon, context, "screened", audio)
        scored = _windows_total(daemon, "scored")
    assert [r["p_spoof"] for r in screened] == p_spoof  # the streaming path is the same
    first_window_hop = k + (k % 2)
    assert scored == len([h for h in range(first_window_hop, 25, 2)])
    ends = [r["verifier_t_end_s"] for r in screened]
    assert ends[:first_window_hop] == [None] * first_window_hop
    assert ends[first_window_hop] == pytest.approx(0.1 * first_window_hop)
    # nobody reaches 1.0: no window is ever scored, the fused value is the streaming one
    async with running_daemon(tiny_model[0], verifier=_verifier_settings(
            tiny_verifier, every_hops=2, screen_threshold=1.0)) as daemon:
        never = await _stream_over_zmq(daemon, context, "never", audio)
        assert _windows_total(daemon, "scored") == 0
    assert all(r["p_spoof_verifier"] is None and r["p_spoof_fused"] == r["p_spoof"] for r in never)


async def test_a_stuck_verifier_never_holds_up_the_streaming_results(tiny_model: tuple[Path, Path]) -> None:
    scorer = GatedScorer()
    settings = _verifier_settings(Path("unused.onnx"), window_s=0.2, every_hops=1, max_batch=1, max_queued=2)
    config = build_config(harness_settings(verifier=settings))
    daemon = Daemon(config, OnnxBackend(tiny_model[0], providers=CPU), verifier=scorer)
    await daemon.start()
    try:
        assert daemon.hub is not None
        streams = [await daemon.hub.open(StreamSpec(f"s{i}", 16000, "test", {})) for i in range(4)]
        feeds = [s.events() for s in streams]
        audio = _audio(20)
        for start in range(0, len(audio), HOP):
            for stream in streams:
                await stream.push(AudioChunk(audio[start:start + HOP], None))
        for stream in streams:
            await stream.close("client")
        messages = [[m async for m in feed] for feed in feeds]
        for stream_messages in messages:
            results = [m for m in stream_messages if m["type"] == "result"]
            assert [r["seq"] for r in results] == list(range(20))  # every hop scored and published
            assert all(r["p_spoof_verifier"] is None and r["p_spoof_fused"] == r["p_spoof"] for r in results)
        assert daemon.verifier is not None and daemon.verifier.waiting == 0  # closed streams' windows are let go
        dropped = _windows_total(daemon, "dropped_backlog") + _windows_total(daemon, "superseded")
        assert dropped == 4 * 20 - 3  # one call in flight, two queued; every other window dropped
        text = daemon.metrics.render().decode()
        assert 'spoofwatch_verifier_windows_total{outcome="dropped_backlog"}' in text
    finally:
        scorer.gate.set()
        await daemon.shutdown()


async def test_with_the_verifier_off_results_are_as_before(tiny_model: tuple[Path, Path], context: Any) -> None:
    async with running_daemon(tiny_model[0]) as daemon:
        assert daemon.verifier is None and daemon.metrics.verifier is None
        results = await _stream_over_zmq(daemon, context, "off", _audio(5), settle=False)
        text = daemon.metrics.render().decode()
    assert len(results) == 5
    assert all(not set(VERIFIER_KEYS) & set(r) for r in results)
    assert set(results[0]) == {"v", "type", "stream_id", "seq", "t_start_s", "t_end_s", "p_spoof", "p_codec",
                               "p_spoof_smooth", "p_codec_smooth", "decision", "model_id", "latency_ms", "metadata"}
    assert "spoofwatch_verifier" not in text


async def test_the_client_library_reads_the_verifier_fields(tiny_model: tuple[Path, Path], tiny_verifier: Path) -> None:
    from clients.integrations.session import Score, ScoringSession, SessionConfig

    pcm = (np.clip(_audio(30), -1, 1) * 32767).astype("<i2").tobytes()
    for verifier_on in (True, False):
        extra = {"verifier": _verifier_settings(tiny_verifier, every_hops=5)} if verifier_on else {}
        async with running_daemon(tiny_model[0], **extra) as daemon:
            scores: list[Score] = []

            async def on_score(score: Score, scores: list[Score] = scores) -> None:
                scores.append(score)

            config = SessionConfig(daemon.state.endpoints["ingest"], daemon.state.endpoints["pub"])
            session = ScoringSession(f"client-{verifier_on}", on_score, config=config)
            session.start()
            for start in range(0, len(pcm), 640):  # 20 ms frames, a little faster than real time
                session.submit(pcm[start:start + 640], 16000)
                await asyncio.sleep(0.005)
            async with asyncio.timeout(20):
                while len(scores) < 30:
                    await asyncio.sleep(0.05)
            await session.stop()
        if verifier_on:
            assert all(s.p_spoof_fused is not None for s in scores)
            verified = [s for s in scores if s.p_spoof_verifier is not None]
            assert verified and all(s.p_codec_verifier is not None and s.p_spoof_fused != s.p_spoof for s in verified)
            assert scores[0].p_spoof_verifier is None and scores[0].p_spoof_fused == scores[0].p_spoof
        else:
            assert all(s.p_spoof_verifier is None and s.p_codec_verifier is None and s.p_spoof_fused is None
                       for s in scores)
