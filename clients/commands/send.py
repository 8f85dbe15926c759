"""`spoofwatch send FILE | --mic`: stream audio to the daemon and show its results.

Over ZeroMQ (default) the audio is encoded as `--encoding` at the file's rate (or
`--rate`), cut into 20 ms messages and sent as fast as possible, or at the pace of
the audio with `--realtime`. Over WebRTC (`--via webrtc`, WHIP) it is sent as Opus,
always in real time. Results are shown as a live meter (or JSON lines with
`--json`) until the daemon publishes the stream's `closed` summary.

Over ZeroMQ a daemon restart does not end the run: the client reconnects with backoff and
reopens the stream as `<id>~1` (its metadata records `resumed_from`), and at the end `send`
reports the audio that was not scored in the gap (`--no-reconnect` fails instead).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from clients.client import (
    AsyncDetectorClient,
    AsyncStream,
    DaemonReplyError,
    ReconnectPolicy,
    ResultSubscription,
)
from clients.commands.options import (
    add_curve_keys,
    add_ingest_endpoint,
    add_results_endpoint,
    curve_credentials,
    parse_metadata,
)
from clients.meter import Meter
from daemon.wire.endpoints import DEFAULT_WHIP_URL
from daemon.wire.frames import ENCODINGS, MAX_SAMPLE_RATE_HZ, MIN_SAMPLE_RATE_HZ

PORTAUDIO_HINT = (
    "microphone input needs PortAudio and the sounddevice package: "
    "`apt-get install libportaudio2` (Debian) and `pip install sounddevice` (extra `mic`)"
)
MIC_BLOCK_MS = 20
SUBSCRIBE_SETTLE_S = 0.2  # a ZeroMQ subscription needs a moment to reach the daemon


class SendError(Exception):
    """A problem the user can fix (bad file, missing PortAudio, daemon not running)."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoofwatch send", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("file", nargs="?", type=Path, help="audio file (anything libsndfile reads: wav, flac, ogg...)")
    source.add_argument("--mic", action="store_true", help="stream the default microphone until Ctrl-C")
    parser.add_argument("--via", choices=("zmq", "webrtc"), default="zmq", help="transport (default zmq)")
    parser.add_argument("--realtime", action="store_true", help="pace the file at real time (zmq)")
    parser.add_argument("--stream-id", default=None, help="stream id (default: a random one)")
    parser.add_argument("--encoding", choices=ENCODINGS, default="pcm_s16le", help="zmq payload encoding")
    parser.add_argument("--rate", type=int, default=None, metavar="HZ",
                        help="resample to this rate before sending (default: the file's rate; mic: 16000)")
    parser.add_argument("--seconds", type=float, default=None, help="--mic: stop after this many seconds")
    parser.add_argument("--meta", action="append", default=[], metavar="KEY=VALUE", help="stream metadata")
    parser.add_argument("--json", action="store_true", help="print every result message as a JSON line")
    parser.add_argument("--timeout", type=float, default=10.0, metavar="S",
                        help="give up when the daemon is silent this long (default 10)")
    parser.add_argument("--no-reconnect", action="store_true",
                        help="zmq: fail when the daemon restarts instead of reopening the stream")
    parser.add_argument("--reconnect-for", type=float, default=60.0, metavar="S",
                        help="zmq: give up reopening the stream after this long without a daemon (default 60)")
    add_ingest_endpoint(parser)
    add_results_endpoint(parser)
    add_curve_keys(parser)
    parser.add_argument("--whip-url", default=DEFAULT_WHIP_URL, help=f"WHIP endpoint (default {DEFAULT_WHIP_URL})")
    parser.add_argument("--token", default=os.environ.get("SPOOFWATCH_TOKEN"),
                        help="webrtc: bearer token of the daemon's HTTP listener (default: $SPOOFWATCH_TOKEN)")
    return parser


def read_audio(path: Path, rate_hz: int | None) -> tuple[npt.NDArray[np.float32], int]:
    """A file as mono float32, resampled to `rate_hz` when given."""
    import soundfile

    try:
        data, file_rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
        raise SendError(f"cannot read {path}: {exc}") from exc
    samples = data.mean(axis=1, dtype=np.float32)
    if samples.size == 0:
        raise SendError(f"{path} holds no audio")
    if rate_hz is not None and rate_hz != file_rate:
        import soxr

        samples = soxr.resample(samples, file_rate, rate_hz).astype(np.float32)
        file_rate = rate_hz
    if not MIN_SAMPLE_RATE_HZ <= file_rate <= MAX_SAMPLE_RATE_HZ:
        raise SendError(
            f"{path} is at {file_rate} Hz; the daemon takes {MIN_SAMPLE_RATE_HZ}..{MAX_SAMPLE_RATE_HZ} Hz "
            "(pass --rate to resample)"
        )
    return samples, int(file_rate)


def import_sounddevice() -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:  # OSError: the PortAudio library itself is missing
        raise SendError(f"{PORTAUDIO_HINT} ({exc})") from exc
    return sounddevice


class Reporter:
    """Shows result messages (meter or JSON lines) and remembers the closing summary."""

    def __init__(self, as_json: bool) -> None:
        self._json = as_json
        self._meter = None if as_json else Meter(sys.stdout)
        self.closed: dict[str, Any] | None = None
        self.results = 0

    def show(self, message: dict[str, Any]) -> None:
        if message.get("type") == "result":
            self.results += 1
        if message.get("type") == "closed":
            self.closed = message
        if self._meter is None:
            print(json.dumps(message, separators=(",", ":")), flush=True)
        else:
            self._meter.update(message)

    def final(self) -> int:
        if self._json:
            return 0 if self.closed is not None else 1
        if self.closed is None:
            print(f"no closing summary received ({self.results} results)", file=sys.stderr)
            return 1
        summary = self.closed.get("summary") or {}
        print(
            f"{self.closed['stream_id']}: {summary.get('final_decision')} after {summary.get('audio_s', 0):.1f} s "
            f"({summary.get('hops')} hops; p_spoof mean {summary.get('p_spoof_mean')}, "
            f"max {summary.get('p_spoof_max')}; p_codec mean {summary.get('p_codec_mean')}, "
            f"max {summary.get('p_codec_max')})"
        )
        return 0


