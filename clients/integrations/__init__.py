"""Drop-in integrations for voice-assistant frameworks (docs/integrations.md).

`session.ScoringSession` is the framework-neutral part: it streams one session's audio to the
daemon through `clients.client` and reports scores; `pipecat` and `livekit` adapt it to
Pipecat (`pip install spoofwatch[pipecat]`) and LiveKit Agents (`spoofwatch[livekit]`).
"""
