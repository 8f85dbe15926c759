"""The LiveKit plugin's stream adapter fed with LiveKit's own `rtc.AudioFrame`s (no LiveKit server:
none installs from PyPI, Debian or npm), against the real daemon (subprocess)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from running_daemon import REPO_ROOT, daemon_process, free_port

pytest.importorskip("livekit.rtc")

from livekit import rtc

from clients.commands.send import read_audio
from clients.integrations.livekit import DecisionEvent, SpoofwatchDetector
from clients.integrations.session import Score, SessionConfig
from streaming_models.runtime.default_model import packaged_model_path

ALWAYS_SPOOF = ("--decision.thresholds", "config", "--decision.spoof-enter", "0.0", "--decision.spoof-exit", "0.0")


class RecordingParticipant:
    """Stands in for `rtc.LocalParticipant` (which needs a connected room): records what is published."""

    def __init__(self) -> None:
        self.data: list[tuple[dict[str, Any], bool, str]] = []
        self.attributes: dict[str, str] = {}
        self.attribute_updates = 0

    async def set_attributes(self, attributes: dict[str, str]) -> None:
        self.attributes.update(attributes)
        self.attribute_updates += 1

    async def publish_data(
        self, payload: bytes | str, *, reliable: bool = True, destination_identities: list[str] | None = None,
        topic: str = "",
    ) -> None:
        self.data.append((json.loads(payload), reliable, topic))


class RecordingAgentSession:
    def __init__(self) -> None:
        self.interrupts = 0
        self.shutdowns = 0

    def interrupt(self, *, force: bool = False) -> None:
        self.interrupts += 1

    def shutdown(self, *, drain: bool = True) -> None:
        self.shutdowns += 1


async def audio_frames(samples: np.ndarray, rate_hz: int, *, events: bool = True) -> AsyncIterator[Any]:
    """10 ms `rtc.AudioFrame`s at the pace of the audio, wrapped as `rtc.AudioStream` yields them."""
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    per_frame = rate_hz // 100
    loop = asyncio.get_running_loop()
    started = loop.time()
    for index in range(len(pcm) // per_frame):
        delay = started + index * 0.01 - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        frame = rtc.AudioFrame(pcm[index * per_frame : (index + 1) * per_frame].tobytes(), rate_hz, 1, per_frame)
        yield rtc.AudioFrameEvent(frame) if events else frame


def speechlike(seconds: float, rate_hz: int) -> np.ndarray:
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    return (0.3 * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))).astype(np.float32)


def record_events(detector: SpoofwatchDetector) -> dict[str, list[Any]]:
    seen: dict[str, list[Any]] = {"score": [], "decision": [], "spoof": [], "stale": []}
    detector.on("score", lambda score, identity: seen["score"].append((score, identity)))
    detector.on("stale", lambda score, identity: seen["stale"].append((score, identity)))
    detector.on("decision", lambda event: seen["decision"].append(event))
    detector.on("spoof", lambda event: seen["spoof"].append(event))
    return seen


async def test_stream_adapter_publishes_scores_and_raises_events(tiny_model: tuple[Path, Path]) -> None:
    with daemon_process(tiny_model[0], extra=ALWAYS_SPOOF) as daemon:
        detector = SpoofwatchDetector(endpoint=daemon.ingest_endpoint, results_endpoint=daemon.results_endpoint,
                                      on_spoof="interrupt", metadata={"room": "support-7"})
        seen = record_events(detector)
        participant, agent = RecordingParticipant(), RecordingAgentSession()
        session = await detector.score_stream(
            audio_frames(speechlike(2.0, 16000), 16000), "caller-1", session_id="lk-adapter",
            publisher=participant, agent_session=agent,
        )
    assert session.state == "closed" and session.stats.frames_submitted == 200  # 10 ms frames
    scores = [score for score, identity in seen["score"] if identity == "caller-1"]
    assert [s.seq for s in scores] == list(range(20)) and all(s.stream_id == "lk-adapter" for s in scores)
    assert all(s.latency_s is not None and s.latency_s < 1.0 for s in scores) and not seen["stale"]
    assert [(e.previous, e.decision) for e in seen["decision"]] == [("undecided", "spoof")]
    assert len(seen["spoof"]) == 1 and isinstance(seen["spoof"][0], DecisionEvent)
    assert seen["spoof"][0].participant_identity == "caller-1" and agent.interrupts == 1 and agent.shutdowns == 0

    assert len(participant.data) == 20 and {topic for _, _, topic in participant.data} == {"spoofwatch"}
    first_spoof = next(i for i, (m, _, _) in enumerate(participant.data) if m["decision"] == "spoof")
    assert [reliable for _, reliable, _ in participant.data] == [i == first_spoof for i in range(20)]
    message = participant.data[-1][0]
    assert message["type"] == "spoofwatch.score" and message["participant"] == "caller-1"
    assert message["seq"] == 19 and message["t_end_s"] == pytest.approx(2.0) and message["stale"] is False
    assert participant.attribute_updates == 1  # on the decision change only, not every hop
    assert participant.attributes["spoofwatch.caller-1.decision"] == "spoof"
    assert participant.attributes["spoofwatch.caller-1.stale"] == "false"
    assert 0.0 <= float(participant.attributes["spoofwatch.caller-1.p_spoof"]) <= 1.0


@pytest.mark.slow
async def test_synthetic_clip_from_livekit_frames_is_decided_spoof(espeak_clip: Path) -> None:
    samples, rate_hz = read_audio(espeak_clip, 48000)  # LiveKit's own rate; the daemon resamples
    with daemon_process(packaged_model_path()) as daemon:
        detector = SpoofwatchDetector(endpoint=daemon.ingest_endpoint, results_endpoint=daemon.results_endpoint)
        seen = record_events(detector)
        participant = RecordingParticipant()
        await detector.score_stream(audio_frames(samples, rate_hz, events=False), "caller-2", publisher=participant)
    assert len(seen["spoof"]) == 1 and seen["spoof"][0].score.t_end_s < 5.0
    assert participant.attributes["spoofwatch.caller-2.decision"] == "spoof"
    scores: list[Score] = [score for score, _ in seen["score"]]
    assert len(scores) == int(len(samples) / rate_hz * 10) and scores[-1].decision == "spoof"


async def test_without_a_daemon_the_scores_are_published_stale() -> None:
    config = SessionConfig(f"tcp://127.0.0.1:{free_port()}", f"tcp://127.0.0.1:{free_port()}",
                           request_timeout_s=0.3, reconnect_max_s=0.3)
    detector = SpoofwatchDetector(config=config)
    seen = record_events(detector)
    participant = RecordingParticipant()
    loop = asyncio.get_running_loop()
    started = loop.time()
    session = await detector.score_stream(audio_frames(speechlike(1.0, 16000), 16000), "caller-3",
                                          publisher=participant)
    assert loop.time() - started < 2.0  # reading frames never waited for the daemon
    assert session.stats.frames_submitted == 100 and not seen["score"]
    assert len(seen["stale"]) == 1 and seen["stale"][0][0].stale
    assert participant.attributes["spoofwatch.caller-3.stale"] == "true"
    assert participant.data[0][0]["stale"] is True and participant.data[0][1] is True  # reliable


def test_example_agent_builds_its_server() -> None:
    """The example needs a LiveKit server to run; here it is only loaded (imports, decorators)."""
    import runpy

    pytest.importorskip("livekit.agents")
    namespace = runpy.run_path(str(REPO_ROOT / "examples" / "livekit_agent.py"), run_name="example")
    assert callable(namespace["entrypoint"]) and namespace["server"] is not None
