"""Reading the raw corpus: .txt, .jsonl, .parquet files and folders of them, cut into tasks and streamed.

A task is a slice of one file (byte range at a line boundary, or a run of parquet row groups) of about
``task_mb``; each becomes one output shard, so shards are the unit of parallelism and of resuming.
Bad input never stops a run: undecodable bytes become U+FFFD and are counted, a .jsonl line that is not a
JSON object with a string ``text`` field is skipped and its line number recorded.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator

import pyarrow.parquet as pq

from lmstack.data.clean.config import ReadConfig
from lmstack.data.clean.report import Stats
from lmstack.data import files as input_files
from lmstack.errors import LmstackError

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".parquet": "parquet"}
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


@dataclass
class Doc:
    source: str  # "file:line" (the block's first line for .txt, the row for .parquet)
    text: str
    meta: dict = field(default_factory=dict)  # the record's other fields, written back unchanged
    lang: str = ""
    lang_score: float = 0.0


@dataclass(frozen=True)
class Task:
    index: int
    path: str
    fmt: str
    start: int  # byte offset, or first row group
    stop: int  # byte offset, or row group after the last
    first_line: int  # number of the line at ``start`` (1-based); first row for parquet
    size: int  # bytes, for progress


def find_files(inputs: list[str]) -> list[Path]:
    """The .txt/.jsonl/.parquet files named or found (recursively, sorted) in the given folders."""
    return input_files.find_files(inputs, FORMATS)


def plan(files: list[Path], cfg: ReadConfig, stats: Stats) -> list[Task]:
    """Cut every file into tasks of about ``cfg.task_mb``. Empty files are noted and yield no task."""
    tasks: list[Task] = []
    step = max(int(cfg.task_mb * 2**20), 1)
    for path in files:
        fmt = FORMATS[path.suffix]
        stats.count("input", "files")
        stats.count("input", "bytes", path.stat().st_size)
        if fmt == "parquet":
            pieces = _parquet_pieces(path, step, cfg.text_field)
        elif fmt == "txt" and cfg.txt_unit == "file":
            pieces = [(0, path.stat().st_size, 1, path.stat().st_size)] if not _blank(path) else []
        else:
            pieces = _text_pieces(path, step, blank_line=fmt == "txt")
        if not pieces:
            stats.note("input", "empty_files", str(path))
        tasks += [Task(len(tasks) + i, str(path), fmt, *piece) for i, piece in enumerate(pieces)]
    return tasks


def _blank(path: Path) -> bool:
    with open(path, "rb") as f:
        return all(block.isspace() for block in iter(lambda: f.read(2**24), b""))


def _text_pieces(path: Path, step: int, blank_line: bool) -> list[tuple[int, int, int, int]]:
    """(start, stop, first line, bytes): byte ranges that end at a line end (.txt blocks: after a blank line)."""
    pieces, start, line, content = [], 0, 1, False
    size = path.stat().st_size
    with open(path, "rb") as f:
        while start < size:
            f.seek(min(start + step, size))
            if f.tell() < size:
                while (row := f.readline()) and blank_line and row.strip():
                    pass  # block mode: run on to the next blank line
            stop = f.tell()
            f.seek(start)
            chunk = f.read(stop - start)
            content = content or not chunk.isspace()
            pieces.append((start, stop, line, stop - start))
            line += chunk.count(b"\n")
            start = stop
    return pieces if content else []


def _parquet_pieces(path: Path, step: int, text_field: str) -> list[tuple[int, int, int, int]]:
    """(first row group, row group after the last, first row, bytes) for runs of row groups of about ``step``."""
    try:
        meta = pq.ParquetFile(path).metadata
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise LmstackError(f"{path}: not a readable parquet file ({e})") from e
    if text_field not in meta.schema.names:
        raise LmstackError(f"{path}: no '{text_field}' column (columns: {', '.join(meta.schema.names)}); "
                           f"set read.text_field")
    pieces, first, size, row = [], 0, 0, 1
    for g in range(meta.num_row_groups):
        size += meta.row_group(g).total_byte_size
        if size >= step or g == meta.num_row_groups - 1:
            rows = sum(meta.row_group(i).num_rows for i in range(first, g + 1))
            if rows:
                pieces.append((first, g + 1, row, size))
            first, size, row = g + 1, 0, row + rows
    return pieces


def read_task(task: Task, cfg: ReadConfig, stats: Stats) -> Iterator[Doc]:
    if task.fmt == "parquet":
        yield from _read_parquet(task, cfg, stats)
        return
    with open(task.path, "rb") as f:
        f.seek(task.start)
        data = f.read(task.stop - task.start)
    if task.fmt == "jsonl":
        yield from _read_jsonl(task, data, cfg, stats)
    elif cfg.txt_unit == "file":
        yield Doc(f"{task.path}:1", decode(data, stats))
    else:
        yield from _read_blocks(task, decode(data, stats))


def decode(data: bytes, stats: Stats) -> str:
    """UTF-8 with every undecodable byte sequence replaced by U+FFFD, and counted."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        stats.count("input", "undecodable_bytes", text.count("\ufffd") - data.count("\ufffd".encode()))
        return text


def _read_blocks(task: Task, text: str) -> Iterator[Doc]:
    block: list[str] = []
    start = task.first_line
    for i, line in enumerate(text.split("\n")):
        if line.strip():
            if not block:
                start = task.first_line + i
            block.append(line)
        elif block:
            yield Doc(f"{task.path}:{start}", "\n".join(block))
            block = []
    if block:
        yield Doc(f"{task.path}:{start}", "\n".join(block))


def _read_jsonl(task: Task, data: bytes, cfg: ReadConfig, stats: Stats) -> Iterator[Doc]:
    for i, raw in enumerate(data.split(b"\n")):
        if not raw.strip():
            continue
        line = task.first_line + i
        try:
            record = json.loads(decode(raw, stats))
        except json.JSONDecodeError as e:
            _bad(stats, task.path, line, f"not JSON ({e.msg})")
            continue
        if _SURROGATE_ESCAPE.search(raw):
            record = _no_surrogates(record, stats)
        text = record.pop(cfg.text_field, None) if isinstance(record, dict) else None
        if not isinstance(text, str):
            _bad(stats, task.path, line, f"no string '{cfg.text_field}' field")
            continue
        yield Doc(f"{task.path}:{line}", text, record)


def _read_parquet(task: Task, cfg: ReadConfig, stats: Stats) -> Iterator[Doc]:
    pf = pq.ParquetFile(task.path)
    row = task.first_line
    for g in range(task.start, task.stop):
        for record in pf.read_row_group(g).to_pylist():
            text = record.pop(cfg.text_field)
            if isinstance(text, str):
                yield Doc(f"{task.path}:{row}", text, record)
            else:
                _bad(stats, task.path, row, f"'{cfg.text_field}' is {type(text).__name__}, not a string")
            row += 1


def _no_surrogates(value, stats: Stats):
    """JSON can spell lone surrogates (\\ud800) that no UTF-8 writer accepts: replace and count them."""
    if isinstance(value, str):
        fixed, n = _SURROGATE.subn("\ufffd", value)
        stats.count("input", "undecodable_bytes", n)
        return fixed
    if isinstance(value, list):
        return [_no_surrogates(v, stats) for v in value]
    if isinstance(value, dict):
        return {_no_surrogates(k, stats): _no_surrogates(v, stats) for k, v in value.items()}
    return value


def _bad(stats: Stats, path: str, line: int, error: str) -> None:
    stats.count("input", "bad_record_count")
    stats.note("input", "bad_records", {"file": path, "line": line, "error": error})
