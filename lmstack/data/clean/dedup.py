"""Deduplication: exact (a hash of the normalised text) and near-duplicate (MinHash LSH).

MinHash (Broder 1997) turns a shingle set into a signature whose entries agree between two sets with
probability equal to their Jaccard similarity; LSH banding (Leskovec et al., "Mining of Massive Datasets",
ch. 3.4) makes two documents candidates when all rows of any one band agree, so similar pairs are found
without comparing all pairs. Bands are chosen for recall (a pair at the threshold is a candidate with
probability >= 0.99) and every candidate is then verified, on the exact Jaccard of the two shingle sets
(``verify: exact``, the default) or on the signatures' estimate (``verify: signature``, lighter but about
+-0.035 noisy at 128 permutations, which near the threshold costs precision and recall). Shingles are word
n-grams, or character n-grams for Chinese. A document is dropped when it duplicates one kept before it: the
first of each cluster survives, and later members name it.

Signatures are computed with numpy, bit for bit as ``datasketch.MinHash`` computes them from the same shingle
hashes (a test checks this), without a Python call per shingle. The band tables are plain dicts from a
64-bit band hash to a document number: ``datasketch.MinHashLSH`` keeps a Python set per bucket and a key
list per document, about 7 KB per document at 21 bands, three times what these take. The index (exact keys,
names, signatures and shingle sets of the documents kept) is saved one file per shard in ``dedup_index/``,
so an interrupted run reloads it and a later batch is deduplicated against earlier ones (``dedup.index_in``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
from lmstack.data.clean.config import DedupConfig
from lmstack.data.clean.words import CJK_LANGS, char_codes, fmix64, ngram_hashes, token_hashes
from lmstack.errors import LmstackError
from lmstack.io import atomic_open, read_json, write_json

HASH_VERSION = "crc32-ngram-fmix64/affine32-v1"  # bump when shingling or hashing changes: old indexes won't match
_WORD = re.compile(r"\w+")
_WORD_CHAR = re.compile(r"\w")
_EMPTY = np.uint32(0xFFFFFFFF)


def exact_key(text: str) -> bytes:
    """16-byte BLAKE2b of the text with case folded and whitespace collapsed."""
    return hashlib.blake2b(" ".join(text.casefold().split()).encode(), digest_size=16).digest()


def shingles(text: str, lang: str, cfg: DedupConfig) -> np.ndarray:
    """The sorted, distinct 32-bit hashes of the document's shingles (lowercased words or Chinese characters)."""
    lower = text.lower()
    if lang in CJK_LANGS:
        tokens, n = char_codes("".join(_WORD_CHAR.findall(lower))), cfg.shingle_chars
    else:
        tokens, n = token_hashes(_WORD.findall(lower)), cfg.shingle_words
    if len(tokens) == 0:
        return np.zeros(0, dtype=np.uint32)
    return np.unique(ngram_hashes(tokens, min(n, len(tokens))).astype(np.uint32))


def lsh_params(threshold: float, num_perm: int, recall: float = 0.99) -> tuple[int, int]:
    """(bands, rows) with the most rows per band such that P(candidate | Jaccard = threshold) >= recall."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if bands >= 2 and 1 - (1 - threshold**rows) ** bands >= recall:
            return bands, rows
    return num_perm // 2, 2


class MinHasher:
    """``num_perm`` affine permutations a*h+b mod 2^32 of the fmix32-mixed hashes, as datasketch draws them."""

    def __init__(self, num_perm: int, seed: int):
        gen = np.random.RandomState(seed)
        self.a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)
        self.b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)

    def signature(self, hashes: np.ndarray, chunk: int = 2048) -> np.ndarray:
        """Minimum of every permutation over the shingle hashes; all 0xFFFFFFFF when there are none."""
        sig = np.full(len(self.a), _EMPTY, dtype=np.uint32)
        mixed = fmix32(hashes.astype(np.uint32))
        for i in range(0, len(mixed), chunk):  # bounded memory for very long documents
            np.minimum(sig, (mixed[i : i + chunk, None] * self.a + self.b).min(axis=0), out=sig)
        return sig


def fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser (datasketch pre-mixes every input hash with it)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Exact Jaccard similarity of two sorted, distinct hash arrays."""
    inter = np.intersect1d(a, b, assume_unique=True).size
    return inter / (a.size + b.size - inter) if a.size + b.size else 0.0