async def collect(subscription: ResultSubscription, reporter: Reporter) -> None:
    async for message in subscription:
        reporter.show(message)


async def send_zmq(args: argparse.Namespace, stream_id: str, metadata: dict[str, str]) -> int:
    reporter = Reporter(args.json)
    policy = ReconnectPolicy(enabled=not args.no_reconnect, give_up_after_s=args.reconnect_for)
    stream: AsyncStream | None = None
    async with AsyncDetectorClient(args.endpoint, args.results_endpoint, timeout_s=args.timeout,
                                   reconnect=policy, curve=args.curve) as client:
        subscription = client.subscribe([stream_id], timeout_s=args.timeout, until_closed=True)
        await asyncio.sleep(SUBSCRIBE_SETTLE_S)
        results = asyncio.create_task(collect(subscription, reporter))
        try:
            if args.mic:
                rate_hz = args.rate or 16000
                stream = await client.open_stream(
                    stream_id, encoding=args.encoding, sample_rate_hz=rate_hz, metadata=metadata
                )
                await stream_microphone(stream.send, rate_hz, args.seconds)
            else:
                samples, rate_hz = read_audio(args.file, args.rate)
                stream = await client.open_stream(
                    stream_id, encoding=args.encoding, sample_rate_hz=rate_hz, metadata=metadata
                )
                await stream.send(samples, realtime=args.realtime)
            await stream.close()
            await results
        except TimeoutError as exc:
            raise SendError(f"{exc}; is `spoofwatch serve` running?") from exc
        except ConnectionError as exc:
            raise SendError(str(exc)) from exc
        finally:
            results.cancel()
            await asyncio.gather(results, return_exceptions=True)
    for gap in stream.gaps if stream is not None else []:
        print(f"the daemon restarted: stream {gap.previous_stream_id} continued as {gap.stream_id} after "
              f"{gap.reopened_after_s:.1f} s; {gap.seconds:.2f} s of audio ({gap.frames} messages) not scored",
              file=sys.stderr)
    return reporter.final()


async def stream_microphone(send: Any, rate_hz: int, seconds: float | None) -> None:
    sounddevice = import_sounddevice()
    loop = asyncio.get_running_loop()
    blocks: asyncio.Queue[npt.NDArray[np.float32]] = asyncio.Queue(maxsize=500)
    dropped = 0

    def on_block(indata: Any, frames: int, when: Any, status: Any) -> None:
        block = np.array(indata[:, 0], dtype=np.float32)
        loop.call_soon_threadsafe(enqueue, block)

    def enqueue(block: npt.NDArray[np.float32]) -> None:
        nonlocal dropped
        if blocks.full():  # the sender fell behind: drop the block rather than grow without bound
            dropped += 1
        else:
            blocks.put_nowait(block)

    deadline = None if seconds is None else time.monotonic() + seconds
    try:
        with sounddevice.InputStream(
            samplerate=rate_hz, channels=1, dtype="float32",
            blocksize=rate_hz * MIC_BLOCK_MS // 1000, callback=on_block,
        ):
            print("listening; Ctrl-C to stop", file=sys.stderr)
            while deadline is None or time.monotonic() < deadline:
                try:
                    block = await asyncio.wait_for(blocks.get(), 1.0)
                except TimeoutError:
                    continue
                await send(block)
    except sounddevice.PortAudioError as exc:
        raise SendError(f"microphone error: {exc}") from exc
    except asyncio.CancelledError:
        pass
    finally:
        if dropped:
            print(f"warning: {dropped} microphone blocks of {MIC_BLOCK_MS} ms dropped (sending fell behind)",
                  file=sys.stderr)


async def send_webrtc(args: argparse.Namespace, stream_id: str, metadata: dict[str, str]) -> int:
    from clients.whip import WhipError, whip_send

    if args.mic:
        raise SendError("--mic is only supported with --via zmq")
    samples, rate_hz = read_audio(args.file, args.rate)
    reporter = Reporter(args.json)
    try:
        await whip_send(
            args.whip_url, samples, rate_hz, stream_id=stream_id, metadata=metadata,
            on_event=reporter.show, closed_timeout_s=args.timeout, token=args.token,
        )
    except WhipError as exc:
        raise SendError(str(exc)) from exc
    except OSError as exc:
        raise SendError(f"cannot reach {args.whip_url}: {exc}; is `spoofwatch serve` running?") from exc
    return reporter.final()


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from daemon.logsetup import configure_logging

    # the client library's warnings (a lost connection, a reopened stream) go to stderr, never
    # into the results on stdout
    configure_logging("warning", "console")
    args.curve = curve_credentials(parser, args)
    try:
        metadata = parse_metadata(args.meta)
    except argparse.ArgumentTypeError as exc:
        parser.error(str(exc))
    stream_id = args.stream_id or f"send-{uuid.uuid4().hex[:8]}"
    runner = send_webrtc if args.via == "webrtc" else send_zmq
    try:
        return asyncio.run(runner(args, stream_id, metadata))
    except SendError as exc:
        print(f"spoofwatch send: {exc}", file=sys.stderr)
        return 1
    except DaemonReplyError as exc:
        print(f"spoofwatch send: the daemon refused: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
