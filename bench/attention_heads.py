"""Heads with a clear role in the demo model: previous-token heads, first-token sinks and induction heads.

1. Per-head statistics (``lmstack.interpret.head_stats``) averaged over the first ``--texts`` documents of the demo
   corpus, each written as the model saw documents in training (after an ``<|eos|>``, at most its context).
2. The induction score of Olsson et al. (2022): ``--seeds`` sequences of ``--length`` random non-special tokens,
   repeated once (``<|eos|> r r``); a head's score is its mean attention from each token of the second repeat to
   the token after that token's first occurrence. The model's loss on the second repeat against the first shows
   the in-context copying those heads make possible. The same with ``r`` = the first tokens of a corpus document
   (in-distribution text). Chance levels: the statistics of uniform causal attention on the same texts.
3. PNGs of the clearest head of each role, the whole table (heads.json / heads.md), and the size and write time of
   the self-contained HTML viewer on a 1,024-token input (a random model of the demo's shape with a 1,024 context,
   since the demo's is 256).

    python bench/attention_heads.py --out runs/bench/attention_heads          # about a minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from lmstack.interpret.attention import AttentionRun, attention_for_ids, collect_attention, maps_array
from lmstack.interpret.attention_plots import plot_head
from lmstack.interpret.head_stats import STATS, head_statistics, heads_markdown
from lmstack.interpret.token_pieces import TokenPieces
from lmstack.model.attention_maps import attention_maps
from lmstack.interpret.viewer import write_viewer
from lmstack.io import read_jsonl, write_json
from lmstack.model import build_model, preset
from lmstack.model.hf import load_causal_lm
from lmstack.text.tokenizer import SPECIAL_TOKENS, Tokenizer


def mean_rows(tables: list[list[dict]]) -> list[dict]:
    """Per-head means over several texts' statistics (a statistic None in a text is left out of its mean)."""
    out = []
    for rows in zip(*tables):
        row = {"layer": rows[0]["layer"], "head": rows[0]["head"]}
        for s in STATS:
            values = [r[s] for r in rows if r[s] is not None]
            row[s] = float(np.mean(values)) if values else None
        out.append(row)
    return out


def uniform_maps(T: int) -> np.ndarray:
    """Causal attention spread evenly over the keys each query sees: the chance level of every statistic."""
    return (np.tril(np.ones((T, T))) / np.arange(1, T + 1)[:, None])[None, None].astype(np.float32)


