"""`spoofwatch demo`: start the daemon on the default model and stream demo audio through it live.

No audio ships with the project, so the clips are made at run time:
- a spoof: a sentence synthesized with espeak-ng (Debian package `espeak-ng`);
- a genuine utterance: one LibriSpeech test-other recording from the shared data
  (`SPOOFWATCH_SHARED_DATA`, default ../shared/data), when that folder exists.
Both are streamed at the same time, in real time, over ZeroMQ (8 kHz µ-law, like a
phone call), with the live meter; a summary per clip follows.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clients.client import AsyncDetectorClient, DaemonReplyError
from clients.commands.send import SendError, read_audio
from clients.local_daemon import daemon_command, free_port, stop_process
from clients.meter import Meter
from daemon.wire.endpoints import DEFAULT_RESULTS_ENDPOINT
from streaming_models.paths import shared_data_dir
from streaming_models.runtime.default_model import DEFAULT_MODEL, find_model

SPOOF_TEXT = (
    "Hello, this is your bank calling. We noticed an unusual payment on your account. "
    "Please confirm your card number so that we can stop it."
)
GENUINE_DIR = "speech/librispeech-subset/test-other"
GENUINE_UTTERANCE = "1688/1688-142285-0000.flac"  # a fixed choice, so every demo run is comparable
MAX_CLIP_S = 10.0
SEND_RATE_HZ = 8000
SUBSCRIBE_SETTLE_S = 0.3


class DemoError(Exception):
    """Something the user can fix; the message says what."""


@dataclass(frozen=True)
class DemoClip:
    stream_id: str
    label: str  # what the clip really is, shown next to the detector's verdict
    samples: npt.NDArray[np.float32]
    sample_rate_hz: int


def demo_model(path: str) -> Path:
    found = find_model(path)
    if found is not None:
        return found
    raise DemoError(
        f"the model {path} does not exist. The demo runs the default model, which is produced by "
        "training and exporting the detector (`spoofwatch train`, then `spoofwatch export`); "
        "or pass --model PATH to an exported .onnx file."
    )


def espeak_clip(workdir: Path) -> DemoClip:
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        raise DemoError("espeak-ng is not installed (Debian package espeak-ng: `apt-get install espeak-ng`)")
    wav = workdir / "espeak.wav"
    try:
        subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(wav), SPOOF_TEXT],
                       check=True, capture_output=True, timeout=60)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        raise DemoError(f"espeak-ng failed: {exc}") from exc
    samples, rate = read_audio(wav, SEND_RATE_HZ)
    return DemoClip("demo-spoof-espeak", "SPOOF: synthetic speech (espeak-ng formant synthesizer)",
                    samples[: int(MAX_CLIP_S * rate)], rate)


def genuine_clip(data_dir: Path) -> DemoClip | None:
    path = data_dir / GENUINE_DIR / GENUINE_UTTERANCE
    if not path.is_file():
        candidates = sorted((data_dir / GENUINE_DIR).glob("*/*.flac"))
        if not candidates:
            return None
        path = candidates[0]
    samples, rate = read_audio(path, SEND_RATE_HZ)
    return DemoClip("demo-genuine-librispeech", f"GENUINE: real read speech (LibriSpeech test-other {path.stem})",
                    samples[: int(MAX_CLIP_S * rate)], rate)


def start_daemon(model: Path, ingest: str, results: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(daemon_command(model, ingest, results))


async def wait_for_daemon(client: AsyncDetectorClient, process: subprocess.Popen[bytes] | None) -> None:
    for _ in range(60):
        if process is not None and process.poll() is not None:
            raise DemoError(f"the daemon exited with status {process.returncode} (see its messages above)")
        try:
            await client.ping()
            return
        except TimeoutError:
            continue
    raise DemoError(f"the daemon at {client.endpoint} does not answer")


async def stream_clip(client: AsyncDetectorClient, clip: DemoClip) -> None:
    stream = await client.open_stream(clip.stream_id, encoding="mulaw", sample_rate_hz=clip.sample_rate_hz,
                                      metadata={"demo": clip.label})
    await stream.send(clip.samples, realtime=True)
    await stream.close()


async def run_demo(clips: list[DemoClip], ingest: str, results: str, process: subprocess.Popen[bytes] | None) -> int:
    meter = Meter(sys.stdout)
    closed: dict[str, dict[str, Any]] = {}
    async with AsyncDetectorClient(ingest, results, timeout_s=1.0) as client:
        await wait_for_daemon(client, process)
        client.timeout_s = 10.0
        subscription = client.subscribe([c.stream_id for c in clips], timeout_s=30.0, until_closed=True)
        await asyncio.sleep(SUBSCRIBE_SETTLE_S)
        for clip in clips:
            print(f"{clip.stream_id}: {clip.label}, {len(clip.samples) / clip.sample_rate_hz:.1f} s")
        print()
        senders = asyncio.gather(*(stream_clip(client, clip) for clip in clips))
        async for message in subscription:
            meter.update(message)
            if message.get("type") == "closed":
                closed[message["stream_id"]] = message.get("summary") or {}
        await senders
    print("\nsummary (what each clip really is, and what the detector said):")
    for clip in clips:
        summary = closed.get(clip.stream_id, {})
        print(
            f"  {clip.stream_id:<26} {clip.label}\n"
            f"  {'':<26} decision: {summary.get('final_decision', '?')}, "
            f"p_spoof mean {fmt(summary.get('p_spoof_mean'))} max {fmt(summary.get('p_spoof_max'))}, "
            f"p_codec mean {fmt(summary.get('p_codec_mean'))}, {summary.get('hops', 0)} hops"
        )
    return 0 if len(closed) == len(clips) else 1


def fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoofwatch demo", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL, help=f"exported model (default {DEFAULT_MODEL})")
    parser.add_argument("--endpoint", default=None, help="use a running daemon's ingest instead of starting one")
    parser.add_argument("--results-endpoint", default=DEFAULT_RESULTS_ENDPOINT, help="with --endpoint: its PUB socket")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    process: subprocess.Popen[bytes] | None = None
    try:
        model = None if args.endpoint else demo_model(args.model)
        with tempfile.TemporaryDirectory(prefix="spoofwatch-demo-") as workdir:
            clips = [espeak_clip(Path(workdir))]
            genuine = genuine_clip(shared_data_dir())
            if genuine is None:
                print(f"(no shared data at {shared_data_dir()}: streaming only the synthetic clip)")
            else:
                clips.insert(0, genuine)
        if args.endpoint:
            ingest, results = args.endpoint, args.results_endpoint
        else:
            assert model is not None
            ingest, results = f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}"
            print(f"starting the daemon on {model}")
            process = start_daemon(model, ingest, results)
        return asyncio.run(run_demo(clips, ingest, results, process))
    except (DemoError, SendError) as exc:
        print(f"spoofwatch demo: {exc}", file=sys.stderr)
        return 1
    except DaemonReplyError as exc:
        print(f"spoofwatch demo: the daemon refused: {exc}", file=sys.stderr)
        return 1
    except TimeoutError as exc:
        print(f"spoofwatch demo: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        if process is not None:
            stop_process(process)
