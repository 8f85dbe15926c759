"""Public demo-page repositories as training and evaluation data (docs/public-data.md).

registry.py reads `configs/data/public/*.toml`; mirror.py reads the local git snapshots;
decode.py turns a stored file into 16 kHz audio; dedupe.py finds copies; importer.py runs them.
"""
