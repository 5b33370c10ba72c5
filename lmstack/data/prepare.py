"""``lmstack prepare``: text files -> a tokenizer + token shards a trainer can memory-map.

Inputs are .txt and .jsonl files, or folders searched recursively for them (sorted; hidden names, and the
``removed/`` folder of dropped documents in an ``lmstack clean`` output, are skipped):

* ``.txt``: documents are separated by blank lines (a paragraph is a document).
* ``.jsonl``: one JSON object per line with a string ``text`` field (the output of ``lmstack clean``).
  Blank lines and empty texts are skipped; lone surrogate escapes (``"\\ud800"``) become U+FFFD and are counted
  (``replaced_surrogates`` in the result and the manifest).

Every document is followed by the eos token; special-token strings inside a text are encoded as plain text, so
a document that happens to contain "<|eos|>" cannot fake a boundary (``--chat-markup`` makes the chat
template's turn markers ``<|im_start|>``/``<|im_end|>`` special tokens, for corpora with chat text). A
document goes to the validation split when a keyed hash of its bytes falls under ``val_fraction``:
reproducible, independent of file order, and exact duplicates never straddle train and val. Tokens go to
``{split}_NNN.bin`` (raw ``uint16`` when the vocabulary fits, else ``uint32``), written under temp names and
renamed at the end; ``manifest.json`` is written last, so a folder with a manifest is always complete.

Nothing holds the corpus in memory, nor one long document: files are read at most 1 MB of a line at a time, and
a document longer than ``PIECE_CHARS`` (256K characters) is read, sampled for the tokenizer and encoded in
pieces of at most that many characters (it stays one document: one eos, one split). A piece ends at the last
single space or newline between two non-space characters in its second half, else before a sentence or clause
mark between two letters or digits (``。！？；，、.!?;,``). Regex pre-tokenizers (byte-level BPE as GPT-2's,
Qwen2's and Llama 3's, and ours) split there anyway, so the tokens equal those of the whole document; only text
with neither in 128K characters is cut at a character boundary, where the one word across the cut is encoded as
two. A long document's split is decided by the hash of its first piece (the whole document when it is shorter).
A .jsonl record is parsed whole (a 50 MB record holds its line and its text once).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import random
import re
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import chain
from pathlib import Path
from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np
from tqdm import tqdm

from lmstack.data import files as input_files
from lmstack.text.tokenizer import IM_END, IM_START, Tokenizer, add_sentinels, train_bpe, train_char
from lmstack.errors import LmstackError
from lmstack.io import atomic_path, write_json

SUFFIXES = (".txt", ".jsonl")
SPLITS = ("train", "val")
PIECE_CHARS = 1 << 18  # a longer document is read and encoded in pieces of at most this many characters
BATCH_BYTES = 1 << 20
# Where a piece may end (see the module docstring): before a lone space / newline between non-spaces, or before
# a sentence mark between two letters or digits; regex pre-tokenizers split there, so the tokens are unchanged.
BREAKS = (re.compile(r"(?<=\S)(?=[ \n]\S)|(?<=[^\W_])(?=[。！？；，、.!?;,][^\W_])"),)


class Piece(NamedTuple):
    """A document, or one piece of a long one."""
    text: str
    first: bool  # the document's first piece (its split is decided here)
    last: bool  # the document's last piece (eos follows)


def prepare(
    inputs: list[Path],
    out: Path = Path("runs/data"),
    tokenizer: str = "bpe",
    vocab_size: int = 4096,
    val_fraction: float = 0.05,
    seed: int = 0,
    tokenizer_sample_mb: float = 64.0,
    shard_tokens: int = 100_000_000,
    chat_markup: bool = False,
    split_digits: bool = False,
    sentinels: int = 0,
) -> dict:
    """Train (or reuse) a tokenizer and write train/val token shards plus manifest.json.

    Args:
        inputs: .txt / .jsonl files or folders of them (a cleaned folder from lmstack clean works)
        out: folder for tokenizer.json, the {train,val}_NNN.bin shards and manifest.json
        tokenizer: bpe or char to train one, or the path of a tokenizer.json or a folder holding one
        vocab_size: vocabulary size for a trained bpe tokenizer
        val_fraction: share of documents held out for validation
        seed: key of the hash that splits documents, and of the tokenizer's training sample
        tokenizer_sample_mb: train the tokenizer on at most this many MB of training documents
        shard_tokens: tokens per shard file
        chat_markup: encode <|im_start|> and <|im_end|> in the text as the special tokens (chat-formatted text)
        split_digits: a trained bpe tokenizer makes every digit a token of its own (as LLaMA and Qwen do)
        sentinels: add T5's <extra_id_0>..<extra_id_{N-1}> (last, <extra_id_0> highest), <mask> and UL2's [R] [S]
            [X] to the tokenizer, for span corruption, infilling and UL2 (lmstack train --objective ...)
    """
    start = time.perf_counter()
    if not 0 <= val_fraction < 1:
        raise LmstackError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if sentinels < 0:
        raise LmstackError(f"--sentinels must be 0 or more, got {sentinels}")
    if shard_tokens < 1:
        raise LmstackError(f"--shard-tokens must be positive, got {shard_tokens}")
    out = Path(out)
    files = find_files(inputs)
    total_bytes = sum(f.stat().st_size for f in files)
    split_of = splitter(seed, val_fraction)
    log(f"{len(files)} file(s), {total_bytes / 2**20:.1f} MB")
    if split_digits and tokenizer != "bpe":
        raise LmstackError(f"--split-digits applies to a trained bpe tokenizer, not --tokenizer {tokenizer}")
    tok = get_tokenizer(tokenizer, files, total_bytes, split_of, vocab_size, seed, int(tokenizer_sample_mb * 2**20),
                        split_digits)
    tok = add_sentinels(tok, sentinels)
    if tok.eos_id is None:
        raise LmstackError(f"--tokenizer {tokenizer}: the tokenizer has no eos token, which ends every document")
    dtype = np.dtype(np.uint16 if tok.vocab_size <= 2**16 else np.uint32)

    with contextlib.ExitStack() as stack:  # on any error, the temp shards are deleted
        writers = {s: ShardWriter(out, s, dtype, shard_tokens, stack) for s in SPLITS}
        counts: dict[str, int] = {}
        stats = encode_corpus(files, tok, split_of, writers, total_bytes, chat_markup, counts)
        (out / "manifest.json").unlink(missing_ok=True)  # no manifest while old and new shards mix
    for w in writers.values():
        w.remove_stale()
    tok.save(out)
    splits = {s: {**stats[s], "tokens": writers[s].tokens, "shards": writers[s].shards} for s in SPLITS}
    write_json(out / "manifest.json", {
        "format": "lmstack-shards-1",
        "dtype": dtype.name,
        "vocab_size": tok.vocab_size,
        "eos_id": tok.eos_id,
        "tokenizer": "tokenizer.json",
        "tokenizer_sha256": tok.sha256,
        "val_fraction": val_fraction,
        "seed": seed,
        "inputs": [str(p) for p in inputs],
        "splits": splits,
        "replaced_surrogates": counts.get("replaced_surrogates", 0),
    })
    input_files.warn_replaced(", ".join(map(str, inputs)), counts.get("replaced_surrogates", 0))
    if val_fraction > 0 and not splits["val"]["documents"]:
        log("warning: no document fell in the validation split; use more documents or a larger --val-fraction")
    seconds = time.perf_counter() - start
    tokens = sum(s["tokens"] for s in splits.values())
    return {
        "out": str(out),
        "vocab_size": tok.vocab_size,
        "dtype": dtype.name,
        "train_documents": splits["train"]["documents"],
        "val_documents": splits["val"]["documents"],
        "train_tokens": splits["train"]["tokens"],
        "val_tokens": splits["val"]["tokens"],
        "tokens_per_byte": tokens / max(1, sum(s["bytes"] for s in splits.values())),
        "replaced_surrogates": counts.get("replaced_surrogates", 0),
        "seconds": round(seconds, 2),
        "tokens_per_second": round(tokens / seconds),
    }


def log(message: str) -> None:
    print(f"prepare: {message}", file=sys.stderr, flush=True)


def find_files(inputs: list[Path]) -> list[Path]:
    """The .txt/.jsonl files named or found (recursively, sorted) in the given folders."""
    return input_files.find_files(inputs, SUFFIXES)


def read_documents(path: Path) -> Iterator[str]:
    """The documents of one .txt or .jsonl file, whole (``read_pieces`` hands long ones out in pieces)."""
    parts: list[str] = []
    for piece in read_pieces(path):
        parts.append(piece.text)
        if piece.last:
            yield "".join(parts)
            parts = []


def read_pieces(path: Path, counts: dict[str, int] | None = None) -> Iterator[Piece]:
    """The documents of one .txt or .jsonl file in pieces of at most ``PIECE_CHARS`` characters; lone surrogates
    replaced in .jsonl texts are added to ``counts["replaced_surrogates"]``."""
    if path.stat().st_size == 0:
        raise LmstackError(f"{path}: file is empty")
    n = 0
    for piece in _jsonl_pieces(path, counts) if path.suffix == ".jsonl" else _txt_pieces(path):
        n += piece.last
        yield piece
    if n == 0:
        raise LmstackError(f"{path}: no documents in the file (only blank lines or empty texts)")


def _cut(text: str, size: int) -> int:
    return input_files.cut_point(text, 0, size, BREAKS)


def _txt_pieces(path: Path) -> Iterator[Piece]:
    for block in input_files.blocks(input_files.line_pieces(path), PIECE_CHARS, _cut):
        yield Piece(block.text, block.index == 0, block.last)


def _jsonl_pieces(path: Path, counts: dict[str, int] | None) -> Iterator[Piece]:
    for lineno, offset, raw in _raw_lines(path):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise LmstackError(f"{path}: not valid UTF-8 at byte {offset + e.start} (line {lineno}); "
                               "convert it to UTF-8 first") from None
        del raw  # a huge record is held once as its line and once as its text, not more
        try:
            record, replaced = input_files.loads(line)
        except json.JSONDecodeError as e:
            raise LmstackError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
        del line
        text = record.get("text") if isinstance(record, dict) else None
        if not isinstance(text, str):
            raise LmstackError(f'{path}:{lineno}: expected a JSON object with a string "text" field')
        if counts is not None and replaced:
            counts["replaced_surrogates"] = counts.get("replaced_surrogates", 0) + replaced
        del record
        if text:
            pieces = input_files.pieces_of(text, PIECE_CHARS, BREAKS)
            piece = next(pieces)
            first = True
            for following in pieces:
                yield Piece(piece, first, False)
                piece, first = following, False
            yield Piece(piece, first, True)


def _raw_lines(path: Path) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, line) of a file."""
    offset = 0
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            yield lineno, offset, raw
            offset += len(raw)


