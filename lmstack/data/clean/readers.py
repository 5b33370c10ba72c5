"""Reading the raw corpus: .txt, .jsonl, .parquet files and folders of them, cut into tasks and streamed.

A task is a slice of one file (byte range at a line boundary, or a run of parquet row groups) of about
``task_mb``; each becomes one output shard, so shards are the unit of parallelism and of resuming.
Bad input never stops a run: undecodable bytes become U+FFFD and are counted, and so do lone surrogate escapes
in JSON (``"\\ud800"``, the policy of every reader: ``lmstack.data.files``); a .jsonl line that is not a JSON
object with a string ``text`` field is skipped and its line number recorded.

Memory stays flat in line length: .txt files are read at most 1 MB of a line at a time, and a document longer
than ``read.max_chars`` (500,000 characters: under Gopher's 100,000-word cap for English at ~6 characters a
word) is cut into documents of at most that many characters, at the last paragraph break in the second half of
each piece, else line break, else whitespace, else a character boundary. Each piece is a document of its own:
its source is the document's ``file:line`` plus ``#k`` (k = 0, 1, ...), a .jsonl record's other fields go with
every piece, and the report counts ``cut_documents`` and ``cut_pieces`` (input section). A .jsonl record is
parsed whole, so it is held once as its line and once as its text.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Iterator

import re

import pyarrow.parquet as pq

from lmstack.data.clean.config import ReadConfig
from lmstack.data.clean.report import Stats
from lmstack.data import files as input_files
from lmstack.data.files import READ_BYTES
from lmstack.errors import LmstackError

FORMATS = {".txt": "txt", ".jsonl": "jsonl", ".parquet": "parquet"}
# Where a long document is cut, in order of preference: after a paragraph break, a line break, whitespace.
BREAKS = (re.compile(r"\n[ \t]*\n\s*"), re.compile(r"\n\s*"), re.compile(r"\s+"))


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
        return all(block.isspace() for block in iter(lambda: f.read(READ_BYTES), b""))


def _text_pieces(path: Path, step: int, blank_line: bool) -> list[tuple[int, int, int, int]]:
    """(start, stop, first line, bytes): byte ranges that end at a line end (.txt blocks: after a blank line).
    Read in bounded blocks, so a file that is one huge line costs no more memory than any other."""
    pieces, start, line, content = [], 0, 1, False
    size = path.stat().st_size
    with open(path, "rb") as f:
        while start < size:
            f.seek(min(start + step, size))
            if f.tell() < size:
                _to_line_end(f)
                while blank_line and (row := f.readline(READ_BYTES)) and row.strip():
                    _to_line_end(f, row)  # block mode: run on to the next blank line
            stop = f.tell()
            pieces.append((start, stop, line, stop - start))
            f.seek(start)
            while f.tell() < stop:
                block = f.read(min(READ_BYTES, stop - f.tell()))
                content = content or not block.isspace()
                line += block.count(b"\n")
            start = stop
    return pieces if content else []


def _to_line_end(f, head: bytes = b"") -> None:
    """Move past the end of the current line, reading it in bounded pieces."""
    while not head.endswith(b"\n"):
        head = f.readline(READ_BYTES)
        if not head:
            return


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
        docs = _read_parquet(task, cfg, stats)
    elif task.fmt == "jsonl":
        docs = _read_jsonl(task, cfg, stats)
    else:
        docs = _read_txt(task, cfg, stats)
    for doc in docs:
        yield from _cut(doc, cfg.max_chars, stats)


def decode(data: bytes, stats: Stats) -> str:
    """UTF-8 with every undecodable byte sequence replaced by U+FFFD, and counted."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        stats.count("input", "undecodable_bytes", text.count("\ufffd") - data.count("\ufffd".encode()))
        return text


def _cut(doc: Doc, max_chars: int, stats: Stats) -> Iterator[Doc]:
    """``doc``, or (longer than ``max_chars``) its pieces as documents ``source#0``, ``source#1``, ..."""
    if not max_chars or len(doc.text) <= max_chars:
        yield doc
        return
    stats.count("input", "cut_documents")
    for k, piece in enumerate(input_files.pieces_of(doc.text, max_chars, BREAKS)):
        stats.count("input", "cut_pieces")
        yield Doc(f"{doc.source}#{k}", piece, dict(doc.meta))


def _read_txt(task: Task, cfg: ReadConfig, stats: Stats) -> Iterator[Doc]:
    """Blocks (or the whole file) streamed in pieces; a block that outgrows ``max_chars`` is cut as it is read,
    so it is never held whole."""
    lines = input_files.line_pieces(task.path, task.start, task.stop, task.first_line, strict=False)

    def counted():
        for piece in lines:
            if piece.replaced:
                stats.count("input", "undecodable_bytes", piece.replaced)
            yield piece

    by_blocks = cfg.txt_unit == "block"
    cut = lambda text, n: input_files.cut_point(text, 0, n, BREAKS)  # noqa: E731
    for block in input_files.blocks(counted(), cfg.max_chars, cut, by_blank_lines=by_blocks):
        source = f"{task.path}:{block.line if by_blocks else 1}"
        if block.index == 0 and block.last:
            yield Doc(source, block.text)
            continue
        if block.index == 0:
            stats.count("input", "cut_documents")
        stats.count("input", "cut_pieces")
        yield Doc(f"{source}#{block.index}", block.text)


def _read_jsonl(task: Task, cfg: ReadConfig, stats: Stats) -> Iterator[Doc]:
    with open(task.path, "rb") as f:
        f.seek(task.start)
        line = task.first_line - 1
        while f.tell() < task.stop:
            raw = f.readline(task.stop - f.tell())
            line += 1
            if not raw.strip():
                continue
            text = decode(raw, stats)
            del raw  # a huge record is held as its line and its text, not more
            try:
                record, replaced = input_files.loads(text)
            except json.JSONDecodeError as e:
                _bad(stats, task.path, line, f"not JSON ({e.msg})")
                continue
            del text
            if replaced:
                stats.count("input", "undecodable_bytes", replaced)
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


def _bad(stats: Stats, path: str, line: int, error: str) -> None:
    stats.count("input", "bad_record_count")
    stats.note("input", "bad_records", {"file": path, "line": line, "error": error})
