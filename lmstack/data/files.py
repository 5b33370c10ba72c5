"""Which files a data command reads: the ones named, and the matching files found in named folders."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterable

from lmstack.errors import LmstackError


def find_files(inputs: Iterable[str | Path], suffixes: Iterable[str]) -> list[Path]:
    """Files named in ``inputs`` plus those with one of ``suffixes`` found in named folders (recursively,
    sorted, so every run reads them in the same order). Missing or unsupported paths are one-line errors."""
    suffixes = tuple(suffixes)
    kinds = " or ".join([", ".join(suffixes[:-1]), suffixes[-1]] if len(suffixes) > 1 else suffixes)
    files: list[Path] = []
    for path in map(Path, inputs):
        if not path.exists():
            raise LmstackError(f"{path}: no such file or directory")
        if path.is_dir():
            found = sorted(f for f in path.rglob("*") if f.suffix in suffixes and f.is_file() and _wanted(f, path))
            if not found:
                raise LmstackError(f"{path}: no {kinds} files in this folder")
            files += found
        elif path.suffix in suffixes:
            files.append(path)
        else:
            raise LmstackError(f"{path}: expected a {kinds} file, or a folder of them")
    return files


def _wanted(file: Path, root: Path) -> bool:
    """Skip hidden files and folders, and the ``removed/`` folder of an ``lmstack clean`` output (marked by the
    ``.state/`` folder clean writes first): it holds the documents the cleaner dropped."""
    parts = file.relative_to(root).parts
    return not any(p.startswith(".") or p == "removed" and (root.joinpath(*parts[:i]) / ".state").is_dir()
                   for i, p in enumerate(parts))