class Bands:
    """LSH banding: one table per band, from a 64-bit hash of the band's rows to the documents holding it."""

    def __init__(self, bands: int, rows: int):
        self.bands, self.rows = bands, rows
        self.tables: list[dict[int, int | list[int]]] = [{} for _ in range(bands)]
        self.mix = np.random.default_rng(0).integers(0, 2**63, rows, dtype=np.uint64) * np.uint64(2) + np.uint64(1)

    def keys(self, sig: np.ndarray) -> list[int]:
        rows = sig[: self.bands * self.rows].reshape(self.bands, self.rows).astype(np.uint64)
        return fmix64((rows * self.mix).sum(axis=1)).tolist()

    def query(self, sig: np.ndarray) -> list[int]:
        found: set[int] = set()
        for table, key in zip(self.tables, self.keys(sig)):
            hit = table.get(key)
            if hit is not None:
                found.update(hit) if isinstance(hit, list) else found.add(hit)
        return sorted(found)

    def insert(self, sig: np.ndarray, doc: int) -> None:
        for table, key in zip(self.tables, self.keys(sig)):
            hit = table.setdefault(key, doc)  # a bucket is one int until a second document lands in it
            if isinstance(hit, list):
                hit.append(doc)
            elif hit != doc:
                table[key] = [hit, doc]


class DedupIndex:
    """Exact keys, signatures and shingle sets of the documents kept so far, by this run and earlier ones."""

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self.bands = Bands(*((cfg.bands, cfg.rows) if cfg.bands else lsh_params(cfg.threshold, cfg.num_perm)))
        self.exact: dict[bytes, str] = {}
        self.sources: list[str] = []
        self.keys: list[bytes] = []
        self.sigs: list[np.ndarray] = []
        self.sets: list[np.ndarray] = []  # empty arrays unless verify == "exact"

    def find_exact(self, key: bytes) -> str | None:
        return self.exact.get(key)

    def find_near(self, sig: np.ndarray, shingle_set: np.ndarray) -> tuple[str, float] | None:
        """The most similar kept document with Jaccard >= threshold, as (source, similarity)."""
        if sig[0] == _EMPTY:  # no shingles: nothing to compare
            return None
        candidates = self.bands.query(sig)
        if not candidates:
            return None
        if self.cfg.verify == "exact":
            sims = np.array([jaccard(shingle_set, self.sets[c]) for c in candidates])
        else:
            sims = (np.stack([self.sigs[c] for c in candidates]) == sig).mean(axis=1)
        best = int(sims.argmax())
        return (self.sources[candidates[best]], float(sims[best])) if sims[best] >= self.cfg.threshold else None

    def add(self, source: str, key: bytes, sig: np.ndarray, shingle_set: np.ndarray) -> None:
        self.exact.setdefault(key, source)
        if sig[0] != _EMPTY:
            self.bands.insert(sig, len(self.sigs))
        self.sources.append(source)
        self.keys.append(key)
        self.sigs.append(sig)
        self.sets.append(shingle_set if self.cfg.verify == "exact" else shingle_set[:0])

    # --- on disk: dedup_index/meta.json + one .npz per shard -------------------------------------------

    def meta(self) -> dict:
        c = self.cfg
        return {"hash": HASH_VERSION, "num_perm": c.num_perm, "seed": c.seed, "verify": c.verify,
                "shingle_words": c.shingle_words, "shingle_chars": c.shingle_chars}

    def load(self, folder: Path) -> int:
        """Add every saved shard of ``folder`` to the index; returns the number of documents added."""
        meta = read_json(folder / "meta.json")
        mismatch = [f"{k}={meta.get(k)!r} (this run: {v!r})" for k, v in self.meta().items() if meta.get(k) != v]
        if mismatch:
            raise LmstackError(f"{folder}: dedup index built with other settings: {', '.join(mismatch)}")
        return sum(self.load_shard(p) for p in sorted(folder.glob("shard-*.npz")))

    def load_shard(self, path: Path) -> int:
        with np.load(path) as z:
            sources, keys, sigs, flat, ends = z["sources"], z["keys"], z["sigs"], z["shingles"], z["ends"]
        for i, (source, key, sig) in enumerate(zip(sources, keys, sigs)):
            self.add(str(source), key.tobytes(), sig, flat[(ends[i - 1] if i else 0) : ends[i]])
        return len(sources)

    def save_shard(self, folder: Path, index: int, first: int) -> None:
        """Write the documents added since position ``first`` as ``folder/shard-<index>.npz``."""
        sets, keys = self.sets[first:], self.keys[first:]
        if not (folder / "meta.json").exists():
            write_json(folder / "meta.json", self.meta())
        with atomic_open(folder / f"shard-{index:05d}.npz", "wb") as f:
            np.savez(f, sources=np.array(self.sources[first:], dtype=str),
                     keys=np.frombuffer(b"".join(keys), dtype=np.uint8).reshape(len(keys), 16),
                     sigs=np.array(self.sigs[first:], dtype=np.uint32).reshape(len(sets), self.cfg.num_perm),
                     shingles=np.concatenate([np.zeros(0, np.uint32), *sets]),
                     ends=np.cumsum([len(s) for s in sets], dtype=np.int64))
