"""`spoofwatch doctor`: checks of a host before (or beside) `spoofwatch serve`, each with its fix.

The checks live in `checks.py` (Python, the ingest path, config, model, onnxruntime, the verifier,
credentials, codecs, Debian packages, shared data) and `ports.py` (listeners free to bind, or held
by whom); the command is `clients/commands/doctor.py`. Each check returns `Finding`s; nothing here
prints or exits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Status = Literal["OK", "WARN", "FAIL", "SKIP"]


@dataclass(frozen=True)
class Finding:
    """One line of the report. `fix` says what to do; it is empty for OK."""

    check: str
    status: Status
    detail: str
    fix: str = ""

    def line(self, name_width: int = 12) -> str:
        text = f"{self.status:<5} {self.check:<{name_width}} {self.detail}"
        return f"{text}. Fix: {self.fix}" if self.fix else text
