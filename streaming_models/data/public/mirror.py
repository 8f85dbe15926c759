"""Read a repository's files at one commit from a local folder of git snapshots (no network).

The folder may hold `owner+name/repo` (the search tool's fetch layout), `owner+name` or
`owner/name`, each a bare git directory or a clone with a work tree.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Self


class MirrorError(ValueError):
    """A repository or commit is missing from the mirror folder; the message says which and where."""


ABSENT = -1  # TreeFile.size of a file listed in the tree whose content the snapshot lacks


@dataclass(frozen=True)
class TreeFile:
    path: str
    blob: str
    size: int


def find_git_dir(mirror: Path, repo: str) -> Path:
    owner, name = repo.split("/", 1)
    candidates = [mirror / f"{owner}+{name}" / "repo", mirror / f"{owner}+{name}", mirror / owner / name]
    for candidate in candidates:
        for git_dir in (candidate / ".git", candidate):
            if (git_dir / "objects").is_dir() and (git_dir / "HEAD").is_file():
                return git_dir
    raise MirrorError(f"{repo}: no git snapshot under {mirror} (looked for "
                      f"{', '.join(str(c) for c in candidates)}); clone it there at the registry's commit")


def _git(git_dir: Path, *args: str) -> bytes:
    try:
        return subprocess.run(["git", f"--git-dir={git_dir}", *args], check=True, capture_output=True).stdout
    except subprocess.CalledProcessError as exc:
        raise MirrorError(f"git {' '.join(args)} in {git_dir}: {exc.stderr.decode(errors='replace').strip()}") from exc


def list_files(git_dir: Path, commit: str) -> list[TreeFile]:
    """Every file (blob) of the commit, with its size."""
    if subprocess.run(["git", f"--git-dir={git_dir}", "cat-file", "-e", f"{commit}^{{commit}}"],
                      capture_output=True, check=False).returncode != 0:
        raise MirrorError(f"commit {commit} is not in {git_dir}; fetch it (git fetch origin {commit})")
    files = []
    for line in _git(git_dir, "ls-tree", "-r", "-l", "-z", commit).split(b"\0"):
        if not line:
            continue
        meta, path = line.split(b"\t", 1)
        _mode, kind, blob, size = meta.split()
        if kind == b"blob":  # size "BAD": the blob is not in the snapshot (fetch leaves out files of 4 MiB+)
            files.append(TreeFile(path.decode("utf-8", errors="surrogateescape"), blob.decode(),
                                  int(size) if size.isdigit() else ABSENT))
    return files


class BlobReader:
    """Reads blobs through one `git cat-file --batch` process (fast for thousands of files)."""

    def __init__(self, git_dir: Path) -> None:
        self._proc = subprocess.Popen(["git", f"--git-dir={git_dir}", "cat-file", "--batch"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def read(self, blob: str) -> bytes:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(blob.encode() + b"\n")
        self._proc.stdin.flush()
        header = self._proc.stdout.readline().split()
        if len(header) != 3:
            raise MirrorError(f"blob {blob} is missing from the snapshot ({b' '.join(header).decode()})")
        data = self._proc.stdout.read(int(header[2]))
        self._proc.stdout.read(1)  # the newline after each object
        return data

    def close(self) -> None:
        if self._proc.stdin is not None:
            self._proc.stdin.close()
        self._proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def iter_blobs(git_dir: Path, files: list[TreeFile]) -> Iterator[tuple[TreeFile, bytes]]:
    with BlobReader(git_dir) as reader:
        for file in files:
            yield file, reader.read(file.blob)
