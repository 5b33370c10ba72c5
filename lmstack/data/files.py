"""Reading a data command's input files: which files, their lines in bounded pieces, and JSON without surrogates.

* ``find_files``: the files named, and the matching files found in named folders.
* ``line_pieces`` / ``blocks``: a file (or a byte range of it) as lines read at most ``READ_BYTES`` at a time, and
  as blank-line separated blocks handed out in pieces of at most ``max_chars`` characters, so memory stays flat
  however long a line is (a 50 MB line without a newline is read 1 MB at a time). ``cut_point`` chooses where a
  piece ends: at the last place in its second half where one of the caller's break patterns matches, else at a
  character boundary.
* ``loads`` / ``read_jsonl`` / ``read_json``: JSON can spell lone UTF-16 surrogates (``"\\ud800"``) that no
  UTF-8 writer or tokenizer accepts. Every JSON reader of the data commands goes through these: each lone
  surrogate becomes U+FFFD and is counted (the count is returned, or warned once per file on stderr), the one
  policy ``lmstack clean`` already had.
"""

from __future__ import annotations

import codecs
import json
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from lmstack import io
from lmstack.errors import LmstackError

READ_BYTES = 1 << 20  # the most bytes of one line read at once
SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


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


# --- lines and blocks in bounded pieces -----------------------------------------------------------------

class LinePiece(NamedTuple):
    line: int  # number (1-based) of the line this piece belongs to
    text: str
    end: bool  # the piece ends its line (its newline, or the end of the range)
    replaced: int  # undecodable bytes replaced by U+FFFD in this piece (lenient reading only)


def line_pieces(path: str | Path, start: int = 0, stop: int | None = None, first_line: int = 1,
                strict: bool = True, max_bytes: int = READ_BYTES) -> Iterator[LinePiece]:
    """The lines of bytes ``[start, stop)`` of a UTF-8 file, each in pieces of at most ``max_bytes`` bytes.

    ``strict``: an invalid byte is an error naming its offset and line; else it becomes U+FFFD, counted in
    ``replaced``. A character split between two reads is decoded whole, in the later piece."""
    decoder = codecs.getincrementaldecoder("utf-8")("strict" if strict else "replace")
    line, open_line = first_line, False  # open_line: a piece of the current line was handed out, not its end
    with open(path, "rb") as f:
        f.seek(start)
        offset, remaining = start, (stop - start) if stop is not None else None
        while remaining is None or remaining > 0:
            limit = max_bytes if remaining is None else min(max_bytes, remaining)
            raw = f.readline(limit)
            if remaining is not None:
                remaining -= len(raw)
            newline = raw.endswith(b"\n")
            last = not raw or remaining == 0 or (len(raw) < limit and not newline)
            buffered = len(decoder.getstate()[0])
            try:
                text = decoder.decode(raw, final=last)
            except UnicodeDecodeError as e:
                raise LmstackError(f"{path}: not valid UTF-8 at byte {offset - buffered + e.start} (line {line}); "
                                   "convert it to UTF-8 first") from None
            offset += len(raw)
            replaced = 0 if strict else text.count("\ufffd") - raw.count("\ufffd".encode())
            if text or newline or (last and open_line):
                yield LinePiece(line, text, newline or last, max(replaced, 0))
                open_line = not (newline or last)
            if newline:
                line += 1
            if last:
                return


class BlockPiece(NamedTuple):
    line: int  # first line of the block
    index: int  # 0 for a block's first piece, then 1, 2, ...
    text: str
    last: bool  # the block's last piece


