"""LiveKit Agents plugin: score the participants' microphone tracks on the spoofwatch daemon.

    detector = SpoofwatchDetector(on_spoof="interrupt")
    detector.attach(ctx.room, agent_session=session)    # every remote microphone, as it is subscribed
    detector.on("decision", lambda event: ...)          # DecisionEvent, on every decision change

For each track, `watch_track` opens an `rtc.AudioStream` (16 kHz mono by default) and hands it
to `score_stream`, the stream adapter: it takes any async iterable of `rtc.AudioFrameEvent` (what
`rtc.AudioStream` yields) or `rtc.AudioFrame`, and feeds a `ScoringSession`
(clients/integrations/session.py), which streams the audio to the daemon through
`clients.client`, one stream per track, in the background: reading frames never waits for the
daemon.

Results go out three ways:
- the data channel, topic `spoofwatch` (`topic`): one JSON message per scored hop (lossy, like
  the audio), and reliably on every decision change and stale mark;
- attributes of the agent's own participant (a participant can only set its own), namespaced by
  the watched identity: `spoofwatch.<identity>.decision`, `.p_spoof`, `.p_codec`, `.stale`,
  updated on decision changes and stale marks (attribute updates go through signalling, so not
  every 100 ms);
- events of this emitter: `score` (Score, identity), `decision` (DecisionEvent), `spoof`
  (DecisionEvent), `stale` (Score, identity).

On `spoof`, `on_spoof` can also act on the agent session: "interrupt" (`session.interrupt()`) or
"end_call" (`session.shutdown()`). Daemon loss keeps the agent running; scores turn stale and
the session reconnects by itself.

Needs the `livekit` extra: `pip install "spoofwatch[livekit]"`.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import structlog
from livekit import rtc

from clients.client import DEFAULT_INGEST_ENDPOINT, DEFAULT_RESULTS_ENDPOINT
from clients.integrations.session import Decision, Score, ScoringSession, SessionConfig

log = structlog.get_logger(__name__)

PublishMode = Literal["none", "data", "attributes", "both"]
SpoofAction = Literal["none", "interrupt", "end_call"]
DetectorEvent = Literal["score", "decision", "spoof", "stale"]
DEFAULT_TOPIC = "spoofwatch"


class ResultPublisher(Protocol):
    """What publishing needs of `rtc.LocalParticipant`."""

    async def set_attributes(self, attributes: dict[str, str]) -> None: ...

    async def publish_data(
        self, payload: bytes | str, *, reliable: bool = ..., destination_identities: list[str] = ...,
        topic: str = ...,
    ) -> None: ...


class AgentSessionLike(Protocol):
    """What the spoof actions need of `livekit.agents.AgentSession`."""

    def interrupt(self, *, force: bool = ...) -> Any: ...

    def shutdown(self, *, drain: bool = ...) -> None: ...


@dataclass(frozen=True)
class DecisionEvent:
    participant_identity: str
    decision: Decision
    previous: Decision
    score: Score


class SpoofwatchDetector(rtc.EventEmitter[DetectorEvent]):
    """Scores LiveKit audio tracks on the daemon and publishes the results."""

    def __init__(
        self,
        *,
        endpoint: str = DEFAULT_INGEST_ENDPOINT,
        results_endpoint: str = DEFAULT_RESULTS_ENDPOINT,
        config: SessionConfig | None = None,
        publish: PublishMode = "both",
        topic: str = DEFAULT_TOPIC,
        attribute_prefix: str = "spoofwatch.",
        on_spoof: SpoofAction = "none",
        sample_rate_hz: int = 16000,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        base = config or SessionConfig()
        if endpoint != DEFAULT_INGEST_ENDPOINT or results_endpoint != DEFAULT_RESULTS_ENDPOINT:
            base = SessionConfig(**{**base.__dict__, "endpoint": endpoint, "results_endpoint": results_endpoint})
        self.config = base
        self.publish = publish
        self.topic = topic
        self.attribute_prefix = attribute_prefix
        self.on_spoof = on_spoof
        self.sample_rate_hz = sample_rate_hz
        self.metadata = dict(metadata or {})
        self.sessions: dict[str, ScoringSession] = {}  # by participant identity
        self._room: rtc.Room | None = None
        self._agent_session: AgentSessionLike | None = None
        self._watchers: dict[str, asyncio.Task[ScoringSession]] = {}  # by track sid

    def attach(self, room: rtc.Room, *, agent_session: AgentSessionLike | None = None) -> None:
        """Watch every remote microphone track of `room`, now and as they are subscribed."""
        self._room = room
        self._agent_session = agent_session
        room.on("track_subscribed", self._on_track_subscribed)
        room.on("track_unsubscribed", self._on_track_unsubscribed)
        for participant in room.remote_participants.values():
            for publication in participant.track_publications.values():
                if publication.track is not None:
                    self._on_track_subscribed(publication.track, publication, participant)

    async def aclose(self) -> None:
        if self._room is not None:
            self._room.off("track_subscribed", self._on_track_subscribed)
            self._room.off("track_unsubscribed", self._on_track_unsubscribed)
        watchers, self._watchers = list(self._watchers.values()), {}
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    async def watch_track(self, track: rtc.Track, participant: rtc.RemoteParticipant) -> ScoringSession:
        """Score one audio track until it ends."""
        stream = rtc.AudioStream.from_track(track=track, sample_rate=self.sample_rate_hz, num_channels=1)
        try:
            return await self.score_stream(stream, participant.identity, session_id=f"livekit-{track.sid}")
        finally:
            await stream.aclose()

    async def score_stream(
        self,
        frames: AsyncIterable[rtc.AudioFrameEvent] | AsyncIterable[rtc.AudioFrame],
        participant_identity: str,
        *,
        session_id: str | None = None,
        publisher: ResultPublisher | None = None,
        agent_session: AgentSessionLike | None = None,
    ) -> ScoringSession:
        """The stream adapter: score `frames` (from `rtc.AudioStream`, or any source of
        `rtc.AudioFrame`s) as one session until they end; returns the closed session."""
        target = publisher if publisher is not None else self._local_participant()
        acting_on = agent_session if agent_session is not None else self._agent_session
        previous: list[Decision] = ["undecided"]

        async def on_score(score: Score) -> None:
            await self._scored(score, participant_identity, previous, target)

        async def on_spoof(score: Score) -> None:
            event = DecisionEvent(participant_identity, "spoof", previous[0], score)
            self.emit("spoof", event)
            log.warning("spoofwatch_spoof_detected", participant=participant_identity, stream_id=score.stream_id,
                        seq=score.seq, p_spoof_smooth=score.p_spoof_smooth, action=self.on_spoof)
            if acting_on is not None and self.on_spoof == "interrupt":
                acting_on.interrupt()
            elif acting_on is not None and self.on_spoof == "end_call":
                acting_on.shutdown()

        session = ScoringSession(
            session_id or f"livekit-{uuid.uuid4().hex[:12]}", on_score, on_spoof=on_spoof,
            participant=participant_identity, metadata=self.metadata, integration="livekit", config=self.config,
        )
        self.sessions[participant_identity] = session
        session.start()
        try:
            async for item in frames:
                frame = item.frame if isinstance(item, rtc.AudioFrameEvent) else item
                session.submit(frame.data.tobytes(), frame.sample_rate, frame.num_channels)
        finally:
            await session.stop()
        return session

    async def _scored(
        self, score: Score, identity: str, previous: list[Decision], target: ResultPublisher | None
    ) -> None:
        changed = score.stale or score.decision != previous[0]
        if score.stale:
            self.emit("stale", score, identity)
        else:
            self.emit("score", score, identity)
            if score.decision != previous[0]:
                self.emit("decision", DecisionEvent(identity, score.decision, previous[0], score))
                previous[0] = score.decision
        if target is None or self.publish == "none":
            return
        try:
            if self.publish in ("data", "both"):
                payload = json.dumps({"type": "spoofwatch.score", "participant": identity, **score.as_dict()})
                await target.publish_data(payload, reliable=changed, topic=self.topic)
            if self.publish in ("attributes", "both") and changed:
                await target.set_attributes(self._attributes(identity, score))
        except Exception as exc:  # noqa: BLE001 - a failed publish (room gone, FFI error) must never stop the scoring
            log.warning("spoofwatch_publish_failed", participant=identity, error=str(exc))

    def _attributes(self, identity: str, score: Score) -> dict[str, str]:
        prefix = f"{self.attribute_prefix}{identity}."

        def number(value: float | None) -> str:
            return "" if value is None else f"{value:.3f}"

        return {
            prefix + "decision": score.decision,
            prefix + "p_spoof": number(score.p_spoof_smooth),
            prefix + "p_codec": number(score.p_codec_smooth),
            prefix + "stale": "true" if score.stale else "false",
        }

    def _local_participant(self) -> ResultPublisher | None:
        return self._room.local_participant if self._room is not None else None

    def _on_track_subscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO or publication.source != rtc.TrackSource.SOURCE_MICROPHONE:
            return
        if track.sid in self._watchers:
            return
        task = asyncio.create_task(self.watch_track(track, participant), name=f"spoofwatch-{track.sid}")
        self._watchers[track.sid] = task
        task.add_done_callback(lambda _: self._watchers.pop(track.sid, None))

    def _on_track_unsubscribed(
        self, track: rtc.Track, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        task = self._watchers.pop(track.sid, None)
        if task is not None:
            task.cancel()
