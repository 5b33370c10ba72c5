"""The passages an index holds, read from .jsonl files and folders of .txt/.md/.jsonl documents.

A .jsonl record is one passage: its ``id`` is kept as given (a number becomes its decimal string) and its
``text`` is not cut. A .txt or .md file is one document, cut into overlapping chunks of characters whose ids
are the file's path relative to the folder named on the command line (its name, for a file named directly)
plus ``#`` and the chunk number: ``guide/setup.md#0``, ``guide/setup.md#1``. Chunks end at a space or a
sentence mark where one lies in their second half, so English words are not cut and Chinese chunks end at
a 。 where they can. Files must be UTF-8: the first invalid byte is an error naming the file and offset.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lmstack.data.files import find_files, read_jsonl
from lmstack.errors import LmstackError

SUFFIXES = (".jsonl", ".txt", ".md")
INDEX_MANIFEST_FORMAT = "lmstack-index-1"
# Where a chunk may end: after whitespace, or after a sentence or clause mark (Latin or CJK).
_BREAK = re.compile(r"[\s。！？；，、.!?;,]")


@dataclass(frozen=True)
class Passage:
    id: str
    text: str


@dataclass
class Corpus:
    passages: list[Passage]
    files: int
    skipped_empty: list[str]  # files or records with no text, by name (file, or file:line)


def read_corpus(inputs: Iterable[str | Path], chunk_size: int = 1000, chunk_overlap: int = 200) -> Corpus:
    """All passages of ``inputs`` (files or folders), in a stable order; ids must be unique."""
    if chunk_size < 1 or not 0 <= chunk_overlap < chunk_size:
        raise LmstackError(f"chunking needs chunk_size >= 1 and 0 <= chunk_overlap < chunk_size, "
                           f"got {chunk_size} and {chunk_overlap}")
    passages: list[Passage] = []
    seen: dict[str, str] = {}
    skipped: list[str] = []
    n_files = 0
    for root in map(Path, inputs):
        for path in _files(root):
            n_files += 1
            if path.suffix == ".jsonl":
                found = _jsonl_passages(path, skipped)
            else:
                rel = path.relative_to(root).as_posix() if root.is_dir() else path.name
                found = _chunk_passages(path, rel, chunk_size, chunk_overlap, skipped)
            for p in found:
                if p.id in seen:
                    raise LmstackError(f"{path}: duplicate passage id {p.id!r} (first seen in {seen[p.id]})")
                seen[p.id] = str(path)
                passages.append(p)
    if not passages:
        raise LmstackError(f"{', '.join(map(str, inputs))}: no passages to index (all files are empty)")
    return Corpus(passages, n_files, skipped)


def chunk(text: str, size: int, overlap: int) -> list[str]:
    """Cut ``text`` into chunks of at most ``size`` characters, each starting about ``overlap`` characters
    before the previous one ended; together they cover every character."""
    text = text.strip()
    chunks: list[str] = []
    start = 0
    while start < len(text):
        end = min(start + size, len(text))
        if end < len(text):
            breaks = [m.end() for m in _BREAK.finditer(text, start + size // 2, end)]
            end = breaks[-1] if breaks else end
        piece = text[start:end].strip()
        if piece:
            chunks.append(piece)
        if end == len(text):
            break
        # Step back by ``overlap``; if that lands inside a word, forward to the next word's start (when the
        # overlap holds one: unspaced Chinese starts mid-sentence rather than lose its overlap).
        start = max(end - overlap, start + 1)
        word = _BREAK.match(text, start - 1) is None and _BREAK.search(text, start, end - 1)
        start = word.end() if word else start
    return chunks


def _files(root: Path) -> list[Path]:
    """``find_files`` for one input, leaving out the passages file inside an lmstack index found in a folder."""
    files = find_files([root], SUFFIXES)
    if not root.is_dir():
        return files
    indexes = {m.parent for m in root.rglob("manifest.json") if _is_index(m)}
    kept = [f for f in files if not indexes.intersection(f.parents)]
    if not kept:
        raise LmstackError(f"{root}: no {', '.join(SUFFIXES)} files in this folder (outside lmstack indexes)")
    return kept


def _is_index(manifest: Path) -> bool:
    try:
        return json.loads(manifest.read_text(encoding="utf-8")).get("format") == INDEX_MANIFEST_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _chunk_passages(path: Path, rel: str, size: int, overlap: int, skipped: list[str]) -> list[Passage]:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError as e:
        raise LmstackError(f"{path}: not UTF-8 (invalid byte 0x{data[e.start]:02x} at offset {e.start})") from e
    pieces = chunk(text, size, overlap)
    if not pieces:
        skipped.append(str(path))
    return [Passage(f"{rel}#{i}", piece) for i, piece in enumerate(pieces)]


def _jsonl_passages(path: Path, skipped: list[str]) -> Iterator[Passage]:
    for where, pid, text in read_passages_jsonl(path):
        if text.strip():
            yield Passage(pid, text)
        else:
            skipped.append(where)


def read_passages_jsonl(path: Path) -> Iterator[tuple[str, str, str]]:
    """(``file:line``, id, text) for each record of a .jsonl file of ``{"id", "text"}`` objects (blank lines
    skipped; lone surrogate escapes become U+FFFD, counted in a warning); anything else is an error naming the
    line."""
    for where, rec in read_jsonl(path):
        if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
            raise LmstackError(f"{where}: expected a JSON object with a string 'text' field")
        rid = rec.get("id")
        if isinstance(rid, bool) or not isinstance(rid, (str, int)) or rid == "":
            raise LmstackError(f"{where}: expected an 'id' field (a string or an integer)")
        yield where, str(rid), rec["text"]
