"""Read the token shards written by ``lmstack prepare``: random training windows and ordered eval windows.

A split is one long token stream stored in several memory-mapped files; a window may cross from one file
into the next. All randomness comes from the ``torch.Generator`` passed in, so a trainer that checkpoints
the generator's state resumes to bit-identical batches.
"""

from __future__ import annotations

from pathlib import Path
from collections.abc import Iterator

import numpy as np
import torch

from lmstack.errors import LmstackError
from lmstack.io import read_json

DTYPES = ("uint16", "uint32")


class TokenShards:
    """The ``split`` ("train" or "val") of a prepared folder.

    ``tokenizer_sha256``, when given, must match the tokenizer the shards were made with.
    ``documents`` and ``bytes`` (UTF-8 bytes of the documents, separators excluded) come from the manifest;
    evaluation divides by ``bytes`` for bits per byte.
    """

    def __init__(self, directory: str | Path, split: str = "train", tokenizer_sha256: str | None = None):
        self.directory = Path(directory)
        self.manifest = read_json(self.directory / "manifest.json")
        where = self.directory / "manifest.json"
        if split not in self.manifest.get("splits", {}):
            raise LmstackError(f"{where}: no split '{split}' "
                               f"(expected one of {', '.join(self.manifest.get('splits', {}))})")
        if tokenizer_sha256 is not None and tokenizer_sha256 != self.manifest["tokenizer_sha256"]:
            raise LmstackError(f"{self.directory}: shards were made with another tokenizer (sha256 "
                               f"{self.manifest['tokenizer_sha256'][:12]}…, this one is {tokenizer_sha256[:12]}…); "
                               "use the tokenizer saved beside them or run lmstack prepare again")
        if self.manifest.get("dtype") not in DTYPES:
            raise LmstackError(f"{where}: dtype {self.manifest.get('dtype')!r} is not one of {', '.join(DTYPES)}")
        dtype = np.dtype(self.manifest["dtype"])
        info = self.manifest["splits"][split]
        self.split, self.documents, self.bytes = split, info["documents"], info["bytes"]
        self.shards = [self._open(s["file"], s["tokens"], dtype) for s in info["shards"]]
        self.offsets = np.cumsum([0] + [len(m) for m in self.shards])
        if len(self) == 0:
            raise LmstackError(f"{self.directory}: the {split} split is empty (more documents or a larger "
                               "--val-fraction in lmstack prepare would fill it)")

    def _open(self, name: str, tokens: int, dtype: np.dtype) -> np.memmap:
        path = self.directory / name
        if not path.is_file():
            raise LmstackError(f"{path}: shard listed in manifest.json is missing; run lmstack prepare again")
        if path.stat().st_size != tokens * dtype.itemsize:
            raise LmstackError(f"{path}: holds {path.stat().st_size} bytes but manifest.json says {tokens} "
                               f"{dtype.name} tokens ({tokens * dtype.itemsize} bytes); run lmstack prepare again")
        return np.memmap(path, dtype=dtype, mode="r")

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def tokens(self, start: int, stop: int) -> np.ndarray:
        """Tokens ``[start, stop)`` of the split, read across shard boundaries."""
        i = int(np.searchsorted(self.offsets, start, side="right")) - 1
        pieces = []
        while start < stop:
            lo = start - int(self.offsets[i])
            hi = min(stop - int(self.offsets[i]), len(self.shards[i]))
            pieces.append(self.shards[i][lo:hi])
            start += hi - lo
            i += 1
        return np.concatenate(pieces)

    def _rows(self, starts: list[int], length: int) -> tuple[torch.Tensor, torch.Tensor]:
        rows = torch.from_numpy(np.stack([self.tokens(s, s + length + 1) for s in starts]).astype(np.int64))
        return rows[:, :-1], rows[:, 1:]

    def check_block(self, block_size: int) -> None:
        """Refuse a ``block_size`` the split cannot fill (a window needs ``block_size + 1`` tokens)."""
        if len(self) <= block_size:
            raise LmstackError(f"{self.directory}: the {self.split} split has {len(self)} tokens, "
                               f"too few for block_size {block_size}")

    def batch(self, batch_size: int, block_size: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` random windows: x is ``block_size`` tokens, y the same shifted by one (int64)."""
        self.check_block(block_size)
        starts = torch.randint(len(self) - block_size, (batch_size,), generator=generator)
        return self._rows(starts.tolist(), block_size)

    def iter_windows(self, block_size: int, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Consecutive non-overlapping windows, in batches, in which every token but the first is a target
        exactly once. The remainder that does not fill a window comes last, as a batch of one shorter row."""
        targets = len(self) - 1
        starts = list(range(0, targets - block_size + 1, block_size))
        for i in range(0, len(starts), batch_size):
            yield self._rows(starts[i:i + batch_size], block_size)
        tail = targets - len(starts) * block_size
        if tail:
            yield self._rows([targets - tail], tail)
