"""The live terminal meter of `spoofwatch tap` and `spoofwatch demo`: one line per stream.

On a terminal the lines are redrawn in place (ANSI cursor-up); elsewhere (a pipe,
a log file) each result becomes one plain line. The meter only reads the
published messages (see docs/protocol.md); it never computes a score itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TextIO

BAR_WIDTH = 20
_CURSOR_UP = "\x1b[{n}F"
_CLEAR_LINE = "\x1b[2K"
_DECISION_COLOURS = {"spoof": "\x1b[31m", "codec": "\x1b[33m", "bonafide": "\x1b[32m"}
_RESET = "\x1b[0m"


def bar(value: float, width: int = BAR_WIDTH) -> str:
    filled = round(max(0.0, min(1.0, value)) * width)
    return "#" * filled + "." * (width - filled)


@dataclass
class StreamLine:
    stream_id: str
    p_spoof: float = 0.0
    p_codec: float = 0.0
    decision: str = "undecided"
    hops: int = 0
    t_end_s: float = 0.0
    state: str = "open"  # open | closed (reason)

    def render(self, colour: bool) -> str:
        decision = self.decision
        if colour and decision in _DECISION_COLOURS:
            decision = f"{_DECISION_COLOURS[decision]}{decision}{_RESET}"
        state = "" if self.state == "open" else f"  [{self.state}]"
        return (
            f"{self.stream_id[:24]:<24} {self.t_end_s:7.1f}s  "
            f"spoof {bar(self.p_spoof)} {self.p_spoof:4.2f}  "
            f"codec {bar(self.p_codec)} {self.p_codec:4.2f}  {decision}{state}"
        )


class Meter:
    """Feed it published messages; it keeps one `StreamLine` per stream and draws them."""

    def __init__(self, out: TextIO, in_place: bool | None = None) -> None:
        self._out = out
        self._in_place = out.isatty() if in_place is None else in_place
        self._lines: dict[str, StreamLine] = {}
        self._drawn = 0

    @property
    def lines(self) -> Mapping[str, StreamLine]:
        return self._lines

    def update(self, message: Mapping[str, Any]) -> None:
        stream_id = str(message.get("stream_id", "?"))
        kind = message.get("type")
        line = self._lines.setdefault(stream_id, StreamLine(stream_id))
        if kind == "result":
            line.p_spoof = float(message.get("p_spoof_smooth", message.get("p_spoof", 0.0)))
            line.p_codec = float(message.get("p_codec_smooth", message.get("p_codec", 0.0)))
            line.decision = str(message.get("decision", "undecided"))
            line.hops = int(message.get("seq", line.hops)) + 1
            line.t_end_s = float(message.get("t_end_s", line.t_end_s))
        elif kind == "closed":
            line.state = f"closed: {message.get('reason', '?')}"
            summary = message.get("summary") or {}
            line.decision = str(summary.get("final_decision", line.decision))
        elif kind == "opened":
            line.state = "open"
        elif kind == "error":
            line.state = f"error: {message.get('code', '?')}"
        else:
            return
        self._draw(line)

    def _draw(self, changed: StreamLine) -> None:
        if not self._in_place:
            self._out.write(changed.render(colour=False) + "\n")
            self._out.flush()
            return
        if self._drawn:
            self._out.write(_CURSOR_UP.format(n=self._drawn))
        for line in self._lines.values():
            self._out.write(_CLEAR_LINE + line.render(colour=True) + "\n")
        self._drawn = len(self._lines)
        self._out.flush()
