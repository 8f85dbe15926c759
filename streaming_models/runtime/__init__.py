"""The runtime floor: what running an exported detector needs, and nothing else.

The model contract (`model_format`), the base errors (`errors`), resampling and hop cutting
(`resample`, `hops`), the inference backends (`backend`, `onnx_backend`, `torch_backend`), the
second-tier verifier's contract, fusion rule and runner (`verifier_format`, `verifier_onnx`), the
one hop-by-hop batched scorer (`scorer`), the one way config files are read (`settings`: frozen
dataclasses from TOML, unknown keys refused) and the packaged default model (`default_model`). The
daemon and the offline tools (evaluation, calibration, the public `Detector`) stand on it; it
imports neither of them, nor torch at module level (docs/architecture.md, "Floors").
"""
