"""Where the shared, never-committed data lives: `$SPOOFWATCH_SHARED_DATA`, else `../shared/data`
next to the repository."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_data_dir() -> Path:
    return Path(os.environ.get("SPOOFWATCH_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
