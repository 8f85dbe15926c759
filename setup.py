"""The one compiled part of the package: StreamBuffer's per-message audio path (docs/architecture.md,
"Ingest that scales with cores"). Everything else is declared in pyproject.toml.

The extension is optional: where no C compiler (or no Python headers) is found, the build says so
and installs the package without it, and `StreamBuffer` runs its pure-Python path instead.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streaming_models.runtime._fastpath",
            sources=["streaming_models/runtime/_fastpath.c"],
            # no contraction into fused multiply-adds: every kernel sums in the same order, same bits
            extra_compile_args=["-O3", "-ffp-contract=off"],
            optional=True,
        )
    ]
)
