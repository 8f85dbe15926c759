"""The in-house mel vocoder (streaming_models/resynthesis) as copy-synthesis family "inhouse-vocoder".

Its weights are a build artefact: `spoofwatch resynth train --config configs/resynthesis/vocoder_mel.toml`.
"""

from __future__ import annotations

from streaming_models.resynthesis.plugins import InhouseVocoderGenerator

__all__ = ["InhouseVocoderGenerator"]