def blocks(pieces: Iterable[LinePiece], max_chars: int, cut: Callable[[str, int], int],
           by_blank_lines: bool = True) -> Iterator[BlockPiece]:
    """Blocks of lines separated by blank (whitespace-only) lines, or the whole input (``by_blank_lines=False``),
    in pieces of at most ``max_chars`` characters (0: no bound) ending where ``cut(text, max_chars)`` says.
    A block's final line break is dropped (without ``by_blank_lines`` the text is kept exactly)."""
    buf: list[str] = []
    size, start, index = 0, 0, 0
    pending: list[str] = []  # whitespace read at the start of a line not yet known to hold text
    line_has_text = False
    for p in pieces:
        if p.text.strip() or line_has_text or not by_blank_lines:
            if not buf and not pending:
                start = p.line
            buf += pending + [p.text]
            size += sum(map(len, pending)) + len(p.text)
            pending = []
            line_has_text = line_has_text or bool(p.text.strip())
        else:
            if not buf and not pending:
                start = p.line
            pending.append(p.text)
            if sum(map(len, pending)) > max(max_chars, READ_BYTES):
                pending = pending[-1:]  # a line of nothing but whitespace: keep what may lead its text
        if p.end:
            if not line_has_text and by_blank_lines:
                if buf:
                    yield BlockPiece(start, index, "".join(buf).rstrip("\r\n"), True)
                buf, size, index = [], 0, 0
                pending = []
            line_has_text = False
        while max_chars and size > max_chars:
            text = "".join(buf)
            k = cut(text, max_chars)
            yield BlockPiece(start, index, text[:k], False)
            buf, size, index = [text[k:]], len(text) - k, index + 1
    if buf:
        text = "".join(buf)
        yield BlockPiece(start, index, text.rstrip("\r\n") if by_blank_lines else text, True)


def cut_point(text: str, start: int, size: int, breaks: Sequence[re.Pattern]) -> int:
    """Where the piece of ``text`` that begins at ``start`` ends, at most ``size`` characters on: the end of the
    text if it is that near, else the end of the last match, in the piece's second half, of the first of
    ``breaks`` that matches there (patterns may look ahead past the cut), else ``start + size``."""
    limit = start + size
    if len(text) <= limit:
        return len(text)
    lowest = start + size // 2
    for pattern in breaks:
        width = 256
        while True:  # look back from the limit in growing windows: the last match is usually near it
            lo = max(lowest, limit - width)
            ends = [m.end() for m in pattern.finditer(text, lo, min(len(text), limit + 64)) if lo < m.end() <= limit]
            if ends:
                return ends[-1]
            if lo == lowest:
                break
            width *= 4
    return limit


def pieces_of(text: str, size: int, breaks: Sequence[re.Pattern]) -> Iterator[str]:
    """``text`` in consecutive pieces of at most ``size`` characters cut by ``cut_point`` (one piece if short)."""
    start = 0
    while True:
        end = cut_point(text, start, size, breaks)
        yield text[start:end]
        if end >= len(text):
            return
        start = end


# --- JSON, one surrogate policy --------------------------------------------------------------------------

def replace_surrogates(value: Any) -> tuple[Any, int]:
    """``value`` (a parsed JSON value) with every lone surrogate in its strings and keys replaced by U+FFFD, and
    how many were replaced. Surrogate pairs (``"\\ud83d\\ude00"``) are one character after ``json.loads``."""
    if isinstance(value, str):
        return SURROGATE.subn("\ufffd", value)
    if isinstance(value, list):
        fixed = [replace_surrogates(v) for v in value]
        return [v for v, _ in fixed], sum(n for _, n in fixed)
    if isinstance(value, dict):
        out, total = {}, 0
        for k, v in value.items():
            (k, a), (v, b) = replace_surrogates(k), replace_surrogates(v)
            out[k] = v
            total += a + b
        return out, total
    return value, 0


def loads(line: str) -> tuple[Any, int]:
    """``json.loads(line)`` with lone surrogates replaced by U+FFFD; returns (value, replaced). Only a line that
    spells a surrogate escape is walked, so the common case costs one regex search."""
    value = json.loads(line)
    return replace_surrogates(value) if _SURROGATE_ESCAPE.search(line) else (value, 0)


def read_jsonl(path: str | Path) -> Iterator[tuple[str, Any]]:
    """``lmstack.io.read_jsonl`` (``file:line``, value) with lone surrogates replaced by U+FFFD; how many is
    warned on stderr once the file is read."""
    replaced = 0
    for where, value in io.read_jsonl(path):
        value, n = replace_surrogates(value)
        replaced += n
        yield where, value
    warn_replaced(path, replaced)


def read_json(path: str | Path) -> Any:
    """``lmstack.io.read_json`` with lone surrogates replaced by U+FFFD (and warned on stderr)."""
    value, replaced = replace_surrogates(io.read_json(path))
    warn_replaced(path, replaced)
    return value


def warn_replaced(path: str | Path, replaced: int) -> None:
    if replaced:
        print(f"warning: {path}: {replaced} lone surrogate escape(s) (\\ud800-\\udfff) replaced by U+FFFD",
              file=sys.stderr, flush=True)
