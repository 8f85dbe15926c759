"""Pipecat integration: `SpoofwatchProcessor`, a FrameProcessor that scores the user's audio.

    pipeline = Pipeline([transport.input(), SpoofwatchProcessor(on_spoof="interrupt"), stt, ...])

Every inbound `InputAudioRawFrame` (and `UserAudioRawFrame`) is forwarded unchanged, the same
object, at once; a copy of its bytes goes to a `ScoringSession` (clients/integrations/session.py),
which streams it to the daemon on one stream per pipeline session in the background. Scores come
back as `SpoofScoreFrame`s, pushed downstream or upstream (`score_direction`). When the decision
turns to `spoof`, `on_spoof` says what to do: "event" pushes a `SpoofDetectedFrame`, "interrupt"
also interrupts the bot (`broadcast_interruption`), "end_call" also ends the pipeline
(`EndWorkerFrame`), "none" does nothing. Both are SystemFrames: an interruption never drops them.

If the daemon is lost the pipeline goes on: one `SpoofScoreFrame` with `stale=True` says so, and
the session reconnects by itself. The processor also fires the event handlers `on_score` and
`on_spoof` (`@processor.event_handler("on_spoof")`).

`AudioFileInputTransport` plays a clip into a pipeline as a live input transport would (20 ms
`InputAudioRawFrame`s at the pace of the audio), for tests, demos and replaying recordings.

Needs the `pipecat` extra: `pip install "spoofwatch[pipecat]"`.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import structlog
from pipecat.frames.frames import (
    CancelFrame,
    EndFrame,
    EndWorkerFrame,
    Frame,
    InputAudioRawFrame,
    StartFrame,
    SystemFrame,
)
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_transport import TransportParams

from clients.client import DEFAULT_INGEST_ENDPOINT, DEFAULT_RESULTS_ENDPOINT
from clients.integrations.session import Score, ScoringSession, SessionConfig

log = structlog.get_logger(__name__)

SpoofAction = Literal["none", "event", "interrupt", "end_call"]


@dataclass
class SpoofScoreFrame(SystemFrame):
    """One hop's scores from the daemon (`stale`: the daemon is lost; the values are the last known)."""

    session_id: str
    stream_id: str
    seq: int
    t_start_s: float  # the hop's audio time within the session
    t_end_s: float
    p_spoof: float | None
    p_codec: float | None
    p_spoof_smooth: float | None
    p_codec_smooth: float | None
    decision: str
    model_id: str
    latency_s: float | None  # the frame completing the hop entering the processor -> this frame
    stale: bool
    p_spoof_verifier: float | None = None  # the second tier's latest scores and the fused p_spoof, when the
    p_codec_verifier: float | None = None  # daemon runs it (docs/verifier.md)
    p_spoof_fused: float | None = None

    @classmethod
    def from_score(cls, score: Score) -> SpoofScoreFrame:
        return cls(**score.as_dict())


@dataclass
class SpoofDetectedFrame(SystemFrame):
    """The decision turned to `spoof`; `score` is the hop that turned it."""

    score: SpoofScoreFrame


