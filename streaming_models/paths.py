"""Where package code finds the files that are not part of the package.

The package's own data (the default model, the console's page) is read through importlib.resources
and needs no checkout. A training project's files (its configs/, artifacts/ and .cache/ folders)
are looked up in the project folder, the working directory: the checkout's root, where the README's
commands run. Every such default has a flag that points elsewhere. The shared, never-committed data
is `$SPOOFWATCH_SHARED_DATA`, else `../shared/data` beside the project folder; nothing an installed
package runs needs it.

Paths are made absolute when asked for, so what they name does not change with a later `chdir`
and records that hold them (corpus jobs) stay the same.
"""

from __future__ import annotations

import os
from pathlib import Path

SHARED_DATA_ENV = "SPOOFWATCH_SHARED_DATA"


def project_dir() -> Path:
    return Path.cwd()


def default_shared_data_dir() -> Path:
    """The shared data when $SPOOFWATCH_SHARED_DATA is unset: `../shared/data` beside the project."""
    return project_dir().parent / "shared" / "data"


def shared_data_dir() -> Path:
    return Path(os.environ.get(SHARED_DATA_ENV, default_shared_data_dir()))


def small_corpus_recipe() -> Path:
    """The corpus recipe of `spoofwatch data build --small`."""
    return project_dir() / "configs" / "data" / "small.toml"


def small_training_recipe() -> Path:
    """The training recipe of `spoofwatch train --small`."""
    return project_dir() / "configs" / "train" / "small.toml"


def resynthesis_configs_dir() -> Path:
    """configs/resynthesis: one TOML file per in-house codec and vocoder."""
    return project_dir() / "configs" / "resynthesis"


def resynthesis_artifacts_dir() -> Path:
    """Where `spoofwatch resynth train` writes NAME/model.pt and the corpus builder finds it."""
    return project_dir() / "artifacts" / "resynthesis"


def engine_cache_dir() -> Path:
    """Where the corpus builder's speech engines unpack their model files."""
    return project_dir() / ".cache" / "engines"


def debian_speech_cache_dir() -> Path:
    """Where fetched Debian speech packages are kept."""
    return project_dir() / ".cache" / "debian-speech"