def splitter(seed: int, val_fraction: float) -> Callable[[bytes], str]:
    """document bytes -> "train" or "val", by a hash keyed with ``seed``."""
    key = seed.to_bytes(8, "little", signed=True)
    threshold = int(val_fraction * 2**64)

    def split_of(data: bytes) -> str:
        h = int.from_bytes(hashlib.blake2b(data, digest_size=8, key=key).digest(), "little")
        return "val" if h < threshold else "train"

    return split_of


def get_tokenizer(spec: str, files: list[Path], total_bytes: int, split_of: Callable[[bytes], str],
                  vocab_size: int, seed: int, budget: int, split_digits: bool = False) -> Tokenizer:
    """Load the tokenizer at path ``spec``, or train a "bpe"/"char" one on a sample of training documents."""
    if spec not in ("bpe", "char"):
        if not Path(spec).exists():
            raise LmstackError(f"--tokenizer {spec}: expected bpe, char, or the path of a tokenizer.json or its folder")
        return Tokenizer.load(spec)
    log(f"training a {spec} tokenizer on up to {budget / 2**20:.0f} MB of training documents")
    sample = training_sample(files, total_bytes, split_of, seed, budget)
    return train_bpe(sample, vocab_size, split_digits=split_digits) if spec == "bpe" else train_char(sample)


