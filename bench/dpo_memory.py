"""Peak memory of DPO with cached reference log-probs, against plain SFT and against DPO with the reference resident.

    python bench/dpo_memory.py --json

A random llama of ~30M parameters (8 layers, width 512, a 4096-token BPE vocabulary) is saved once; each run
trains it for a few steps in its own process and reports that process's peak resident set (CPU) or peak
allocated GPU memory: ``lmstack finetune`` on the pairs' prompts + chosen answers, ``lmstack dpo`` (the reference
log-probs computed once by the base before the method is applied, then read from the cache), and the same DPO
with a second copy of the base kept resident and scored on every step (what trl does without
``precompute_ref_log_probs``; this bench's own subclass, not a product option). SFT reads 2B conversations per
step where DPO reads B pairs, so both forward the same number of rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from lmstack.align.dpo import Draw, PreferenceObjective
from lmstack.align.dpo_command import DPOConfig, read_splits
from lmstack.config import build
from lmstack.data.synth import synth
from lmstack.model import build_model, preset
from lmstack.model.hf import load_causal_lm, save_model
from lmstack.model.scoring import sequence_logprobs
from lmstack.text.tokenizer import Tokenizer, train_bpe
from lmstack.train.metrics import peak_memory_mb
from lmstack.train.trainer import Trainer


class ResidentReference(PreferenceObjective):
    """DPO as trl runs it without precomputed reference log-probs: a second model scored on every step."""

    def build(self, device: torch.device):
        self.reference_model = load_causal_lm(self.base, device=device).eval().requires_grad_(False)
        return super().build(device)

    def _ref(self, batch: Draw, part: str, device: torch.device) -> torch.Tensor:
        ex = [self.examples[batch.split][i] for i in batch.idx]
        with torch.no_grad():
            return sequence_logprobs(self.reference_model, [e.prompt for e in ex], [getattr(e, part) for e in ex],
                                     batch_size=len(ex)).to(device)


def resident_child(values: dict) -> None:
    cfg = build(DPOConfig, values)
    objective = ResidentReference(cfg.model, cfg.method_config(), Tokenizer.load(cfg.model), read_splits(cfg),
                                  cfg.loss_type, cfg.loss_params(), cfg.batch_size, cfg.max_len,
                                  cfg.out / "reference_logps.safetensors", cfg.precision)
    trainer = Trainer(objective, cfg, cfg.out, config_name="dpo_config.json", progress=False)
    result = trainer.run()
    print(json.dumps({**result, "peak_memory_mb": round(peak_memory_mb(trainer.device), 1)}))


def _run(cmd: list[str]) -> dict:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--methods", nargs="+", default=["full", "lora"])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=4, help="pairs per DPO step (SFT: twice as many conversations)")
    p.add_argument("--max-len", type=int, default=256)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--width", type=int, default=512)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", action="store_true")
    p.add_argument("--resident-child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.resident_child:
        return resident_child(json.loads(args.resident_child))
    root = Path(tempfile.mkdtemp(prefix="dpo_memory_"))
    synth(out=root / "corpus", scale=0.2)
    pairs = [json.loads(line) for line in (root / "corpus" / "preferences_train.jsonl").read_text().splitlines()]
    texts = [m["content"] for line in (root / "corpus" / "sft_train.jsonl").read_text().splitlines()
             for m in json.loads(line)["messages"]] + [r[k] for r in pairs for k in ("chosen", "rejected")]
    (root / "sft.jsonl").write_text("".join(json.dumps({"messages": [*r["prompt"], {"role": "assistant",
                                                        "content": r["chosen"]}]}) + "\n" for r in pairs))
    torch.manual_seed(0)
    model = build_model(preset("llama-small", n_layer=args.layers, n_embd=args.width, block_size=args.max_len,
                               vocab_size=4096))
    params = sum(p.numel() for p in model.parameters())
    save_model(model, root / "base", train_bpe(texts, vocab_size=4096))
    del model
    loop = ["--max_iters", str(args.iters), "--max_len", str(args.max_len), "--eval_interval", str(args.iters),
            "--eval_iters", "1", "--device", args.device, "--val_fraction", "0.1"]
    dpo_values = {"model": str(root / "base"), "data": [str(root / "corpus" / "preferences_train.jsonl")],
                  "max_iters": args.iters, "max_len": args.max_len, "eval_interval": args.iters, "eval_iters": 1,
                  "device": args.device, "batch_size": args.batch_size}
    rows = []
    for method in args.methods:
        runs = {
            "sft": [sys.executable, "-m", "lmstack", "finetune", "--model", str(root / "base"), "--data",
                    str(root / "sft.jsonl"), "--out", str(root / f"sft_{method}"), "--method", method,
                    "--batch_size", str(2 * args.batch_size), *loop, "--json"],
            "dpo (cached reference)": [sys.executable, "-m", "lmstack", "dpo", "--model", str(root / "base"), "--data",
                                       str(root / "corpus" / "preferences_train.jsonl"), "--out",
                                       str(root / f"dpo_{method}"), "--method", method, "--batch_size",
                                       str(args.batch_size), *loop, "--json"],
            "dpo (resident reference)": [sys.executable, __file__, "--resident-child", json.dumps(
                {**dpo_values, "method": method, "out": str(root / f"resident_{method}")})],
        }
        for name, cmd in runs.items():
            result = _run(cmd)
            rows.append({"method": method, "run": name, "peak_memory_mb": result["peak_memory_mb"],
                         "wall_s": round(result["wall_s"], 1), "loss": round(result["loss"], 4)})
            print(json.dumps(rows[-1]), file=sys.stderr)
    ratios = {}
    for method in args.methods:
        by = {r["run"]: r["peak_memory_mb"] for r in rows if r["method"] == method}
        ratios[method] = {"cached_over_sft": round(by["dpo (cached reference)"] / by["sft"], 3),
                          "resident_over_sft": round(by["dpo (resident reference)"] / by["sft"], 3)}
    if args.json:
        print(json.dumps({"params": params, "rows": rows, "ratios": ratios}))
        return
    print(f"random llama, {params / 1e6:.1f}M parameters, {args.iters} steps, {args.batch_size} pairs per step")
    print("| method | run | peak memory (MB) | / SFT | wall (s) |\n|---|---|---:|---:|---:|")
    for r in rows:
        by = {x["run"]: x["peak_memory_mb"] for x in rows if x["method"] == r["method"]}
        print(f"| {r['method']} | {r['run']} | {r['peak_memory_mb']:.0f} | {r['peak_memory_mb'] / by['sft']:.2f} | "
              f"{r['wall_s']} |")


if __name__ == "__main__":
    main()
