"""The logit lens (nostalgebraist 2020, "interpreting GPT: the logit lens"): what each layer would predict.

The residual stream before the first block (the embeddings, positions added) and after every block is passed through
the decoder's own final norm and LM head, lens_l = lm_head(norm_f(h_l)); after the last block this is exactly the
model's output. The residual states are read with forward hooks on ``model.blocks``, so the model's own forward
runs unchanged. For every position: the top-1 token and its probability per layer, and the probability and rank
(1 = the top token) of the token that actually comes next.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lmstack.interpret.token_pieces import TokenPieces, display, token_pieces
from lmstack.plots import han_fonts, pyplot, save_png
from lmstack.text.tokenizer import Tokenizer

ANNOTATED = 64  # the most positions whose heat-map cells carry the top token's text


@torch.no_grad()
def residual_states(model: nn.Module, ids: list[int]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """([h_0 = embeddings, h_1 .. h_L after each block], each [T, n_embd]) and the model's own logits [T, V]."""
    states: list[torch.Tensor] = []
    hooks = [model.blocks[0].register_forward_pre_hook(lambda module, args: states.append(args[0][0]))]
    hooks += [block.register_forward_hook(lambda module, args, out: states.append(out[0])) for block in model.blocks]
    try:
        model.eval()
        logits = model(torch.tensor([ids], device=model.tok_emb.weight.device))[0]
    finally:
        for hook in hooks:
            hook.remove()
    return states, logits


@torch.no_grad()
def lens_logits(model: nn.Module, state: torch.Tensor) -> torch.Tensor:
    """lm_head(norm_f(h)) for one residual state [T, n_embd]: the logits [T, V] that layer would give."""
    return model.lm_head(model.norm_f(state[None]))[0]


@dataclass(frozen=True)
class LogitLens:
    tokens: TokenPieces
    layers: list[str]  # "embeddings", "layer 1" (after the first block), ..., one per row below (h_l)
    top_ids: np.ndarray  # [L + 1, T]
    top_probs: np.ndarray  # [L + 1, T]
    next_probs: np.ndarray  # [L + 1, T - 1]: probability of the token that comes next
    next_ranks: np.ndarray  # [L + 1, T - 1]: its rank, 1 = top
    top_tokens: list[list[str]]  # [L + 1][T]: each top-1 token decoded alone (a lone UTF-8 fragment is "\ufffd")

    def to_json(self) -> dict:
        return {"tokens": self.tokens.labels, "ids": self.tokens.ids, "layers": self.layers,
                "top_ids": self.top_ids.tolist(), "top_tokens": self.top_tokens,
                "top_probs": np.round(self.top_probs, 6).tolist(),
                "next_probs": np.round(self.next_probs, 6).tolist(), "next_ranks": self.next_ranks.tolist()}


def logit_lens(model: nn.Module, tokenizer: Tokenizer, ids: list[int]) -> LogitLens:
    """The lens at every layer and position of ``ids`` (see the module docstring)."""
    states, _ = residual_states(model, ids)
    target = torch.tensor(ids[1:], device=states[0].device)
    top_ids, top_probs, next_probs, next_ranks = [], [], [], []
    for state in states:
        logits = lens_logits(model, state).float()
        probs = torch.softmax(logits, dim=-1)
        p, i = probs.max(dim=-1)
        top_ids.append(i)
        top_probs.append(p)
        true = logits[:-1].gather(1, target[:, None])
        next_probs.append(probs[:-1].gather(1, target[:, None])[:, 0])
        next_ranks.append((logits[:-1] > true).sum(dim=-1) + 1)
    stack = lambda xs: torch.stack(xs).cpu().numpy()  # noqa: E731
    names = ["embeddings"] + [f"layer {b}" for b in range(1, len(states))]  # as transformers hidden_states[l]
    top = stack(top_ids)
    text = {int(i): tokenizer.decode([int(i)]) for i in np.unique(top)}
    return LogitLens(token_pieces(tokenizer, ids), names, top, stack(top_probs), stack(next_probs),
                     stack(next_ranks), [[text[int(i)] for i in row] for row in top])


def lens_markdown(lens: LogitLens) -> str:
    """One row per position: the input token, the actual next token, and per layer the top-1 token with its
    probability and the next token's rank."""
    top = lens.top_tokens
    cell = lambda s: display(s).replace("|", "\\|")  # noqa: E731
    lines = ["| pos | token | next | " + " | ".join(lens.layers) + " |", "|---|---|---|" + "---|" * len(lens.layers)]
    labels, T = lens.tokens.labels, len(lens.tokens.ids)
    for t in range(T):
        nxt = cell(labels[t + 1]) if t + 1 < T else "-"
        cells = []
        for layer in range(len(lens.layers)):
            rank = f", rank {lens.next_ranks[layer, t]}" if t + 1 < T else ""
            cells.append(f"`{cell(top[layer][t])}` {lens.top_probs[layer, t]:.2f}{rank}")
        lines.append(f"| {t} | `{cell(labels[t])}` | `{nxt}` | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_lens(lens: LogitLens, path: Path, colour: str = "next") -> Path:
    """Heat map, layers x positions: colour = the probability of the actual next token (``colour="next"``; the
    last position has none) or of the top-1 token (``"top"``); cell text = the top-1 token (up to ``ANNOTATED``
    positions)."""
    plt = pyplot()
    top = lens.top_tokens
    n_layers, T = lens.top_ids.shape
    values = lens.top_probs if colour == "top" else np.pad(lens.next_probs, ((0, 0), (0, 1)), constant_values=np.nan)
    labels = [display(s) for s in lens.tokens.labels]
    annotate = T <= ANNOTATED
    han_fonts(labels + [display(s) for row in top for s in row] if annotate else labels)
    fig, ax = plt.subplots(figsize=(min(40.0, 0.5 * T + 3.0), 0.7 * n_layers + 2.5))
    image = ax.imshow(values, cmap="magma", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    if annotate:
        for layer in range(n_layers):
            for t in range(T):
                dark = np.isnan(values[layer, t]) or values[layer, t] < 0.6
                ax.text(t, layer, display(top[layer][t]).strip()[:6], ha="center", va="center", fontsize=7,
                        color="white" if dark else "black")
        ax.set_xticks(range(T), labels, rotation=90, fontsize=7)
    else:
        ax.set_xlabel("position")
    ax.set_yticks(range(n_layers), lens.layers, fontsize=8)
    what = "the actual next token" if colour != "top" else "the top-1 token"
    ax.set_title(f"logit lens: probability of {what} per layer (cell text: top-1 token)")
    fig.colorbar(image, ax=ax, fraction=0.02, pad=0.01)
    save_png(fig, path)
    return path
