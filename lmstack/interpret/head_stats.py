"""Per-head summary statistics of attention maps, so that heads with a clear role can be found.

For maps A [L, H, T, T] (rows are queries i, columns keys j) every statistic is a mean over queries i >= 1 (each has
a previous token; query 0 of a causal map can only attend to itself):

* ``entropy``: -sum_j A_ij log A_ij, nats (low: a focused head);
* ``previous``: A_i,i-1 (a previous-token head); ``first``: A_i,0 (an attention sink, Xiao et al. 2023);
  ``self``: A_ii;
* ``same_word``: sum of A_ij over the other tokens j of query i's word unit (``token_pieces``), over queries whose
  word has other tokens;
* ``same_token``: sum of A_ij over earlier j with the same token id (a duplicate-token head), over queries whose
  token occurred before;
* ``induction``: sum of A_i,j+1 over earlier occurrences j < i - 1 of query i's token: attention to the token that
  followed it last time (Olsson et al. 2022, "In-context learning and induction heads"; on a repeated random
  sequence this is their induction score), over queries with such an occurrence.

A statistic no query qualifies for is None.
"""

from __future__ import annotations

import numpy as np

STATS = ("entropy", "previous", "first", "self", "same_word", "same_token", "induction")
# Which way is "clear": a low entropy, high everything else.
DESCENDING = {name: name != "entropy" for name in STATS}


def head_statistics(maps: np.ndarray, ids: list[int], words: list[int]) -> list[dict]:
    """One row per head: {"layer", "head", and every statistic in ``STATS``} (see the module docstring)."""
    L, H, T, _ = maps.shape
    ids_a, words_a = np.asarray(ids), np.asarray(words)
    i, j = np.arange(T)[:, None], np.arange(T)[None, :]
    masks = {
        "previous": j == i - 1,
        "first": np.broadcast_to(j == 0, (T, T)),
        "self": j == i,
        "same_word": (words_a[:, None] == words_a[None, :]) & (words_a[:, None] >= 0) & (j != i),
        "same_token": (ids_a[:, None] == ids_a[None, :]) & (j < i),
    }
    earlier = (ids_a[:, None] == ids_a[None, :]) & (j < i - 1)  # occurrence j of query i's token; target j + 1
    masks["induction"] = np.zeros((T, T), dtype=bool)
    masks["induction"][:, 1:] = earlier[:, :-1]
    queries = np.arange(T) >= 1
    use = {"entropy": queries} | {name: queries & mask.any(-1) for name, mask in masks.items()}
    rows = []
    for layer in range(L):  # one layer at a time: [H, T, T] in float64
        A = maps[layer].astype(np.float64)
        values = {"entropy": -(A * np.log(np.where(A > 0, A, 1.0))).sum(-1)}
        values |= {name: (A * mask).sum(-1) for name, mask in masks.items()}
        for head in range(H):
            row: dict = {"layer": layer, "head": head}
            for name in STATS:
                row[name] = float(values[name][head, use[name]].mean()) if use[name].any() else None
            rows.append(row)
    return rows


def top_heads(rows: list[dict], stat: str, k: int = 5) -> list[dict]:
    """The ``k`` clearest heads by ``stat`` (highest, or lowest for entropy); heads where it is None are skipped."""
    ranked = [r for r in rows if r[stat] is not None]
    return sorted(ranked, key=lambda r: r[stat], reverse=DESCENDING[stat])[:k]


def heads_markdown(rows: list[dict], k: int = 3) -> str:
    """The table of every head's statistics, then the top ``k`` heads by each statistic."""
    cell = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["| layer | head | " + " | ".join(STATS) + " |", "|---|---|" + "---|" * len(STATS)]
    lines += [f"| {r['layer']} | {r['head']} | " + " | ".join(cell(r[s]) for s in STATS) + " |" for r in rows]
    lines += ["", f"Top {k} heads by each statistic (layer.head = value; entropy: lowest):", ""]
    for stat in STATS:
        best = ", ".join(f"{r['layer']}.{r['head']} = {r[stat]:.3f}" for r in top_heads(rows, stat, k))
        lines.append(f"- {stat}: {best or '-'}")
    return "\n".join(lines) + "\n"
