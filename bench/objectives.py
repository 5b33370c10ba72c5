"""The T5 paper's objective table, in small (Raffel et al. 2020, Table 4): causal LM vs prefix LM vs span corruption,
each pretrained on the synthetic corpus at equal steps, batch and (roughly) tokens, then fine-tuned on the same
seq2seq task and scored: held-out loss and exact match.

    synth (--scale) -> prepare (--sentinels 100) -> pretrain three models -> fine-tune each on pairs -> greedy EM

- causal LM and prefix LM: a Llama-shaped decoder (``llama`` / ``prefix_lm``) of --layers blocks, windows of
  --block tokens; the prefix LM's loss is on the suffix of a uniform split point.
- span corruption: a T5 v1.1 encoder-decoder of --layers / 2 encoder + --layers / 2 decoder blocks (about the
  decoder's non-embedding parameters: cross-attention adds a quarter), windows of the most tokens whose
  corruption fits --block encoder positions (T5's ``random_spans_helper``: 142 raw tokens for 128), so it reads
  about as many raw tokens per step as the decoders.
- the task: the world's questions -> answers (``qa_{train,test}``, closed book: the facts are in the pretraining
  corpus, the passages are not given), the same pairs for all three; the decoders read question + answer in one
  row (the prefix LM reads the question bidirectionally), the T5 reads the question with its encoder.
- scored on the test questions: loss on the answers (+ eos) and exact match of the greedy answer
  (``generate.decode`` through each model's own logit source).
Also printed: the achieved noise density and mean span length of span corruption over the corpus windows.

Small budgets: the defaults took 776 s (13 min) at OMP_NUM_THREADS=1 on a shared 2-core machine (results:
docs/bench/objectives.md, .png). With 61 test questions one answer is 1.6 points of exact match: read the table as
small-sample.

    OMP_NUM_THREADS=1 python bench/objectives.py --out runs/bench_objectives
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from lmstack.adapt.methods import Full
from lmstack.adapt.seq2seq import PairFinetune, Seq2SeqFinetune
from lmstack.data.noise import measure_noise, random_spans_noise_mask, raw_length_for
from lmstack.data.prepare import prepare
from lmstack.data.shards import TokenShards
from lmstack.data.synth import synth
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.io import read_jsonl
from lmstack.model.config import preset
from lmstack.model.hf import load_model
from lmstack.plots import pyplot, save_png
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.config import LoopConfig, TrainConfig
from lmstack.train.pretrain import train
from lmstack.train.trainer import Trainer

def decoder(family: str):
    return lambda args: preset("llama-tiny", family=family, n_layer=args.layers, n_embd=args.width, n_head=4,
                               n_kv_head=4, block_size=args.block)


def encoder_decoder(args):
    return preset("t5-tiny", n_layer=args.layers // 2, n_embd=args.width, n_head=4, head_dim=args.width // 4,
                  intermediate_size=max(64, int(8 * args.width / 3) // 64 * 64), block_size=args.block)


# (row, pretraining objective, model shape, fine-tuning objective)
ROWS = (("causal LM", "causal", decoder("llama"), PairFinetune),
        ("prefix LM", "prefix_lm", decoder("prefix_lm"), PairFinetune),
        ("span corruption", "span_corruption", encoder_decoder, Seq2SeqFinetune))


def pairs(path: Path, out: Path) -> Path:
    """qa records -> {"input": question, "output": first answer}."""
    rows = [{"input": r["question"], "output": r["answers"][0]["text"]} for _, r in read_jsonl(path)
            if not r.get("is_impossible") and r.get("answers")]
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return out


@torch.no_grad()
def score(model, tok: Tokenizer, test: Path, objective) -> tuple[float, float]:
    """(mean answer loss, exact match) on the test pairs."""
    model.eval()
    rows = [r for _, r in read_jsonl(test)]
    batches = objective.data["val"]
    losses = []
    for i in range(0, len(batches.examples), 32):
        batch = batches.collate(batches.examples[i:i + 32], objective.block)
        losses.append(objective.loss(model, batch)[0].item())
    hits = 0
    for i in range(0, len(rows), 32):
        chunk = rows[i:i + 32]
        prompts = [tok.encode(r["input"], specials=False) for r in chunk]
        steps = torch.stack(list(decode(model, prompts, GenerationConfig(max_new_tokens=16), eos_id=tok.eos_id)), 1)
        for r, ids in zip(chunk, steps.tolist()):
            ids = ids[: ids.index(tok.eos_id)] if tok.eos_id in ids else ids
            hits += tok.decode(ids).strip() == r["output"].strip()
    return sum(losses) / len(losses), hits / len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/bench_objectives"))
    parser.add_argument("--scale", type=float, default=0.3)
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=128)
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--pretrain-iters", type=int, default=400)
    parser.add_argument("--finetune-iters", type=int, default=200)
    args = parser.parse_args()
    t0 = time.perf_counter()
    out = args.out
    synth(out=out / "corpus", scale=args.scale)
    prepare([out / "corpus" / "pretrain.jsonl"], out=out / "data", vocab_size=args.vocab, sentinels=100)
    tok = Tokenizer.load(out / "data")
    train_pairs = pairs(out / "corpus" / "qa_train.jsonl", out / "qa_pairs_train.jsonl")
    test_pairs = pairs(out / "corpus" / "qa_test.jsonl", out / "qa_pairs_test.jsonl")

    shards = TokenShards(out / "data", "train")
    raw = raw_length_for(args.block, args.block, 0.15, 3.0)
    rng = torch.Generator().manual_seed(0)
    noise = measure_noise(random_spans_noise_mask(raw, 0.15, 3.0, rng) for _ in range(len(shards) // raw))
    print(f"span corruption over {noise['tokens']:,} corpus tokens ({raw}-token windows): noise density "
          f"{noise['noise_density']:.4f}, mean span length {noise['mean_span_length']:.3f}")

    results = []
    for name, objective_name, shape, finetune_objective in ROWS:
        t = time.perf_counter()
        cfg = TrainConfig(data=out / "data", out=out / objective_name, model=shape(args),
                          objective=objective_name, max_iters=args.pretrain_iters, batch_size=args.batch, lr=2e-3,
                          min_lr=2e-4, warmup_iters=30, eval_interval=args.pretrain_iters, eval_iters=10,
                          checkpoint_interval=args.pretrain_iters)
        pre = train(cfg, overwrite=True)
        base = out / objective_name / "model"
        model = load_model(base)
        params = model.num_params() - model.tok_emb.weight.numel() * (2 - model.config.tie_embeddings)
        tune = finetune_objective(base, Full(), tok, [train_pairs], [test_pairs], batch_size=args.batch)
        loop = LoopConfig(max_iters=args.finetune_iters, lr=1e-3, min_lr=1e-4, warmup_iters=20, weight_decay=0.0,
                          eval_interval=args.finetune_iters, eval_iters=5, seed=0)
        trainer = Trainer(tune, loop, progress=False)
        trainer.run()
        loss, em = score(trainer.model, tok, test_pairs, tune)
        results.append({"objective": name, "non_embedding_params": params, "pretrain_tokens": pre["tokens"],
                        "pretrain_val_loss": pre["val_loss"], "answer_loss": loss, "exact_match": em,
                        "seconds": time.perf_counter() - t})
        print(json.dumps(results[-1]))

    lines = ["| objective | non-embedding params | pretraining tokens read (T5: encoder + decoder) "
             "| pretraining val loss (own objective) | held-out answer loss | held-out exact match |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['objective']} | {r['non_embedding_params']:,} | {r['pretrain_tokens']:,} | "
              f"{r['pretrain_val_loss']:.3f} | {r['answer_loss']:.3f} | {100 * r['exact_match']:.1f}% |"
              for r in results]
    table = "\n".join(lines)
    print(table)
    (out / "objectives.md").write_text(table + "\n", encoding="utf-8")
    (out / "objectives.json").write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                                     "noise": noise, "rows": results}, indent=2))
    plt = pyplot()
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    names = [r["objective"] for r in results]
    a.bar(names, [r["answer_loss"] for r in results], color="#4477aa")
    a.set_title("held-out answer loss (nats/token)")
    b.bar(names, [100 * r["exact_match"] for r in results], color="#ee6677")
    b.set_title("held-out exact match (%)")
    for ax in (a, b):
        ax.tick_params(axis="x", labelsize=8)
    fig.suptitle(f"objectives at {args.pretrain_iters} pretraining steps x {args.batch} windows, then "
                 f"{args.finetune_iters} fine-tuning steps on question -> answer")
    fig.tight_layout()
    save_png(fig, out / "objectives.png")
    print(f"total {time.perf_counter() - t0:.0f} s; {out / 'objectives.md'}, {out / 'objectives.png'}"
          f"{'' if math.isfinite(results[0]['answer_loss']) else ' (NaN losses)'}")


if __name__ == "__main__":
    main()
