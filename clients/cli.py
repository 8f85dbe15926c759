"""The `spoofwatch` command: one entry point, one module per subcommand.

Subcommand modules are imported only when chosen, so `spoofwatch serve` never
imports torch and `spoofwatch train` never imports aiortc. Each module exposes
`main(argv: list[str]) -> int` and builds its own argparse parser.
"""

from __future__ import annotations

import importlib
import os
import sys

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a command whose reader closed the pipe

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("daemon.__main__", "run the detection daemon"),
    "send": ("clients.commands.send", "stream a file or the microphone to the daemon"),
    "tap": ("clients.commands.tap", "show live results per stream (terminal meter or JSON lines)"),
    "keys": ("clients.commands.keys", "make tokens and keys the daemon checks (docs/security.md)"),
    "demo": ("clients.commands.demo", "start the daemon on the default model and stream a bundled clip"),
    "proxy": ("clients.commands.proxy", "merge the results of several daemon replicas onto one endpoint"),
    "doctor": ("clients.commands.doctor", "check this host for the daemon (model, verifier, ports, keys, codecs, packages)"),
    "data": ("streaming_models.data.cli", "build the codec-aware training corpus"),
    "train": ("streaming_models.train", "train the streaming detector"),
    "evaluate": ("streaming_models.evaluate", "evaluate an exported model through the streaming path"),
    "export": ("streaming_models.export", "export a checkpoint to ONNX with metadata"),
    "calibrate": ("streaming_models.calibrate", "choose an exported model's early operating thresholds"),
    "ensemble": ("streaming_models.ensemble", "fuse trained detectors into one checkpoint (mean logits)"),
    "resynth": ("streaming_models.resynthesis.cli", "train in-house neural codecs and vocoders"),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: spoofwatch COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `spoofwatch COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"spoofwatch: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        result: int = module.main(rest)
        sys.stdout.flush()  # here, not at interpreter exit, so a closed pipe is caught below
    except BrokenPipeError:
        # the reader went away (`spoofwatch doctor | head`): stop quietly, as Unix tools do, and keep
        # the interpreter's final flush of stdout from raising the same error again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return result


if __name__ == "__main__":
    sys.exit(main())
