"""Atomic artefact writes: temp file in the same folder, fsync, rename.

A crash or Ctrl-C at any moment leaves either the old file or the new one, never a torn one. Outputs get the
mode a plain ``open`` would give (``0666 & ~umask``; folders ``0777 & ~umask``), whatever the writer used
(``mkstemp`` and safetensors make 0600 files). A temp name carries its writer's host and pid
(``.NAME.HOST-PID-XXXXXXXX.tmp``), so the temps a killed run left are removed the next time ``NAME`` is
written: those of a dead pid on this host, and any older than ``STALE_HOURS``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import IO, Any
from collections.abc import Iterator

from lmstack.errors import LmstackError

STALE_HOURS = 24.0
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
# A temp sibling of NAME: ours (host, pid) or an older lmstack's (mkstemp's 8 random characters only).
_TEMP = re.compile(r"\.(?P<name>.+)\.(?:(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-)?[a-z0-9_]{8}\.tmp")
_SEEN: dict[Path, dict[str, list[str]]] = {}  # folder -> target name -> its temp siblings when first listed


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temp file beside ``path``; on clean exit fsync it and rename it over ``path``."""
    with atomic_path(path) as tmp, open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
        yield f


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path`` (for writers that want a filename: safetensors, numpy, matplotlib);
    on clean exit the file gets the umask's mode, is fsynced and renamed over ``path``; on any error it is
    deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        _set_mode(Path(tmp), umask())
        yield Path(tmp)
        _set_mode(Path(tmp), umask())  # the writer may have made the file anew
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def umask() -> int:
    """The process's umask, read without changing it where Linux shows it (``os.umask`` sets it, racing threads)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _set_mode(path: Path, mask: int) -> None:
    """The mode ``open`` / ``mkdir`` would give ``path`` under ``mask`` (an executable keeps its x bits)."""
    mode = path.stat().st_mode
    full = 0o777 if path.is_dir() or mode & 0o111 else 0o666
    os.chmod(path, full & ~mask)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}-{os.getpid()}-"


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Remove the temp siblings of ``path`` that killed writers left (a dead pid on this host, or older than
    ``STALE_HOURS``); return them. A folder is listed once per process; the temps of a live writer are kept."""
    path = Path(path)
    folder = path.parent.resolve()
    if folder not in _SEEN:
        found: dict[str, list[str]] = {}
        with contextlib.suppress(OSError), os.scandir(folder) as entries:
            for entry in entries:
                if (m := _TEMP.fullmatch(entry.name)) is not None:
                    found.setdefault(m["name"], []).append(entry.name)
        _SEEN[folder] = found
    removed = []
    for name in _SEEN[folder].pop(path.name, []):
        temp = folder / name
        if _is_stale(temp, _TEMP.fullmatch(name)):
            if temp.is_dir() and not temp.is_symlink():
                shutil.rmtree(temp, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()
            removed.append(temp)
    return removed


def _is_stale(temp: Path, m: re.Match) -> bool:
    if m["pid"] is not None and m["host"] == _HOST:
        pid = int(m["pid"])
        if pid == os.getpid():
            return False  # this process's own writer (another thread)
        if not _alive(pid):
            return True
    return time.time() - _newest_mtime(temp) > STALE_HOURS * 3600


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # someone else's process (or a pid we cannot ask about): keep its temp until it is old
    return True


def _newest_mtime(temp: Path) -> float:
    """When anything in ``temp`` (a file, or a folder's tree) last changed: 0 if it is gone."""
    try:
        newest = temp.lstat().st_mtime
        if temp.is_dir() and not temp.is_symlink():
            for f in temp.rglob("*"):
                with contextlib.suppress(OSError):
                    newest = max(newest, f.lstat().st_mtime)
        return newest
    except OSError:
        return 0.0


def fsync_dir(path: Path) -> None:
    """Make a rename durable (POSIX needs the directory entry flushed too)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_open(path) as f:
        json.dump(obj, f, indent=2, ensure_ascii=False)
        f.write("\n")


def refuse_existing(path: str | os.PathLike, overwrite: bool) -> None:
    """An earlier run's output at ``path`` is an error unless ``overwrite`` (a command never replaces it unasked)."""
    if Path(path).exists() and not overwrite:
        raise LmstackError(f"{path} exists (pass --overwrite to replace it, or choose another --out)")


def text_lines(path: str | os.PathLike, what: str = "file") -> Iterator[tuple[str, str]]:
    """(``file:line``, line) for each line of a UTF-8 text file, streamed; a missing file or a byte that is not
    UTF-8 is an error naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise LmstackError(f"{path}: {what} not found")
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                yield where, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise LmstackError(f"{where}: not UTF-8 (invalid byte 0x{raw[e.start]:02x})") from None


def read_jsonl(path: str | os.PathLike) -> Iterator[tuple[str, Any]]:
    """(``file:line``, value) for each non-blank line of a JSON-lines file, streamed; a missing file, a byte
    that is not UTF-8 or a line that is not JSON is an error naming the file and line."""
    for where, line in text_lines(path):
        if not line.strip():
            continue
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as e:
            raise LmstackError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise LmstackError(f"{path}: file not found")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise LmstackError(f"{path}: not valid JSON ({e})") from e


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temp folder beside ``path``; on success it replaces ``path`` as a whole.

    Readers see either the complete old folder or the complete new one (a model directory's config and
    weights never come from two different saves).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        mask = umask()
        for f in [tmp, *tmp.rglob("*")]:
            if f.is_symlink():
                continue
            _set_mode(f, mask)
            if f.is_file():
                with open(f, "rb+") as fh:
                    os.fsync(fh.fileno())
        old = path.with_name(f".{path.name}.old")
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
