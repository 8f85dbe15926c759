"""Latency through the voice-assistant integrations: a frame entering the integration -> its score.

Starts the daemon (the default model unless `--model`, loopback ZeroMQ), then per integration
plays a clip in real time, `--sessions` sessions at once:

- pipecat: a real Pipecat pipeline, `AudioFileInputTransport` (20 ms `InputAudioRawFrame`s,
  16 kHz) -> `SpoofwatchProcessor` -> a sink; the latency of a hop is from the frame carrying
  its last sample entering `process_frame` to its `SpoofScoreFrame` being pushed;
- livekit: `SpoofwatchDetector.score_stream` fed 10 ms `rtc.AudioFrame`s at `--livekit-rate`
  (default 16 kHz, the rate the plugin asks `rtc.AudioStream` for; 48 kHz is LiveKit's native
  rate, which the daemon resamples); from the frame entering the adapter to the `score` event.

It prints p50/p90/p99/max over every scored hop, the hop count, and how long the frame path
itself took per audio frame in the Pipecat processor (what the pipeline waits for).

    python benchmarks/integration_latency.py                      # both, 1 session, 20 s
    python benchmarks/integration_latency.py --sessions 8 --seconds 30 --only pipecat
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import numpy.typing as npt

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from clients.commands.send import read_audio
from clients.integrations.session import Score, SessionConfig
from clients.local_daemon import daemon_command, free_port, stop_process, wait_for_pong
from streaming_models.paths import shared_data_dir
from streaming_models.runtime.default_model import packaged_model_path

GENUINE = "speech/librispeech-subset/test-other/1688/1688-142285-0000.flac"


def clip(args: argparse.Namespace, rate_hz: int) -> npt.NDArray[np.float32]:
    """`--audio`, or the shared LibriSpeech utterance, or a speech-like tone; looped to `--seconds`."""
    path = args.audio or (shared_data_dir() / GENUINE)
    if Path(path).is_file():
        samples, _ = read_audio(Path(path), rate_hz)
    else:
        t = np.arange(rate_hz * 5) / rate_hz
        samples = (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    repeats = int(np.ceil(args.seconds * rate_hz / len(samples)))
    return np.tile(samples, repeats)[: int(args.seconds * rate_hz)]


def summary(name: str, latencies_s: list[float], extra: str = "") -> str:
    ms = np.asarray(latencies_s) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return (f"{name:8s} hops {len(ms):5d}  p50 {p50:6.1f} ms  p90 {p90:6.1f} ms  p99 {p99:6.1f} ms  "
            f"max {ms.max():6.1f} ms{extra}")


async def run_pipecat(args: argparse.Namespace, config: SessionConfig) -> str:
    from pipecat.frames.frames import Frame, InputAudioRawFrame
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    from clients.integrations.pipecat import (
        AudioFileInputTransport,
        SpoofScoreFrame,
        SpoofwatchProcessor,
    )

    class TimedProcessor(SpoofwatchProcessor):
        frame_path_s: ClassVar[list[float]] = []

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            started = time.perf_counter()
            await super().process_frame(frame, direction)
            if isinstance(frame, InputAudioRawFrame):
                self.frame_path_s.append(time.perf_counter() - started)

    class Sink(FrameProcessor):
        def __init__(self) -> None:
            super().__init__()
            self.latencies: list[float] = []

        async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
            await super().process_frame(frame, direction)
            if isinstance(frame, SpoofScoreFrame) and frame.latency_s is not None and not frame.stale:
                self.latencies.append(frame.latency_s)
            await self.push_frame(frame, direction)

    audio = clip(args, 16000)
    runner = WorkerRunner(handle_sigint=False)
    sinks = []
    for index in range(args.sessions):
        sink = Sink()
        sinks.append(sink)
        pipeline = Pipeline([AudioFileInputTransport(audio, 16000),
                             TimedProcessor(session_id=f"bench-pipecat-{index}", config=config), sink])
        await runner.add_workers(PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=16000),
                                                cancel_on_idle_timeout=False))
    await runner.run()
    path_us = np.asarray(TimedProcessor.frame_path_s) * 1e6
    return summary("pipecat", [x for s in sinks for x in s.latencies],
                   f"  (frame path p50 {np.percentile(path_us, 50):.0f} us, p99 {np.percentile(path_us, 99):.0f} us)")


async def run_livekit(args: argparse.Namespace, config: SessionConfig) -> str:
    from livekit import rtc

    from clients.integrations.livekit import SpoofwatchDetector

    rate_hz = args.livekit_rate
    pcm = (np.clip(clip(args, rate_hz), -1, 1) * 32767).astype("<i2")
    latencies: list[float] = []

    def on_score(score: Score, identity: str) -> None:
        if score.latency_s is not None:
            latencies.append(score.latency_s)

    async def frames() -> object:
        per_frame = rate_hz // 100
        loop = asyncio.get_running_loop()
        started = loop.time()
        for index in range(len(pcm) // per_frame):
            delay = started + index * 0.01 - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            yield rtc.AudioFrame(pcm[index * per_frame : (index + 1) * per_frame].tobytes(), rate_hz, 1, per_frame)

    detector = SpoofwatchDetector(config=config, publish="none")
    detector.on("score", on_score)
    await asyncio.gather(*(detector.score_stream(frames(), f"caller-{i}", session_id=f"bench-livekit-{i}")  # type: ignore[arg-type]
                           for i in range(args.sessions)))
    return summary("livekit", latencies, f"  ({rate_hz} Hz frames)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=packaged_model_path())
    parser.add_argument("--audio", type=Path, default=None, help="clip to play (default: the shared LibriSpeech one)")
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per session (default 20)")
    parser.add_argument("--sessions", type=int, default=1, help="concurrent sessions (default 1)")
    parser.add_argument("--livekit-rate", type=int, default=16000, help="rate of the LiveKit frames (default 16000)")
    parser.add_argument("--only", choices=("pipecat", "livekit"), default=None)
    args = parser.parse_args()

    ingest, results = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
    process = subprocess.Popen(daemon_command(args.model, ingest, results), cwd=REPO_ROOT)
    try:
        wait_for_pong(ingest, process)
        config = SessionConfig(ingest, results)
        print(f"{args.sessions} session(s) x {args.seconds:.0f} s, model {args.model.name}")
        for name, runner in (("pipecat", run_pipecat), ("livekit", run_livekit)):
            if args.only in (None, name):
                print(asyncio.run(runner(args, config)), flush=True)
    finally:
        stop_process(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
