"""Reference log-probabilities, computed once before training and cached on disk, so the reference model is never
resident while the policy trains (trl keeps a second model, or a second adapter pass, on every step).

    ref_logp[row] = log ref(continuation | context) = sum_t log ref(c_t | context, c_<t)      (no_grad, batched)

The rows are named sets of (context, continuation) ids (``"train.chosen"``, ``"val.rejected"``, KTO's
``"train.kl"`` ...). The cache is one safetensors file (a tensor per set) whose metadata holds two fingerprints,
with a JSON twin beside it for people: the sha256 of every row's ids (the encoded data) and the sha256 of the
reference model's config and weights. A cache whose fingerprints differ from this run's is refused, naming the
sources both were made from; a missing one is computed and written atomically.
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn

from lmstack.errors import LmstackError
from lmstack.io import atomic_path, write_json
from lmstack.model.scoring import sequence_logprobs

Rows = dict[str, tuple[list[list[int]], list[list[int]]]]  # set name -> (contexts, continuations)


def data_fingerprint(rows: Rows) -> str:
    """sha256 over the sets' names and every row's context and continuation ids, in order."""
    h = hashlib.sha256()
    for name in sorted(rows):
        contexts, continuations = rows[name]
        h.update(f"{name}:{len(contexts)};".encode())
        for ids in (*contexts, *continuations):
            h.update(len(ids).to_bytes(4, "little"))
            h.update(np.asarray(ids, dtype=np.int64).tobytes())
    return h.hexdigest()


def model_fingerprint(model: nn.Module) -> str:
    """sha256 of the model's config and every weight (names and fp32 values): equal fingerprints, equal scores."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(model.config), sort_keys=True).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def reference_logps(model: nn.Module, contexts: list[list[int]], continuations: list[list[int]],
                    batch_size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """[N] fp32 log ref(continuation | context) on the CPU, and [N] the continuations' token counts; rows are
    scored in batches of similar length (sorted, then put back in order), with the model in eval mode."""
    training = model.training
    model.eval()
    order = sorted(range(len(contexts)), key=lambda i: len(contexts[i]) + len(continuations[i]))
    out = torch.empty(len(contexts))
    for lo in range(0, len(order), batch_size):
        chunk = order[lo:lo + batch_size]
        scores = sequence_logprobs(model, [contexts[i] for i in chunk], [continuations[i] for i in chunk],
                                   batch_size=batch_size)
        out[chunk] = scores.float().cpu()
    model.train(training)
    return out, torch.tensor([len(c) for c in continuations], dtype=torch.float32)


@dataclasses.dataclass(frozen=True)
class Provenance:
    """Where the data and the reference model came from, named when a cache is refused."""
    data: str  # the data files (and split)
    model: str  # the reference model's directory


def cached_reference_logps(path: Path, rows: Rows, model: nn.Module, provenance: Provenance,
                           batch_size: int = 16, autocast=contextlib.nullcontext
                           ) -> tuple[dict[str, torch.Tensor], bool]:
    """The reference log-probabilities of every set of ``rows`` under ``model``: read from ``path`` when it was
    made for the same data and model, else computed (under ``autocast()``) and written there. Returns the tensors
    by set name and whether the cache was reused. A cache made for other data or another model is an error."""
    path = Path(path)
    data_fp, model_fp = data_fingerprint(rows), model_fingerprint(model)
    if path.is_file():
        tensors, meta = _read(path)
        if meta.get("data_sha256") != data_fp or meta.get("model_sha256") != model_fp:
            what = " and ".join(w for w, ok in (("data", meta.get("data_sha256") == data_fp),
                                                ("reference model", meta.get("model_sha256") == model_fp)) if not ok)
            raise LmstackError(
                f"{path}: reference log-probs made for other {what}: the cache's data "
                f"{meta.get('data_sha256', '?')[:12]} ({meta.get('data_source', '?')}) and model "
                f"{meta.get('model_sha256', '?')[:12]} "
                f"({meta.get('model_source', '?')}); this run's data {data_fp[:12]} ({provenance.data}) and model "
                f"{model_fp[:12]} ({provenance.model}); delete it or give another ref_cache")
        if set(tensors) == set(rows) and all(len(tensors[k]) == len(rows[k][0]) for k in rows):
            return tensors, True
        raise LmstackError(f"{path}: the reference cache's sets do not match this run's data; delete it")
    tensors = {}
    with autocast():
        for name, (contexts, continuations) in rows.items():
            tensors[name] = reference_logps(model, contexts, continuations, batch_size)[0]
    release_freed_memory()
    meta = {"data_sha256": data_fp, "data_source": provenance.data, "model_sha256": model_fp,
            "model_source": provenance.model, "rows": json.dumps({k: len(v[0]) for k, v in rows.items()})}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    write_json(path.with_suffix(".json"), {**meta, "rows": {k: len(v[0]) for k, v in rows.items()}})
    return tensors, False


def release_freed_memory() -> None:
    """Hand the heap the reference pass freed back to the OS (glibc keeps freed small blocks mapped, and training's
    peak resident set would carry them); a no-op elsewhere."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").malloc_trim(0)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise LmstackError(f"{path}: unreadable reference cache ({str(e).splitlines()[0]}); delete it") from e