class SpoofwatchProcessor(FrameProcessor):
    """Forwards every frame untouched and scores the inbound user audio on the daemon."""

    def __init__(
        self,
        *,
        session_id: str | None = None,
        participant: str | None = None,
        metadata: Mapping[str, str] | None = None,
        endpoint: str = DEFAULT_INGEST_ENDPOINT,
        results_endpoint: str = DEFAULT_RESULTS_ENDPOINT,
        score_direction: FrameDirection = FrameDirection.DOWNSTREAM,
        on_spoof: SpoofAction = "event",
        config: SessionConfig | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if on_spoof not in ("none", "event", "interrupt", "end_call"):
            raise ValueError(f"on_spoof must be none, event, interrupt or end_call, not {on_spoof!r}")
        base = config or SessionConfig()
        if endpoint != DEFAULT_INGEST_ENDPOINT or results_endpoint != DEFAULT_RESULTS_ENDPOINT:
            base = SessionConfig(**{**base.__dict__, "endpoint": endpoint, "results_endpoint": results_endpoint})
        self.session = ScoringSession(
            session_id or f"pipecat-{uuid.uuid4().hex[:12]}", self._push_score, on_spoof=self._spoof_detected,
            participant=participant, metadata=metadata, integration="pipecat", config=base,
        )
        self._score_direction = score_direction
        self._on_spoof = on_spoof
        self._register_event_handler("on_score")
        self._register_event_handler("on_spoof")

    @property
    def last_score(self) -> Score | None:
        return self.session.last_score

    @property
    def stale(self) -> bool:
        return self.session.stale

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        entered = time.monotonic()
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame) and direction == FrameDirection.DOWNSTREAM:
            self.session.submit(frame.audio, frame.sample_rate, frame.num_channels, entered)
            await self.push_frame(frame, direction)
        elif isinstance(frame, StartFrame):
            await self.push_frame(frame, direction)
            self.session.start()
        elif isinstance(frame, EndFrame):
            await self.session.stop()  # the last scores go out ahead of the EndFrame
            await self.push_frame(frame, direction)
        elif isinstance(frame, CancelFrame):
            await self.session.abort()
            await self.push_frame(frame, direction)
        else:
            await self.push_frame(frame, direction)

    async def cleanup(self) -> None:
        await super().cleanup()
        await self.session.abort()

    async def _push_score(self, score: Score) -> None:
        frame = SpoofScoreFrame.from_score(score)
        await self.push_frame(frame, self._score_direction)
        await self._call_event_handler("on_score", frame)

    async def _spoof_detected(self, score: Score) -> None:
        log.warning("spoofwatch_spoof_detected", session_id=score.session_id, stream_id=score.stream_id,
                    seq=score.seq, p_spoof_smooth=score.p_spoof_smooth, action=self._on_spoof)
        if self._on_spoof == "none":
            return
        detected = SpoofDetectedFrame(SpoofScoreFrame.from_score(score))
        await self.push_frame(detected, self._score_direction)
        await self._call_event_handler("on_spoof", detected)
        if self._on_spoof == "interrupt":
            await self.broadcast_interruption()
        elif self._on_spoof == "end_call":
            await self.push_frame(EndWorkerFrame(reason="spoofwatch: synthetic voice detected"))


class AudioFileInputTransport(BaseInputTransport):
    """Plays mono audio into the pipeline as 16-bit `InputAudioRawFrame`s of `frame_ms`, paced at
    `speed` × real time (0 = as fast as possible); with `end_when_done` the pipeline ends after it.
    `sent` keeps every frame pushed, in order."""

    def __init__(
        self,
        samples: npt.ArrayLike,
        sample_rate_hz: int,
        *,
        frame_ms: int = 20,
        speed: float = 1.0,
        end_when_done: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(TransportParams(audio_in_enabled=True, audio_in_sample_rate=sample_rate_hz), **kwargs)
        audio = np.asarray(samples)
        if audio.dtype != np.int16:
            audio = (np.clip(audio.astype(np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
        self._pcm = audio.astype("<i2").tobytes()
        self._rate_hz = sample_rate_hz
        self._frame_bytes = 2 * sample_rate_hz * frame_ms // 1000
        self._speed = speed
        self._end_when_done = end_when_done
        self._feeder: asyncio.Task[None] | None = None
        self.sent: list[InputAudioRawFrame] = []
        self.done = asyncio.Event()

    @classmethod
    def from_file(cls, path: Path, sample_rate_hz: int = 16000, **kwargs: Any) -> AudioFileInputTransport:
        from clients.commands.send import read_audio

        samples, rate_hz = read_audio(path, sample_rate_hz)
        return cls(samples, rate_hz, **kwargs)

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        if self._feeder is None:
            self._feeder = self.create_task(self._feed(), name="audio-file-feeder")

    async def stop(self, frame: EndFrame) -> None:
        await self._stop_feeder()
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        await self._stop_feeder()
        await super().cancel(frame)

    async def _stop_feeder(self) -> None:
        if self._feeder is not None and not self._feeder.done():
            await self.cancel_task(self._feeder)

    async def _feed(self) -> None:
        started = time.monotonic()
        frame_s = self._frame_bytes / (2 * self._rate_hz)
        whole = len(self._pcm) - len(self._pcm) % self._frame_bytes
        for index, offset in enumerate(range(0, whole, self._frame_bytes)):
            if self._speed > 0:
                delay = started + index * frame_s / self._speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            frame = InputAudioRawFrame(
                audio=self._pcm[offset : offset + self._frame_bytes], sample_rate=self._rate_hz, num_channels=1
            )
            self.sent.append(frame)
            await self.push_audio_frame(frame)
        await self._audio_in_queue.join()  # every frame is on its way before the pipeline may end
        self.done.set()
        if self._end_when_done:
            await self.push_frame(EndWorkerFrame(reason="end of the audio file"))
