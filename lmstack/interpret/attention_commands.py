"""``lmstack inspect attention`` and ``lmstack inspect logit-lens``: look inside a model on one text.

Both read the text (``--text`` or ``--file``), refuse a text longer than the model's context unless ``--truncate``,
and check the output folder before anything is computed: earlier outputs there are kept unless ``--overwrite``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from lmstack.errors import LmstackError
from lmstack.interpret.attention import attention_for_ids, encode_for
from lmstack.interpret.attention_plots import plot_layer
from lmstack.interpret.head_stats import STATS, head_statistics, heads_markdown, top_heads
from lmstack.interpret.logit_lens import lens_markdown, logit_lens, plot_lens
from lmstack.interpret.viewer import write_viewer
from lmstack.io import atomic_open, write_json
from lmstack.model.hf import load_causal_lm, load_model
from lmstack.text.tokenizer import Tokenizer

ATTENTION_FILES = ("viewer.html", "heads.json", "heads.md")
LENS_FILES = ("lens.json", "lens.md", "lens.png")


def read_text(text: str | None, file: Path | None) -> tuple[str, str]:
    """(the text, where it came from) from exactly one of ``--text`` and ``--file`` (UTF-8)."""
    if (text is None) == (file is None):
        raise LmstackError("give the text to look at as --text TEXT or --file FILE (one of them)")
    if text is not None:
        return text, "--text"
    path = Path(file)
    if not path.is_file():
        raise LmstackError(f"--file {path}: file not found")
    data = path.read_bytes()
    try:
        return data.decode("utf-8"), str(path)
    except UnicodeDecodeError as e:
        raise LmstackError(f"{path}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def check_out(out: Path, names: tuple[str, ...], pattern: str | None, overwrite: bool) -> list[Path]:
    """Refuse an ``out`` that is a file, or that holds an earlier run's outputs without ``overwrite``; return the
    earlier files matching ``pattern`` (to delete once the inputs are validated)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LmstackError(f"--out {out}: exists and is not a folder")
    old = [out / n for n in names if (out / n).exists()]
    old += sorted(out.glob(pattern)) if pattern and out.is_dir() else []
    if old and not overwrite:
        raise LmstackError(f"{old[0]} exists (pass --overwrite to replace the earlier outputs, "
                           "or choose another --out)")
    return old


def _ids(model, tokenizer: Tokenizer, text: str, source: str, truncate: bool, bos: bool) -> tuple[list[int], int]:
    if bos and tokenizer.bos_id is None:
        raise LmstackError("--bos: the tokenizer has no bos token")
    ids, cut = encode_for(model, tokenizer, text, truncate, source)
    if bos:  # the bos token takes one of the context's positions
        ids = [tokenizer.bos_id] + ids
        if len(ids) > model.config.block_size:
            ids, cut = ids[:model.config.block_size], cut + 1
    return ids, cut


def inspect_attention(model: Path, text: str | None = None, file: Path | None = None,
                      out: Path = Path("runs/inspect/attention"), truncate: bool = False, bos: bool = False,
                      top: int = 3, device: str = "cpu", overwrite: bool = False) -> dict:
    """Every layer's and head's attention on one text: a PNG grid per layer, an HTML viewer, per-head statistics.

    Args:
        model: model directory (a decoder; an encoder's maps are taken on the text without [CLS]/[SEP])
        text: the text to look at (special-token strings such as <|eos|> in it are recognised)
        file: a UTF-8 text file to look at instead of --text
        out: output folder for layer_NN.png, viewer.html (self-contained), heads.json and heads.md
        truncate: keep the first block_size tokens of a longer text instead of refusing it
        bos: prepend the tokenizer's bos token
        top: how many heads to list per statistic in heads.md and the summary
        device: torch device
        overwrite: replace earlier outputs in the output folder
    """
    body, source = read_text(text, file)
    old = check_out(out, ATTENTION_FILES, "layer_*.png", overwrite)
    net = load_model(model, device=device).eval()
    tokenizer = Tokenizer.load(model)
    ids, cut = _ids(net, tokenizer, body, source, truncate, bos)
    run = attention_for_ids(net, tokenizer, ids, cut)
    rows = head_statistics(run.maps, run.tokens.ids, run.tokens.words)
    for path in old:
        path.unlink()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    L, H, T = run.shape
    for layer in range(L):
        plot_layer(run, layer, out / f"layer_{layer:02d}.png")
    write_viewer(run, rows, out / "viewer.html", title=f"attention of {Path(model).name} on {T} tokens")
    best = {stat: top_heads(rows, stat, top) for stat in STATS}
    write_json(out / "heads.json", {"model": str(model), "tokens": run.tokens.labels, "pieces": run.tokens.pieces,
                                    "ids": run.tokens.ids,
                                    "truncated": cut, "heads": rows,
                                    "top": {s: [[r["layer"], r["head"]] for r in b] for s, b in best.items()}})
    with atomic_open(out / "heads.md") as f:
        f.write(f"# Attention heads of {model} on {T} tokens\n\n" + heads_markdown(rows, top))
    summary = {f"top_{stat}": ", ".join(f"{r['layer']}.{r['head']}={r[stat]:.3f}" for r in b)
               for stat, b in best.items()}
    return {"tokens": T, "layers": L, "heads": H, "truncated": cut, **summary, "viewer": str(out / "viewer.html"),
            "out": str(out)}


def inspect_logit_lens(model: Path, text: str | None = None, file: Path | None = None,
                       out: Path = Path("runs/inspect/logit-lens"), truncate: bool = False, bos: bool = False,
                       colour: Literal["next", "top"] = "next", device: str = "cpu", overwrite: bool = False) -> dict:
    """The logit lens: what each layer's residual stream predicts through the final norm and LM head.

    Args:
        model: model directory of a decoder (causal language model)
        text: the text to look at (special-token strings such as <|eos|> in it are recognised)
        file: a UTF-8 text file to look at instead of --text
        out: output folder for lens.json, lens.md and lens.png
        truncate: keep the first block_size tokens of a longer text instead of refusing it
        bos: prepend the tokenizer's bos token
        colour: heat-map colour: next (probability of the actual next token) or top (of the top-1 token)
        device: torch device
        overwrite: replace earlier outputs in the output folder
    """
    if colour not in ("next", "top"):
        raise LmstackError(f"--colour {colour}: expected next or top")
    body, source = read_text(text, file)
    old = check_out(out, LENS_FILES, None, overwrite)
    net = load_causal_lm(model, device=device).eval()
    tokenizer = Tokenizer.load(model)
    ids, cut = _ids(net, tokenizer, body, source, truncate, bos)
    lens = logit_lens(net, tokenizer, ids)
    for path in old:
        path.unlink()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "lens.json", {"model": str(model), "truncated": cut, **lens.to_json()})
    with atomic_open(out / "lens.md") as f:
        f.write(f"# Logit lens of {model} on {len(ids)} tokens\n\n" + lens_markdown(lens))
    plot_lens(lens, out / "lens.png", colour)
    hits = (lens.next_ranks == 1).sum(axis=1)  # per layer: how often the top-1 token is the actual next one
    return {"tokens": len(ids), "truncated": cut,
            **{f"top1_accuracy_{name.replace(' ', '_')}": float(h / max(1, len(ids) - 1))
               for name, h in zip(lens.layers, hits)},
            "out": str(out)}
