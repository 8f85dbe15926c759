"""A LiveKit agent whose callers are screened by spoofwatch.

    spoofwatch serve &
    export LIVEKIT_URL=wss://... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=...
    python examples/livekit_agent.py dev

Every remote microphone in the room is streamed to the daemon (16 kHz mono from
`rtc.AudioStream`). Scores are published on the data topic `spoofwatch` and decisions as the
agent's attributes `spoofwatch.<identity>.*`, so a supervisor's front-end can show them; on a
spoof decision the agent interrupts itself and says so. Add your STT, LLM and TTS to the
`AgentSession` as usual (left out here so the example needs no provider keys).
"""

from __future__ import annotations

import sys
from pathlib import Path

from livekit.agents import Agent, AgentServer, AgentSession, AutoSubscribe, JobContext, cli

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from clients.integrations.livekit import DecisionEvent, SpoofwatchDetector

server = AgentServer()


@server.rtc_session()
async def entrypoint(ctx: JobContext) -> None:
    await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
    session: AgentSession = AgentSession()  # stt=..., llm=..., tts=..., vad=...
    detector = SpoofwatchDetector(on_spoof="interrupt", metadata={"room": ctx.room.name})

    @detector.on("decision")
    def on_decision(event: DecisionEvent) -> None:
        print(f"{event.participant_identity}: {event.previous} -> {event.decision} "
              f"(p_spoof {event.score.p_spoof_smooth})")

    @detector.on("spoof")
    def on_spoof(event: DecisionEvent) -> None:
        session.say("I'm sorry, I can't continue this call. Please call back from your own phone.")

    detector.attach(ctx.room, agent_session=session)
    ctx.add_shutdown_callback(detector.aclose)
    await session.start(agent=Agent(instructions="You are a bank's phone assistant."), room=ctx.room)


if __name__ == "__main__":
    cli.run_app(server)
