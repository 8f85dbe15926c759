"""clients/cli.py, the `spoofwatch` entry point: what every command shares."""

from __future__ import annotations

import subprocess
import sys

from clients.cli import EXIT_BROKEN_PIPE


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly() -> None:
    """`spoofwatch doctor | head -1`: the reader is gone before the command writes; no traceback."""
    child = subprocess.Popen([sys.executable, "-m", "clients.cli", "doctor"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    child.stdout.close()  # no reader from the start: every write meets a closed pipe
    stderr = child.stderr.read().decode()
    assert child.wait(timeout=120) == EXIT_BROKEN_PIPE
    assert "BrokenPipeError" not in stderr and "Traceback" not in stderr, stderr
