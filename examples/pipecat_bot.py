"""A minimal Pipecat voice bot guarded by spoofwatch.

    spoofwatch serve &                                   # the daemon, default endpoints
    python examples/pipecat_bot.py call.wav              # play a recording as the caller's audio
    python examples/pipecat_bot.py --mic                 # the local microphone (pipecat-ai[local])

The pipeline is `input -> SpoofwatchProcessor -> CallGuard`; a real bot puts its STT, LLM and
TTS services after the processor (they receive the user's audio frames untouched). `CallGuard`
stands in for them: it prints every decision change and, when the processor detects a
synthetic voice, what the bot would do. With `--end-call` the processor ends the pipeline itself.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from pipecat.frames.frames import Frame
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clients.client import DEFAULT_INGEST_ENDPOINT, DEFAULT_RESULTS_ENDPOINT
from clients.integrations.pipecat import (
    AudioFileInputTransport,
    SpoofDetectedFrame,
    SpoofScoreFrame,
    SpoofwatchProcessor,
)

RATE_HZ = 16000


class CallGuard(FrameProcessor):
    """Where the bot's services would be: reacts to the score frames, forwards everything."""

    def __init__(self) -> None:
        super().__init__()
        self.decision = "undecided"

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, SpoofScoreFrame):
            if frame.stale:
                print("spoofwatch: daemon unreachable, scores are stale (reconnecting)", flush=True)
            elif frame.decision != self.decision:
                print(f"{frame.t_end_s:6.1f} s  {self.decision} -> {frame.decision}  "
                      f"(p_spoof {frame.p_spoof_smooth:.2f}, p_codec {frame.p_codec_smooth:.2f}, "
                      f"score {1000 * (frame.latency_s or 0):.0f} ms after its audio)", flush=True)
                self.decision = frame.decision
        elif isinstance(frame, SpoofDetectedFrame):
            print(f"{frame.score.t_end_s:6.1f} s  synthetic voice: the bot would hand over to a human "
                  "or ask for a call-back", flush=True)
        await self.push_frame(frame, direction)


def input_transport(args: argparse.Namespace) -> FrameProcessor:
    if args.mic:
        from pipecat.transports.local.audio import LocalAudioTransport, LocalAudioTransportParams

        return LocalAudioTransport(LocalAudioTransportParams(audio_in_enabled=True)).input()
    return AudioFileInputTransport.from_file(args.file, RATE_HZ)


async def run(args: argparse.Namespace) -> None:
    spoofwatch = SpoofwatchProcessor(
        session_id=args.session_id, endpoint=args.endpoint, results_endpoint=args.results_endpoint,
        on_spoof="end_call" if args.end_call else "event",
    )
    pipeline = Pipeline([input_transport(args), spoofwatch, CallGuard()])
    runner = WorkerRunner(handle_sigint=args.mic)
    await runner.add_workers(PipelineWorker(pipeline, params=PipelineParams(audio_in_sample_rate=RATE_HZ)))
    await runner.run()
    last = spoofwatch.last_score
    print(f"final: {last.decision if last else 'no score'} ({spoofwatch.session.stats.scores} hops scored)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, help="audio file played as the caller")
    source.add_argument("--mic", action="store_true", help="the local microphone (needs pipecat-ai[local])")
    parser.add_argument("--end-call", action="store_true", help="end the pipeline on a spoof decision")
    parser.add_argument("--session-id", default=None)
    parser.add_argument("--endpoint", default=DEFAULT_INGEST_ENDPOINT)
    parser.add_argument("--results-endpoint", default=DEFAULT_RESULTS_ENDPOINT)
    asyncio.run(run(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
