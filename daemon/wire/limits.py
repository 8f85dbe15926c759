"""Input limits shared by every ingress: bounded JSON and call metadata, in one place.

Every JSON text a peer sends (ZeroMQ headers, Twilio and audio-fork messages) goes through
`loads_bounded`, which refuses, before or while parsing, what could hurt the daemon:
too many bytes, nesting deeper than `MAX_JSON_DEPTH` (json.loads recurses and raises
RecursionError near 1,000 levels), integers longer than `MAX_JSON_INT_DIGITS` (Python
refuses > 4,300 digits with a plain ValueError) and NaN/Infinity/overflowing floats.

Stream ids (`MAX_STREAM_ID_CHARS`) and call metadata (echoed in every result of the stream) have
one limit each for every transport: `metadata_problem` says what is wrong with metadata, or None.
Stdlib only: the client library imports this.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

MAX_JSON_DEPTH = 32
MAX_JSON_INT_DIGITS = 32

MAX_STREAM_ID_CHARS = 128  # printable characters, on every transport

MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_METADATA_BYTES = 4096  # all keys and values together, UTF-8: bounds every result message

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = bytes(range(256)).translate(None, b"[]{}")  # every byte except brackets: deleted below


class JsonRejected(ValueError):
    """A JSON text refused by `loads_bounded`; `reason` is a stable short code for counters."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


def json_depth_exceeds(data: bytes, max_depth: int) -> bool:
    """Whether arrays/objects in `data` nest deeper than `max_depth` (brackets inside strings don't count)."""
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False  # the common case, at C speed
    depth = 0
    for byte in _STRING.sub(b'""', data).translate(None, _BRACKETS):
        depth += 1 if byte in b"[{" else -1
        if depth > max_depth:
            return True
    return False


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_JSON_INT_DIGITS:
        raise JsonRejected("bad_number", f"integer of {len(text)} digits (at most {MAX_JSON_INT_DIGITS})")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRejected("bad_number", f"number {text[:40]} overflows a float")
    return value


def _parse_constant(name: str) -> Any:
    raise JsonRejected("bad_number", f"{name} is not a JSON number")


def loads_bounded(data: bytes | str, *, max_bytes: int, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """`json.loads` that raises `JsonRejected` (a ValueError) for anything malformed or over the limits."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise JsonRejected("too_large", f"JSON text of {len(raw)} bytes (at most {max_bytes})")
    if json_depth_exceeds(raw, max_depth):
        raise JsonRejected("too_deep", f"JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(data, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
    except JsonRejected:
        raise
    except RecursionError:  # pragma: no cover - the depth scan comes first
        raise JsonRejected("too_deep", "JSON nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise JsonRejected("bad_json", f"not UTF-8 JSON: {exc}"[:200]) from None


def metadata_problem(metadata: Mapping[Any, Any]) -> str | None:
    """What breaks the metadata limits (count, key and value sizes, total bytes), or None."""
    limits = (f"at most {MAX_METADATA_ENTRIES} string -> string entries, keys of 1..{MAX_METADATA_KEY_CHARS} "
              f"characters, values of at most {MAX_METADATA_VALUE_CHARS}, {MAX_METADATA_BYTES} bytes in all")
    if len(metadata) > MAX_METADATA_ENTRIES:
        return f"metadata has {len(metadata)} entries; allowed: {limits}"
    total = 0
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            return f"metadata entries must be strings; allowed: {limits}"
        if not 1 <= len(key) <= MAX_METADATA_KEY_CHARS:
            return f"metadata key of {len(key)} characters; allowed: {limits}"
        if len(value) > MAX_METADATA_VALUE_CHARS:
            return f"metadata value of {len(value)} characters under key {key!r}; allowed: {limits}"
        total += len(key.encode("utf-8", "surrogatepass")) + len(value.encode("utf-8", "surrogatepass"))
    if total > MAX_METADATA_BYTES:
        return f"metadata of {total} bytes; allowed: {limits}"
    return None
