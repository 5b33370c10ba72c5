"""One self-contained HTML page to explore attention maps: no external scripts, styles or fonts, no network.

Everything is embedded: the tokens and per-head statistics as JSON, and each layer's maps as its own
``<script type="application/octet-stream" id="layer-N">`` blob: probabilities quantised to uint8 (p * 255, rounded:
error <= 1/510), [H, T, T] row-major, zlib-compressed (the Compression Streams API's "deflate") and base64-encoded.
The page decodes a layer only when it is opened, so a 1,024-token input stays usable. Template:
``static/viewer.html``.
"""

from __future__ import annotations

import base64
import html
import json
import re
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from lmstack.interpret.attention import AttentionRun
from lmstack.interpret.token_pieces import display
from lmstack.io import atomic_open

SCALE = 255  # uint8 levels: a probability p is stored as round(p * SCALE)


def encode_layer(probs: np.ndarray) -> str:
    """One layer's maps [H, T, T] as base64(zlib(uint8(round(p * 255))))."""
    q = np.rint(np.clip(probs, 0.0, 1.0) * SCALE).astype(np.uint8)
    return base64.b64encode(zlib.compress(q.tobytes(), 6)).decode("ascii")


def decode_layer(blob: str, heads: int, tokens: int) -> np.ndarray:
    """``encode_layer``'s inverse, as probabilities [H, T, T] (what the page's script computes)."""
    q = np.frombuffer(zlib.decompress(base64.b64decode(blob)), dtype=np.uint8)
    return q.reshape(heads, tokens, tokens).astype(np.float32) / SCALE


def _json(obj) -> str:
    """JSON safe inside a <script> element ("<" escaped, so no "</script>" can end it early)."""
    return json.dumps(obj, ensure_ascii=False).replace("<", "\\u003c")


def viewer_html(run: AttentionRun, stats: list[dict], title: str = "attention") -> str:
    """The page for ``run`` (with ``head_statistics`` rows shown per head)."""
    L, H, T = run.shape
    meta = {"layers": L, "heads": H, "tokens": T, "scale": SCALE, "truncated": run.truncated,
            "ids": run.tokens.ids, "labels": [display(label) for label in run.tokens.labels],
            "pieces": run.tokens.pieces, "fragment": run.tokens.fragment, "words": run.tokens.words, "stats": stats}
    layers = "\n".join(f'<script type="application/octet-stream" id="layer-{layer}">{encode_layer(run.maps[layer])}'
                       "</script>" for layer in range(L))
    values = {"TITLE": html.escape(title), "META": _json(meta), "LAYERS": layers}
    template = resources.files("lmstack.interpret").joinpath("static/viewer.html").read_text(encoding="utf-8")
    return re.sub(r"\{\{(TITLE|META|LAYERS)\}\}", lambda m: values[m.group(1)], template)


def write_viewer(run: AttentionRun, stats: list[dict], path: Path, title: str = "attention") -> Path:
    """Write ``viewer_html`` to ``path`` atomically."""
    page = viewer_html(run, stats, title)
    with atomic_open(path) as f:
        f.write(page)
    return path
