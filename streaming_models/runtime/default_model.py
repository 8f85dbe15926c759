"""The detector that ships with the package (streaming_models/default_model/), found as package
data through importlib.resources, so an installed wheel finds it from any folder, not only from
the source checkout.

Configs and command lines name it `DEFAULT_MODEL`: the file's place in the source tree and in the
installed package alike. `find_model` looks a relative path up in the working directory first; the
default's name, when not there, is the packaged file. The daemon's config, the demo and the public
`Detector` take the default from here.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PACKAGE, FOLDER, FILE_NAME = "streaming_models", "default_model", "spoofwatch-default.onnx"
DEFAULT_MODEL = f"{PACKAGE}/{FOLDER}/{FILE_NAME}"


def packaged_model_path() -> Path:
    """The packaged model file (in the checkout or the installed package); it may be missing."""
    resource = resources.files(PACKAGE) / FOLDER / FILE_NAME
    if not isinstance(resource, Path):
        # onnxruntime opens a file by its path; a zipped install has none
        raise FileNotFoundError(f"the package data {DEFAULT_MODEL} is not a file on disk ({resource!r}): "
                                "install spoofwatch as a regular (unzipped) package")
    return resource


def find_model(path: str | Path, cwd: Path | None = None) -> Path | None:
    """An absolute path as is; a relative one in `cwd` (default: the working directory), and
    `DEFAULT_MODEL`, when not there, the packaged file. None where no such file exists."""
    candidate = Path(path).expanduser()
    found = candidate if candidate.is_absolute() else (cwd or Path.cwd()) / candidate
    if found.is_file():
        return found
    if candidate == Path(DEFAULT_MODEL):
        packaged = packaged_model_path()
        if packaged.is_file():
            return packaged
    return None