def training_sample(files: list[Path], total_bytes: int, split_of: Callable[[bytes], str], seed: int,
                    budget: int) -> Iterator[str]:
    """Pieces of training-split documents, each document kept with probability budget/total, until ``budget``
    bytes are taken (the trainer sees bounded pieces, never one huge string)."""
    keep = min(1.0, budget / max(1, total_bytes))
    rng = random.Random(seed)
    taken, wanted = 0, False
    for piece in _all_pieces(files):
        if piece.first:
            data = piece.text.encode("utf-8")
            wanted = rng.random() < keep and split_of(data) == "train"
        if wanted:
            yield piece.text
            taken += len(piece.text.encode("utf-8"))
            if taken >= budget:
                return


def _all_pieces(files: list[Path], counts: dict[str, int] | None = None) -> Iterator[Piece]:
    return chain.from_iterable(read_pieces(f, counts) for f in files)


class ShardWriter:
    """Appends tokens to ``{split}_000.bin``, ``{split}_001.bin``, ... (``shard_tokens`` each) under temp
    names that ``stack`` renames into place when it closes without error."""

    def __init__(self, out: Path, split: str, dtype: np.dtype, shard_tokens: int, stack: contextlib.ExitStack):
        self.out, self.split, self.dtype, self.shard_tokens, self.stack = out, split, dtype, shard_tokens, stack
        self.shards: list[dict] = []  # {"file": name, "tokens": count}, as in the manifest
        self.file = None

    @property
    def tokens(self) -> int:
        return sum(s["tokens"] for s in self.shards)

    def write(self, tokens: np.ndarray) -> None:
        while len(tokens):
            if self.file is None or self.shards[-1]["tokens"] == self.shard_tokens:
                name = f"{self.split}_{len(self.shards):03d}.bin"
                self.file = self.stack.enter_context(open(self.stack.enter_context(atomic_path(self.out / name)), "wb"))
                self.shards.append({"file": name, "tokens": 0})
            room = self.shard_tokens - self.shards[-1]["tokens"]
            tokens[:room].tofile(self.file)
            self.shards[-1]["tokens"] += len(tokens[:room])
            tokens = tokens[room:]

    def remove_stale(self) -> None:
        """Delete shards of this split left by an earlier, larger run in the same folder."""
        keep = {s["file"] for s in self.shards}
        for path in self.out.glob(f"{self.split}_*.bin"):
            if path.name not in keep:
                path.unlink()


