"""In-house neural resynthesis models (small neural codecs and a mel vocoder) used as corpus generators.

Heavy imports (torch) live in the submodules; importing this package is cheap.
"""
