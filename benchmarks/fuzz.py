"""Fuzz a live daemon through every ingress, with a control stream after each batch.

    python benchmarks/fuzz.py --cases 100000 --max-seconds 3600
    python benchmarks/fuzz.py --cases 2000 --model PATH --seed 7
    python benchmarks/fuzz.py --cases 10000 --set memory.trim_interval_s=0   # without the heap trim

Starts `python -m daemon` on free loopback ports (ZeroMQ, HTTP with WHIP, Twilio, audio-fork and
the console, AudioSocket; authentication off, as on loopback) and sends seeded random malformed
inputs, spread over the ingresses: ZeroMQ messages (random frames, mutated JSON headers, deep
nesting, huge numbers, wrong types, oversized metadata, audio for unknown streams), Twilio and
audio-fork WebSocket frames (mutated events, bad base64, odd binary frames), AudioSocket frames
(random kinds and lengths, truncated headers), WHIP offers (mutated and truncated SDP, wrong
content types, huge bodies, DELETEs of made-up sessions) and other HTTP requests.

After each batch of `--batch` cases a control stream (1 s of audio over ZeroMQ) must be scored in
full: every hop's result and its `closed` summary reach a subscriber. Loopback only.

Counted and printed: cases per ingress; crashes (the daemon exited); hangs (a ZeroMQ ping, an HTTP
request or a WebSocket ping unanswered within `--timeout`); lost control results; outcomes by
reason (ZeroMQ error codes, WebSocket close codes, HTTP statuses); the daemon's own refusal
counts by reason (from /metrics); the daemon's RSS from /proc before (after `--warmup` cases that
are not counted, so first-use allocations and the bounded stores filling up, such as the console's
200 tracked streams, are not taken for growth) and after the run, with the RSS slope over the run's
second half. Exit status 0 when
there were no crashes, hangs or lost control results and RSS grew at most `--max-rss-growth`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import aiohttp
import numpy as np
import zmq
import zmq.asyncio

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from clients.local_daemon import free_port, stop_process, wait_for_pong
from daemon.wire.frames import AudioFormat
from daemon.wire.results import decode_pub
from daemon.wire.zmq_messages import (
    AudioMessage,
    CloseMessage,
    ErrorReply,
    OpenMessage,
    PingMessage,
    PongReply,
    parse_reply,
)
from streaming_models.runtime.default_model import packaged_model_path

INGRESSES = ("zmq", "twilio", "audiofork", "audiosocket", "whip", "http")
NESTED = "[" * 2000 + "]" * 2000
F16 = AudioFormat("pcm_f32le", 16000, 1)


@dataclass
class Tally:
    cases: Counter[str] = field(default_factory=Counter)
    outcomes: Counter[str] = field(default_factory=Counter)
    hangs: list[str] = field(default_factory=list)
    crashes: int = 0
    control_streams: int = 0
    control_lost: int = 0
    rss_samples: list[tuple[int, int]] = field(default_factory=list)  # (cases so far, RSS KiB) per batch


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# ---------------------------------------------------------------- mutators


def junk(rng: random.Random, limit: int = 512) -> bytes:
    return rng.randbytes(rng.randint(0, limit))


def weird_value(rng: random.Random) -> Any:
    return rng.choice([None, True, -1, 0, 2**70, 1e308, -1e308, "", "x" * rng.randint(1, 3000), [], {},
                       [1, [2, [3]]], {"a": {"b": {}}}, "\u0000", "é" * 50, 3.5, "NaN", "Infinity"])


def mutate_object(rng: random.Random, obj: dict[str, Any]) -> dict[str, Any]:
    out = json.loads(json.dumps(obj))
    for _ in range(rng.randint(1, 3)):
        target = out
        keys = list(target)
        if keys and rng.random() < 0.5 and isinstance(target[(k := rng.choice(keys))], dict):
            target = target[k]
            keys = list(target)
        action = rng.random()
        if keys and action < 0.4:
            target[rng.choice(keys)] = weird_value(rng)
        elif keys and action < 0.6:
            del target[rng.choice(keys)]
        else:
            target[rng.choice(["x", "event", "type", "v", "k" * rng.randint(1, 200)])] = weird_value(rng)
    return out


def text_variant(rng: random.Random, text: str) -> str:
    choice = rng.random()
    if choice < 0.1:
        return NESTED
    if choice < 0.2:
        return text[: rng.randint(0, len(text))]  # truncated
    if choice < 0.25:
        return text.replace("}", "," + '"n":' + "9" * rng.randint(20, 5000) + "}", 1)
    if choice < 0.3:
        return text.replace("8000", rng.choice(["1e400", "-1", "Infinity", "0", "8000.5"]))
    return text


# ---------------------------------------------------------------- the ingresses


class Fuzzer:
    def __init__(self, args: argparse.Namespace, ports: dict[str, int], pid: int) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.ports = ports
        self.pid = pid
        self.tally = Tally()
        self.context = zmq.asyncio.Context()
        self.http = f"http://127.0.0.1:{ports['http']}"
        self.ingest = f"tcp://127.0.0.1:{ports['ingest']}"
        self.results = f"tcp://127.0.0.1:{ports['results']}"
        self.session: aiohttp.ClientSession | None = None
        self.dealer: Any = None
        self.case_no = 0

    async def __aenter__(self) -> Self:
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.args.timeout))
        self.dealer = self._dealer()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.session is not None
        await self.session.close()
        self.dealer.close(linger=0)
        self.context.destroy(linger=0)

    def _dealer(self) -> Any:
        dealer = self.context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(self.ingest)
        return dealer

    def outcome(self, ingress: str, what: str) -> None:
        self.tally.outcomes[f"{ingress} {what}"] += 1

    async def run_case(self) -> None:
        ingress = self.rng.choice(self.args.ingress)
        self.case_no += 1
        self.tally.cases[ingress] += 1
        handler: Callable[[], Awaitable[None]] = getattr(self, f"fuzz_{ingress}")
        try:
            await handler()
        except TimeoutError:
            self.tally.hangs.append(f"case {self.case_no} ({ingress})")
        except (aiohttp.ClientError, ConnectionError, OSError) as exc:  # the daemon cut us off: an outcome
            self.outcome(ingress, f"connection {type(exc).__name__}")

    # ZeroMQ: random frames and mutated requests; every case ends with a ping that must be answered
    async def fuzz_zmq(self) -> None:
        rng = self.rng
        sid = f"fz-{self.case_no}"
        valid = {"v": 1, "type": "open", "stream_id": sid, "encoding": "pcm_s16le", "sample_rate_hz": 8000,
                 "channels": 1, "metadata": {"k": "v"}}
        kind = rng.random()
        if kind < 0.25:
            frames = [junk(rng) for _ in range(rng.randint(1, 4))]
        elif kind < 0.5:
            frames = [json.dumps(mutate_object(rng, valid)).encode()]
        elif kind < 0.6:
            frames = [text_variant(rng, json.dumps(valid)).encode()]
        elif kind < 0.75:
            frames = [json.dumps({"v": 1, "type": "audio", "stream_id": sid, "seq": rng.choice([0, -1, 2**64])})
                      .encode(), junk(rng, 4000)]
        elif kind < 0.85:
            frames = [json.dumps(mutate_object(rng, {"v": 1, "type": rng.choice(["close", "ping", "audio"]),
                                                     "stream_id": sid, "seq": 1})).encode(), junk(rng, 64)]
        else:  # a valid open, hostile audio, a close
            frames = OpenMessage(sid, AudioFormat("pcm_s16le", 8000, 1)).to_frames()
            await self.dealer.send_multipart(frames)
            frames = AudioMessage(sid, rng.randint(0, 5), junk(rng, 2000)).to_frames()
            await self.dealer.send_multipart(frames)
            frames = CloseMessage(sid).to_frames()
        await self.dealer.send_multipart(frames)
        await self.dealer.send_multipart(PingMessage().to_frames())
        async with asyncio.timeout(self.args.timeout):
            while True:
                reply = parse_reply(await self.dealer.recv_multipart())
                if isinstance(reply, ErrorReply):
                    self.outcome("zmq", f"error {reply.code}")
                elif isinstance(reply, PongReply):
                    return
                else:
                    self.outcome("zmq", type(reply).__name__.removesuffix("Reply").lower())

    async def _websocket(self, ingress: str, path: str, messages: list[str | bytes]) -> None:
        assert self.session is not None
        async with self.session.ws_connect(f"{self.http.replace('http', 'ws')}{path}", autoping=False) as ws:
            for message in messages:
                if ws.closed:
                    break
                await (ws.send_str(message) if isinstance(message, str) else ws.send_bytes(message))
            if not ws.closed:
                await ws.ping()
            async with asyncio.timeout(self.args.timeout):
                while True:
                    reply = await ws.receive()
                    if reply.type == aiohttp.WSMsgType.PONG:
                        self.outcome(ingress, "open")
                        return
                    if reply.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                        self.outcome(ingress, f"close {ws.close_code}")
                        return
                    if reply.type == aiohttp.WSMsgType.ERROR:
                        self.outcome(ingress, "ws error")
                        return

    async def fuzz_twilio(self) -> None:
        rng = self.rng
        sid = f"MZfz{self.case_no}"
        start = {"event": "start", "streamSid": sid, "start": {
            "streamSid": sid, "callSid": "CA" + sid, "tracks": ["inbound"],
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}
        media = {"event": "media", "streamSid": sid, "media": {
            "track": "inbound", "chunk": "1", "timestamp": "0", "payload": base64.b64encode(bytes(160)).decode()}}
        messages: list[str | bytes] = [json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})]
        messages.append(json.dumps(mutate_object(rng, start)) if rng.random() < 0.4 else json.dumps(start))
        for _ in range(rng.randint(0, 4)):
            roll = rng.random()
            if roll < 0.4:
                messages.append(json.dumps(mutate_object(rng, media)))
            elif roll < 0.6:
                messages.append(text_variant(rng, json.dumps(media)))
            elif roll < 0.7:
                messages.append(junk(rng))
            else:
                messages.append(json.dumps(media))
        if rng.random() < 0.5:
            messages.append(json.dumps({"event": "stop", "streamSid": sid}))
        await self._websocket("twilio", "/twilio", messages)

    async def fuzz_audiofork(self) -> None:
        rng = self.rng
        preamble = {"uuid": f"af-{self.case_no}", "sampleRate": 8000, "mixType": "mono", "metadata": {"a": "b"}}
        first = (json.dumps(mutate_object(rng, preamble)) if rng.random() < 0.5
                 else text_variant(rng, json.dumps(preamble)))
        messages: list[str | bytes] = [first]
        for _ in range(rng.randint(0, 4)):
            messages.append(junk(rng, 2000) if rng.random() < 0.8 else text_variant(rng, json.dumps(preamble)))
        query = rng.choice(["", "?sample_rate=16000", "?sample_rate=1e400", "?sample_rate=-5", "?mix_type=zz"])
        await self._websocket("audiofork", "/audiofork" + query, messages)

    async def fuzz_audiosocket(self) -> None:
        rng = self.rng
        reader, writer = await asyncio.open_connection("127.0.0.1", self.ports["audiosocket"])
        try:
            frames = []
            if rng.random() < 0.6:
                frames.append(struct.pack(">BH", 0x01, 16) + rng.randbytes(16))  # a UUID first
            for _ in range(rng.randint(1, 5)):
                kind = rng.choice([0x00, 0x01, 0x03, 0x10, 0x11, 0x12, 0x13, 0x16, 0xFF, rng.randint(0, 255)])
                payload = junk(rng, 1200)
                length = len(payload) if rng.random() < 0.8 else rng.randint(0, 65535)
                frame = struct.pack(">BH", kind, length) + payload
                frames.append(frame[: rng.randint(1, len(frame))] if rng.random() < 0.1 else frame)
            writer.write(b"".join(frames))
            await writer.drain()
            writer.write_eof()
            async with asyncio.timeout(self.args.timeout):
                data = await reader.read()  # the daemon hangs up (an error, a hangup, or our EOF)
            self.outcome("audiosocket", "closed" if not data else f"closed after {len(data)} bytes")
        finally:
            writer.close()

    async def fuzz_whip(self) -> None:
        assert self.session is not None
        rng = self.rng
        offer = "\r\n".join([
            "v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "t=0 0", "a=group:BUNDLE 0",
            "m=audio 9 UDP/TLS/RTP/SAVPF 111", "c=IN IP4 0.0.0.0", "a=mid:0", "a=sendonly",
            "a=rtpmap:111 opus/48000/2", "a=ice-ufrag:abcd", "a=ice-pwd:" + "p" * 24,
            "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", ""])
        roll = rng.random()
        if roll < 0.3:
            body = offer[: rng.randint(0, len(offer))].encode()
        elif roll < 0.5:
            lines = offer.split("\r\n")
            for _ in range(rng.randint(1, 4)):
                lines[rng.randrange(len(lines))] = rng.choice(["m=audio x", "a=" + "z" * 5000, "", "c=IN", "a=mid:"])
            body = "\r\n".join(lines).encode()
        elif roll < 0.6:
            body = junk(rng, 3000)
        elif roll < 0.65:
            body = b"v=0\r\n" * rng.randint(2000, 60000)  # large, up to ~360 KB
        else:
            body = (offer + "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n" * rng.randint(0, 40)).encode()
        if rng.random() < 0.1:
            async with self.session.delete(f"{self.http}/whip/{rng.randbytes(8).hex()}/{rng.randbytes(8).hex()}") as r:
                self.outcome("whip", f"DELETE {r.status}")
            return
        content_type = "application/sdp" if rng.random() < 0.9 else rng.choice(["text/plain", "application/json"])
        query = rng.choice(["", "?stream_id=" + "s" * rng.randint(1, 300), "?k=" + "v" * 600, "?stream_id=%00"])
        async with self.session.post(f"{self.http}/whip{query}", data=body,
                                     headers={"Content-Type": content_type}) as response:
            await response.read()
            self.outcome("whip", f"HTTP {response.status}")
            if response.status == 201:  # an accepted offer: end the session it made
                location = response.headers.get("Location", "")
                async with self.session.delete(f"{self.http}{location}") as r:
                    self.outcome("whip", f"DELETE {r.status}")

    async def fuzz_http(self) -> None:
        assert self.session is not None
        rng = self.rng
        method = rng.choice(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"])
        path = rng.choice(["/", "/console/", "/console/console.js", "/metrics", "/healthz", "/readyz",
                           "/whip", "/twilio", "/audiofork", "/" + "a" * rng.randint(1, 3000),
                           "/console/../../etc/passwd", "/%00", "/whip/" + "x" * 100])
        async with self.session.request(method, f"{self.http}{path}", data=junk(rng, 2000)) as response:
            await response.content.read(65536)
            self.outcome("http", f"{method} {response.status}")

    # control stream: every result of 1 s of audio must arrive
    async def control_stream(self) -> None:
        sid = f"control-{self.tally.control_streams}"
        self.tally.control_streams += 1
        sub = self.context.socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        sub.subscribe(sid.encode())
        sub.connect(self.results)
        dealer = self._dealer()
        try:
            await asyncio.sleep(0.2)  # the subscription reaches the PUB socket
            await dealer.send_multipart(OpenMessage(sid, F16).to_frames())
            t = np.arange(16000) / 16000
            audio = (0.3 * np.sin(2 * np.pi * 220 * t)).astype("<f4").tobytes()
            for seq, start in enumerate(range(0, len(audio), 1280)):  # 20 ms messages
                await dealer.send_multipart(AudioMessage(sid, seq, audio[start:start + 1280]).to_frames())
            await dealer.send_multipart(CloseMessage(sid).to_frames())
            results = 0
            async with asyncio.timeout(max(10.0, self.args.timeout)):
                while True:
                    message = decode_pub(await sub.recv_multipart())
                    if message["stream_id"] != sid:
                        continue
                    if message["type"] == "result":
                        results += 1
                    if message["type"] == "closed":
                        self.tally.control_lost += max(0, message["summary"]["hops"] - results)
                        if message["summary"]["hops"] == 0:
                            self.tally.control_lost += 1  # no hop scored at all counts as lost
                        return
        except TimeoutError:
            self.tally.control_lost += 1
            self.tally.hangs.append(f"control stream {sid}")
        finally:
            sub.close()
            dealer.close(linger=0)

    async def refusals(self) -> Counter[str]:
        assert self.session is not None
        counts: Counter[str] = Counter()
        async with self.session.get(f"{self.http}/metrics") as response:
            for line in (await response.text()).splitlines():
                if line.startswith("spoofwatch_refused_inputs_total{"):
                    labels, value = line.rsplit(" ", 1)
                    parsed = dict(part.split("=", 1) for part in labels[labels.index("{") + 1:-1].split(","))
                    counts[f"{parsed['transport'].strip(chr(34))} {parsed['reason'].strip(chr(34))}"] = int(
                        float(value))
        return counts


def start_daemon(args: argparse.Namespace, ports: dict[str, int], log: Any) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "daemon", "--model.path", str(args.model),
               "--model.providers", '["CPUExecutionProvider"]',
               "--zmq.ingest-endpoint", f"tcp://127.0.0.1:{ports['ingest']}",
               "--zmq.pub-endpoint", f"tcp://127.0.0.1:{ports['results']}",
               "--webrtc.host", "127.0.0.1", "--webrtc.port", str(ports["http"]),
               "--twilio.enabled", "true", "--audiofork.enabled", "true",
               "--audiosocket.enabled", "true", "--audiosocket.host", "127.0.0.1",
               "--audiosocket.port", str(ports["audiosocket"]), "--audiosocket.read-timeout-s", "2",
               "--streams.idle-timeout-s", "2", "--logging.level", "warning"]
    for setting in args.set:
        key, _, value = setting.partition("=")
        command += [f"--{key}", value]
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    wait_for_pong(f"tcp://127.0.0.1:{ports['ingest']}", process)
    return process


async def fuzz(args: argparse.Namespace, ports: dict[str, int], process: subprocess.Popen[bytes]) -> dict[str, Any]:
    async with Fuzzer(args, ports, process.pid) as fuzzer:
        await fuzzer.control_stream()  # warm up: model loaded, first streams' allocations made
        for _ in range(args.warmup):  # and every ingress's code paths run once (not counted)
            await fuzzer.run_case()
        await fuzzer.control_stream()
        fuzzer.tally = Tally()
        fuzzer.case_no = 0
        rss_before = rss_kib(process.pid)
        started = time.monotonic()
        while fuzzer.case_no < args.cases and time.monotonic() - started < args.max_seconds:
            for _ in range(min(args.batch, args.cases - fuzzer.case_no)):
                await fuzzer.run_case()
                if process.poll() is not None:
                    fuzzer.tally.crashes += 1
                    break
            if process.poll() is not None:
                break
            await fuzzer.control_stream()
            fuzzer.tally.rss_samples.append((fuzzer.case_no, rss_kib(process.pid)))
            if args.progress:
                print(f"{fuzzer.case_no} cases, {time.monotonic() - started:.0f} s, "
                      f"RSS {rss_kib(process.pid) / 1024:.1f} MiB", file=sys.stderr)
        elapsed = time.monotonic() - started
        await asyncio.sleep(2.5)  # idle timeouts close what the cases left open
        alive = process.poll() is None
        rss_after = rss_kib(process.pid) if alive else 0
        refusals = await fuzzer.refusals() if alive else Counter()
        return {"tally": fuzzer.tally, "elapsed_s": elapsed, "rss_before_kib": rss_before,
                "rss_after_kib": rss_after, "refusals": refusals, "cases": fuzzer.case_no}


def rss_slope(samples: list[tuple[int, int]]) -> str:
    """The least-squares RSS slope over the second half of the run: a leak keeps a constant slope,
    a bounded store or the allocator's high-water mark flattens out."""
    half = samples[len(samples) // 2:]
    if len(half) < 2:
        return ""
    xs, ys = np.array([c for c, _ in half], float), np.array([r for _, r in half], float)
    slope = float(np.polyfit(xs, ys, 1)[0])
    return f"; slope over the second half {slope * 10_000 / 1024:+.2f} MiB per 10,000 cases"


def report(figures: dict[str, Any], args: argparse.Namespace) -> int:
    tally: Tally = figures["tally"]
    growth = (figures["rss_after_kib"] - figures["rss_before_kib"]) / max(1, figures["rss_before_kib"])
    print(f"cases: {figures['cases']} in {figures['elapsed_s']:.1f} s (seed {args.seed}); "
          + ", ".join(f"{k} {v}" for k, v in sorted(tally.cases.items())))
    if args.set:
        print("daemon settings: " + " ".join(args.set))
    print(f"crashes: {tally.crashes}")
    print(f"hangs: {len(tally.hangs)}" + (f" ({', '.join(tally.hangs[:10])})" if tally.hangs else ""))
    print(f"control streams: {tally.control_streams}, lost control results: {tally.control_lost}")
    print(f"RSS: {figures['rss_before_kib'] / 1024:.1f} MiB before, {figures['rss_after_kib'] / 1024:.1f} MiB after "
          f"({100 * growth:+.1f} %)" + rss_slope(tally.rss_samples))
    print("outcomes by reason:")
    for key, count in sorted(tally.outcomes.items()):
        print(f"  {key}: {count}")
    print("refused inputs counted by the daemon (/metrics):")
    for key, count in sorted(figures["refusals"].items()):
        print(f"  {key}: {count}")
    ok = tally.crashes == 0 and not tally.hangs and tally.control_lost == 0 and growth <= args.max_rss_growth
    print("result: " + ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path,
                        default=packaged_model_path())
    parser.add_argument("--cases", type=int, default=2000, help="hostile inputs in all (default 2000)")
    parser.add_argument("--max-seconds", type=float, default=600, help="stop after this long (default 600)")
    parser.add_argument("--batch", type=int, default=200, help="cases between control streams (default 200)")
    parser.add_argument("--timeout", type=float, default=5.0, help="an answer later than this is a hang (s)")
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--warmup", type=int, default=5000,
                        help="cases run before the RSS baseline is read, not counted (default 5000: enough to "
                             "fill the console's 200 tracked streams and every path's first allocations)")
    parser.add_argument("--max-rss-growth", type=float, default=0.05, help="pass threshold (fraction, 0.05)")
    parser.add_argument("--progress", action="store_true", help="a line on stderr after each batch")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a daemon setting, e.g. --set memory.trim_interval_s=0 (repeatable)")
    parser.add_argument("--ingress", nargs="+", choices=INGRESSES, default=list(INGRESSES),
                        help="fuzz only these (default all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ports = {name: free_port() for name in ("ingest", "results", "http", "audiosocket")}
    with tempfile.TemporaryFile() as log:
        process = start_daemon(args, ports, log)
        try:
            figures = asyncio.run(fuzz(args, ports, process))
        finally:
            stop_process(process)
        status = report(figures, args)
        if status:
            log.seek(0)
            print("daemon output (last 3000 bytes):\n" + log.read().decode(errors="replace")[-3000:], file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