def _encode_batch(tok: Tokenizer, texts: list[str], ends: list[bool], chat_markup: bool) -> list[list[int]]:
    """Each text, + eos where it ends its document; special-token strings are plain text, except the turn
    markers with ``chat_markup``."""
    if not chat_markup:
        encoded = tok.encode_batch(texts, specials=False)
    else:
        marker = re.compile(f"({re.escape(IM_START)}|{re.escape(IM_END)})")
        encoded = []
        for text in texts:
            parts = marker.split(text)  # odd positions are the markers
            encoded.append([i for n, part in enumerate(parts) if part
                            for i in (tok.encode(part) if n % 2 else tok.encode(part, specials=False))])
    return [ids + [tok.eos_id] if end else ids for ids, end in zip(encoded, ends)]


def encode_corpus(files: list[Path], tok: Tokenizer, split_of: Callable[[bytes], str],
                  writers: dict[str, ShardWriter], total_bytes: int, chat_markup: bool = False,
                  counts: dict[str, int] | None = None) -> dict[str, dict[str, int]]:
    """Encode every document (+ eos) into its split's shards; return documents and UTF-8 bytes per split.

    The tokenizer releases the GIL, so one batch is encoded in a worker thread while this thread reads and
    hashes the next one and writes the previous one. A long document's pieces all go to the split of its first.
    """
    stats = {s: {"documents": 0, "bytes": 0} for s in SPLITS}
    split = SPLITS[0]
    with tqdm(total=total_bytes, unit="B", unit_scale=True, desc="prepare", mininterval=1) as progress, \
            ThreadPoolExecutor(1) as pool:
        pending = None
        for batch in _batches(_all_pieces(files, counts)):
            # special-token strings inside a text ("<|eos|>") are encoded as plain text
            encoded = pool.submit(_encode_batch, tok, [p.text for p in batch], [p.last for p in batch], chat_markup)
            sizes, splits = [], []
            for piece in batch:
                data = piece.text.encode("utf-8")
                if piece.first:
                    split = split_of(data)
                sizes.append(len(data))
                splits.append(split)
            job = (sizes, splits, [p.last for p in batch], encoded)
            if pending:
                _write(*pending, writers, stats, progress)
            pending = job
        if pending:
            _write(*pending, writers, stats, progress)
        progress.update(progress.total - progress.n)  # the total counts file bytes, JSON framing included
    return stats


def _write(sizes: list[int], splits: list[str], ends: list[bool], encoded: Future, writers: dict[str, ShardWriter],
           stats: dict[str, dict[str, int]], progress: tqdm) -> None:
    ids = encoded.result()
    for s, writer in writers.items():
        mine = [i for i, x in zip(ids, splits) if x == s]
        writer.write(np.fromiter(chain.from_iterable(mine), dtype=writer.dtype, count=sum(map(len, mine))))
        stats[s]["documents"] += sum(end for end, x in zip(ends, splits) if x == s)
        stats[s]["bytes"] += sum(n for n, x in zip(sizes, splits) if x == s)
    progress.update(sum(sizes))


def _batches(pieces: Iterable[Piece]) -> Iterator[list[Piece]]:
    batch: list[Piece] = []
    size = 0
    for piece in pieces:
        batch.append(piece)
        size += len(piece.text)
        if size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch
