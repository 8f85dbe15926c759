"""The live meter of `tap`/`demo`: one line per stream, in place on a terminal, plain lines elsewhere."""

from __future__ import annotations

import io

from clients.meter import Meter, bar


def result(stream_id: str, seq: int, p_spoof: float, decision: str) -> dict[str, object]:
    return {"type": "result", "stream_id": stream_id, "seq": seq, "t_end_s": 0.1 * (seq + 1),
            "p_spoof": 0.0, "p_codec": 0.0, "p_spoof_smooth": p_spoof, "p_codec_smooth": 0.25,
            "decision": decision}


def test_bar_scales_and_clamps() -> None:
    assert bar(0.0, 10) == ".........."
    assert bar(0.5, 10) == "#####....."
    assert bar(1.7, 10) == "##########"


def test_plain_lines_when_not_a_terminal() -> None:
    out = io.StringIO()
    meter = Meter(out)  # StringIO is not a TTY
    meter.update(result("a", 0, 0.9, "spoof"))
    meter.update(result("b", 0, 0.1, "bonafide"))
    meter.update({"type": "closed", "stream_id": "a", "reason": "client", "summary": {"final_decision": "spoof"}})
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and "\x1b" not in out.getvalue()
    assert lines[0].startswith("a ") and "0.90" in lines[0] and lines[0].endswith("spoof")
    assert lines[1].startswith("b ") and lines[1].endswith("bonafide")
    assert lines[2].endswith("[closed: client]")


def test_redraws_in_place_on_a_terminal() -> None:
    out = io.StringIO()
    meter = Meter(out, in_place=True)
    meter.update(result("a", 0, 0.2, "undecided"))
    meter.update(result("b", 0, 0.8, "spoof"))
    meter.update(result("a", 1, 0.3, "bonafide"))
    text = out.getvalue()
    assert text.count("\x1b[1F") == 1 and text.count("\x1b[2F") == 1  # back up over the drawn lines
    assert set(meter.lines) == {"a", "b"}
    assert meter.lines["a"].decision == "bonafide" and meter.lines["a"].hops == 2