def train_copier(steps: int, vocab: int = 64, n: int = 24, seed: int = 0) -> torch.nn.Module:
    """A control with a known induction head: a 2-layer model trained to continue ``r r`` (loss on the second
    repeat only), where copying needs one (Olsson et al. 2022)."""
    torch.manual_seed(seed)
    model = build_model(preset("llama-tiny", vocab_size=vocab, block_size=2 * n, n_layer=2, n_embd=64, n_head=4,
                               n_kv_head=4, head_dim=16, intermediate_size=128))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        r = torch.randint(0, vocab, (32, n), generator=g)
        x = torch.cat([r, r], 1)
        logits = model(x[:, :-1])[:, n:]
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, vocab), x[:, n + 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


def best(rows: list[dict], stat: str) -> dict:
    return max((r for r in rows if r[stat] is not None), key=lambda r: r[stat])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/demo/train/model")
    ap.add_argument("--corpus", default="runs/demo/corpus/pretrain.jsonl")
    ap.add_argument("--texts", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--length", type=int, default=60, help="tokens per repeat (the demo's context is 256)")
    ap.add_argument("--copier-steps", type=int, default=150, help="train the induction control this long (0: skip)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/attention_heads"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = load_causal_lm(args.model).eval()
    tok = Tokenizer.load(args.model)
    eos = "<|eos|>"

    texts = [record["text"] for _, record in read_jsonl(args.corpus)][:args.texts]
    corpus_runs = [collect_attention(model, tok, eos + t, truncate=True) for t in texts]
    corpus = mean_rows([head_statistics(r.maps, r.tokens.ids, r.tokens.words) for r in corpus_runs])
    chance = mean_rows([head_statistics(uniform_maps(r.shape[2]), r.tokens.ids, r.tokens.words) for r in corpus_runs])

    special = len(SPECIAL_TOKENS)
    repeats = {}
    for kind in ("random", "span"):  # random tokens (Olsson et al.), or a corpus document's first tokens
        runs, first_loss, second_loss = [], [], []
        for seed in range(args.seeds):
            g = torch.Generator().manual_seed(seed)
            r = (torch.randint(special, tok.vocab_size, (args.length,), generator=g).tolist() if kind == "random"
                 else tok.encode(texts[-1 - seed])[:args.length])
            n = len(r)
            ids = [tok.eos_id] + r + r
            runs.append(attention_for_ids(model, tok, ids))
            with torch.no_grad():
                logits = model(torch.tensor([ids]))[0]
            nll = torch.nn.functional.cross_entropy(logits[:-1], torch.tensor(ids[1:]), reduction="none")
            first_loss.append(nll[1:n].mean().item())  # predicting r[1:] in the first repeat
            second_loss.append(nll[n + 1:].mean().item())  # r[1:] again, in the second repeat
        rows = mean_rows([head_statistics(x.maps, x.tokens.ids, x.tokens.words) for x in runs])
        repeats[kind] = {"runs": runs, "rows": rows, "loss_first_repeat": float(np.mean(first_loss)),
                         "loss_second_repeat": float(np.mean(second_loss))}
    repeated, repeat_runs = repeats["random"]["rows"], repeats["random"]["runs"]

    prev, sink, ind = best(corpus, "previous"), best(corpus, "first"), best(repeated, "induction")
    short = min(corpus_runs, key=lambda r: abs(r.shape[2] - 40))  # a text short enough for token labels
    figures = {
        "previous_token_head": plot_head(short, prev["layer"], prev["head"], args.out / "previous_token_head.png",
                                         f"previous-token head {prev['layer']}.{prev['head']} "
                                         f"(mean attention to the previous token {prev['previous']:.2f})"),
        "first_token_sink": plot_head(short, sink["layer"], sink["head"], args.out / "first_token_sink.png",
                                      f"first-token sink {sink['layer']}.{sink['head']} "
                                      f"(mean attention to the first token {sink['first']:.2f})"),
        "induction_head": plot_head(repeat_runs[0], ind["layer"], ind["head"], args.out / "induction_head.png",
                                    f"induction head {ind['layer']}.{ind['head']} on <eos> r r, |r| = {args.length} "
                                    f"(induction score {ind['induction']:.2f})"),
    }

    control = {}
    if args.copier_steps:
        t0 = time.perf_counter()
        copier = train_copier(args.copier_steps)
        r = torch.randint(0, 64, (24,), generator=torch.Generator().manual_seed(99)).tolist()
        with torch.no_grad(), attention_maps(copier) as maps:
            copier(torch.tensor([r + r]))
        labels = [str(i) for i in r + r]
        run = AttentionRun(TokenPieces(r + r, labels, labels, [False] * 48, [-1] * 48), maps_array(maps))
        rows = head_statistics(run.maps, r + r, [-1] * 48)
        head = best(rows, "induction")
        figures["control_induction_head"] = plot_head(
            run, head["layer"], head["head"], args.out / "control_induction_head.png",
            f"induction head {head['layer']}.{head['head']} of a 2-layer copier (score {head['induction']:.2f})")
        control = {"control_induction_head": head, "control_seconds": round(time.perf_counter() - t0, 1),
                   "control_heads": rows}

    # The viewer at 1,024 tokens: a random model of the demo's shape with a 1,024-token context.
    config = model.config
    big = build_model(type(config)(**{**config.__dict__, "block_size": 1024})).eval()
    long_text = " ".join(texts) * 4
    t0 = time.perf_counter()
    long_run = collect_attention(big, tok, long_text, truncate=True)
    viewer = write_viewer(long_run, head_statistics(long_run.maps, long_run.tokens.ids, long_run.tokens.words),
                          args.out / "viewer_1024.html", "attention of a random demo-shaped model, 1,024 tokens")
    viewer_seconds = time.perf_counter() - t0

    result = {
        "model": args.model, "texts": len(texts), "seeds": args.seeds, "length": args.length,
        "previous_token_head": prev, "first_token_sink": sink, "induction_head": ind,
        "chance": {s: chance[0][s] for s in ("previous", "first", "self", "same_word")},
        "induction_span_head": best(repeats["span"]["rows"], "induction"),
        **{f"{kind}_{k}": v[k] for kind, v in repeats.items() for k in ("loss_first_repeat", "loss_second_repeat")},
        "viewer_1024_tokens_bytes": viewer.stat().st_size, "viewer_1024_seconds": round(viewer_seconds, 2),
        "viewer_1024_uint8_bytes": int(long_run.maps.size),
        **control, "figures": {k: str(v) for k, v in figures.items()},
        "corpus_heads": corpus, "repeated_heads": repeated, "repeated_span_heads": repeats["span"]["rows"],
    }
    write_json(args.out / "heads.json", result)
    (args.out / "heads.md").write_text(
        f"# Heads of {args.model}\n\n## Corpus ({len(texts)} documents)\n\n{heads_markdown(corpus)}\n"
        f"## Repeated random tokens ({args.seeds} x <eos> r r, |r| = {args.length})\n\n{heads_markdown(repeated)}",
        encoding="utf-8")
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("_heads")}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
