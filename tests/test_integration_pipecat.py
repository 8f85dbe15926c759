"""SpoofwatchProcessor in real Pipecat pipelines, in-process, against the real daemon (subprocess).

Audio enters through `AudioFileInputTransport` (a BaseInputTransport pushing 20 ms
InputAudioRawFrames at the pace of the audio); a recorder after the processor checks that every
frame arrives as it was sent, and collects the score frames.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from running_daemon import REPO_ROOT, RunningDaemon, daemon_process, free_port

pytest.importorskip("pipecat")

from pipecat.frames.frames import EndFrame, Frame, InputAudioRawFrame, InterruptionFrame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

from clients.client import AsyncDetectorClient
from clients.commands.send import read_audio
from clients.integrations.pipecat import (
    AudioFileInputTransport,
    SpoofAction,
    SpoofDetectedFrame,
    SpoofScoreFrame,
    SpoofwatchProcessor,
)
from clients.integrations.session import SessionConfig
from streaming_models.runtime.default_model import packaged_model_path

GENUINE = "speech/librispeech-subset/test-other/1688/1688-142285-0000.flac"
RATE = 16000
FAST: dict[str, float] = {"request_timeout_s": 0.5, "ping_interval_s": 0.25, "reconnect_initial_s": 0.1,
                          "reconnect_max_s": 0.3}


class Recorder(FrameProcessor):
    """Keeps every frame that passes, by direction, and forwards it."""

    def __init__(self) -> None:
        super().__init__()
        self.down: list[Frame] = []
        self.up: list[Frame] = []

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        (self.down if direction == FrameDirection.DOWNSTREAM else self.up).append(frame)
        await self.push_frame(frame, direction)

    def of(self, kind: type[Frame], direction: FrameDirection = FrameDirection.DOWNSTREAM) -> list[Frame]:
        frames = self.down if direction == FrameDirection.DOWNSTREAM else self.up
        return [f for f in frames if isinstance(f, kind)]

    def scores(self, direction: FrameDirection = FrameDirection.DOWNSTREAM) -> list[SpoofScoreFrame]:
        return [f for f in self.of(SpoofScoreFrame, direction) if isinstance(f, SpoofScoreFrame)]


def speechlike(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def build(
    transport: AudioFileInputTransport, processor: SpoofwatchProcessor
) -> tuple[PipelineWorker, Recorder, Recorder]:
    before, after = Recorder(), Recorder()
    worker = PipelineWorker(
        Pipeline([transport, before, processor, after]),
        params=PipelineParams(audio_in_sample_rate=RATE), cancel_on_idle_timeout=False,
    )
    return worker, before, after


async def run(worker: PipelineWorker) -> None:
    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


def assert_audio_passed_untouched(transport: AudioFileInputTransport, after: Recorder) -> None:
    arrived = after.of(InputAudioRawFrame)
    assert len(arrived) == len(transport.sent) > 0
    assert all(a is s for a, s in zip(arrived, transport.sent, strict=True))  # the same frames, in order
    assert b"".join(f.audio for f in arrived if isinstance(f, InputAudioRawFrame)) == b"".join(
        f.audio for f in transport.sent)


async def wait_until(condition: object, timeout_s: float, what: str) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.02)
    assert condition(), what  # type: ignore[operator]


@pytest.fixture(scope="module")
def default_daemon() -> Iterator[RunningDaemon]:
    with daemon_process(packaged_model_path()) as running:
        yield running


@pytest.mark.slow
async def test_genuine_and_synthetic_clips_through_a_real_pipeline(
    default_daemon: RunningDaemon, shared_data: Path, espeak_clip: Path
) -> None:
    config = SessionConfig(default_daemon.ingest_endpoint, default_daemon.results_endpoint)
    genuine_samples, _ = read_audio(shared_data / GENUINE, RATE)
    genuine = AudioFileInputTransport(genuine_samples[: 6 * RATE], RATE)
    synthetic = AudioFileInputTransport.from_file(espeak_clip, RATE)
    genuine_proc = SpoofwatchProcessor(session_id="pc-genuine", participant="alice", config=config)
    synthetic_proc = SpoofwatchProcessor(session_id="pc-synthetic", participant="mallory", config=config)
    genuine_worker, _, genuine_out = build(genuine, genuine_proc)
    synthetic_worker, _, synthetic_out = build(synthetic, synthetic_proc)

    async with AsyncDetectorClient(default_daemon.ingest_endpoint, default_daemon.results_endpoint) as tap:
        lifecycle = tap.subscribe(["pc-genuine", "pc-synthetic"], timeout_s=20, until_closed=True)
        await asyncio.sleep(0.3)
        await asyncio.gather(run(genuine_worker), run(synthetic_worker))  # both end with their files
        events = [m async for m in lifecycle if m["type"] != "result"]

    for transport, out in ((genuine, genuine_out), (synthetic, synthetic_out)):
        assert_audio_passed_untouched(transport, out)
        scores = out.scores()
        assert [s.seq for s in scores] == list(range(len(scores)))
        assert len(scores) == round(len(transport.sent) * 0.02 / 0.1)  # every 100 ms hop, the last included
        assert not any(s.stale for s in scores)
        assert all(s.latency_s is not None and 0 < s.latency_s < 1.0 for s in scores)
        assert all(0.0 <= (s.p_spoof or 0) <= 1.0 and 0.0 <= (s.p_codec or 0) <= 1.0 for s in scores)
        assert scores[-1].t_end_s == pytest.approx(len(scores) * 0.1)

    genuine_decisions = {s.decision for s in genuine_out.scores()}
    assert genuine_decisions <= {"undecided", "bonafide"} and "bonafide" in genuine_decisions
    assert not genuine_out.of(SpoofDetectedFrame)
    detected = synthetic_out.of(SpoofDetectedFrame)
    assert len(detected) == 1 and isinstance(detected[0], SpoofDetectedFrame)
    assert detected[0].score.decision == "spoof" and detected[0].score.t_end_s < 5.0
    assert synthetic_out.scores()[-1].decision == "spoof"

    opened = {m["stream_id"]: m["metadata"] for m in events if m["type"] == "opened"}
    assert opened["pc-genuine"] == {"session_id": "pc-genuine", "integration": "pipecat", "participant": "alice"}
    closed = {m["stream_id"]: m for m in events if m["type"] == "closed"}
    assert closed["pc-synthetic"]["reason"] == "client"
    assert closed["pc-synthetic"]["summary"]["final_decision"] == "spoof"
    assert closed["pc-genuine"]["summary"]["final_decision"] == "bonafide"


@pytest.mark.slow
async def test_daemon_loss_marks_scores_stale_and_the_processor_reconnects(tiny_model: tuple[Path, Path]) -> None:
    ingest, results = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    transport = AudioFileInputTransport(speechlike(30.0), RATE, end_when_done=False)
    processor = SpoofwatchProcessor(session_id="pc-loss", config=SessionConfig(ingest, results, **FAST))
    worker, _, out = build(transport, processor)
    pipeline: asyncio.Task[None] | None = None
    with daemon_process(tiny_model[0], ingest=ingest, results=results) as first:
        pipeline = asyncio.create_task(run(worker))
        await wait_until(lambda: len(out.scores()) >= 3, 10, "scores from the first daemon")
        first.process.kill()  # a crash: no `closed` event, no replies
        first.process.wait()
    await wait_until(lambda: any(s.stale for s in out.scores()), 5, "a stale mark")
    stale = next(s for s in out.scores() if s.stale)
    assert stale.stream_id == "pc-loss" and stale.p_spoof is not None and processor.stale
    frames_at_loss = len(out.of(InputAudioRawFrame))
    await asyncio.sleep(1.0)
    assert len(out.of(InputAudioRawFrame)) >= frames_at_loss + 40  # audio kept flowing: 1 s of 20 ms frames
    assert not pipeline.done()

    with daemon_process(tiny_model[0], ingest=ingest, results=results):
        await wait_until(lambda: out.scores()[-1].stream_id.startswith("pc-loss.r") and not out.scores()[-1].stale,
                         15, "fresh scores after reconnection")
        assert not processor.stale and processor.session.stats.reconnects >= 1
        await worker.queue_frame(EndFrame())
        await asyncio.wait_for(pipeline, 10)
    assert_audio_passed_untouched(transport, out)
    fresh = [s for s in out.scores() if s.stream_id != "pc-loss"]
    assert [s.seq for s in fresh][:3] == [0, 1, 2]  # a new stream on the new daemon
    assert fresh[0].t_start_s > stale.t_end_s  # session time goes on across streams


@pytest.mark.parametrize("action", ["end_call", "interrupt"])
async def test_spoof_action(tiny_model: tuple[Path, Path], action: SpoofAction) -> None:
    always_spoof = ("--decision.thresholds", "config", "--decision.spoof-enter", "0.0", "--decision.spoof-exit", "0.0")
    with daemon_process(tiny_model[0], extra=always_spoof) as daemon:
        transport = AudioFileInputTransport(speechlike(20.0), RATE, end_when_done=False)
        processor = SpoofwatchProcessor(
            session_id=f"pc-{action}", on_spoof=action, score_direction=FrameDirection.UPSTREAM,
            config=SessionConfig(daemon.ingest_endpoint, daemon.results_endpoint),
        )
        events: list[SpoofDetectedFrame] = []

        @processor.event_handler("on_spoof")
        async def on_spoof(_: SpoofwatchProcessor, frame: SpoofDetectedFrame) -> None:
            events.append(frame)

        worker, before, after = build(transport, processor)
        pipeline = asyncio.create_task(run(worker))
        if action == "end_call":
            await asyncio.wait_for(pipeline, 10)  # the processor ended the call by itself
            assert not transport.done.is_set()
        else:
            await wait_until(lambda: bool(after.of(InterruptionFrame)), 10, "an interruption")
            await asyncio.sleep(0.3)
            assert not pipeline.done()
            await worker.queue_frame(EndFrame())
            await asyncio.wait_for(pipeline, 10)
            assert before.of(InterruptionFrame, FrameDirection.UPSTREAM)
    assert len(events) == 1 and events[0].score.decision == "spoof"
    assert before.of(SpoofDetectedFrame, FrameDirection.UPSTREAM) and not after.of(SpoofDetectedFrame)
    assert before.scores(FrameDirection.UPSTREAM) and not after.scores()  # scores went upstream, as configured
    assert_audio_passed_untouched(transport, after)


async def test_without_a_daemon_audio_still_flows_and_scores_are_stale() -> None:
    ingest, results = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    transport = AudioFileInputTransport(speechlike(1.5), RATE)
    processor = SpoofwatchProcessor(session_id="pc-nodaemon", config=SessionConfig(ingest, results, **FAST))
    worker, _, out = build(transport, processor)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await asyncio.wait_for(run(worker), 10)
    assert loop.time() - started < 3.0  # 1.5 s of audio, paced; nothing waited for the daemon
    assert_audio_passed_untouched(transport, out)
    scores = out.scores()
    assert len(scores) == 1 and scores[0].stale and scores[0].p_spoof is None and scores[0].decision == "undecided"
    assert processor.session.stats.frames_submitted == len(transport.sent)


def test_example_bot_ends_the_call_on_spoof(tiny_model: tuple[Path, Path], tmp_path: Path) -> None:
    import soundfile

    wav = tmp_path / "caller.wav"
    soundfile.write(str(wav), speechlike(10.0), RATE)
    always_spoof = ("--decision.thresholds", "config", "--decision.spoof-enter", "0.0", "--decision.spoof-exit", "0.0")
    with daemon_process(tiny_model[0], extra=always_spoof) as daemon:
        result = subprocess.run(
            [sys.executable, "examples/pipecat_bot.py", str(wav), "--end-call", "--session-id", "example-bot",
             "--endpoint", daemon.ingest_endpoint, "--results-endpoint", daemon.results_endpoint],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "undecided -> spoof" in result.stdout and "synthetic voice" in result.stdout
    assert "final: spoof" in result.stdout  # ended by the processor, long before the 10 s file
