"""PPO and GRPO on the synthetic world: mean held-out reward of greedy answers before vs after, the final KL to the
reference, and the reward/KL curves.

    python bench/rl_synth.py --model runs/demo/train/model --adapter runs/demo/sft/adapter --json

The starting policy is the demo's pretrained model with its SFT adapter merged (``--adapter``; or give an SFT model
directory as ``--model`` alone). Prompts are the synthetic ``rl_prompts`` dataset (``rl_prompts_{train,test}.jsonl``
in ``--corpus``, written by ``lmstack synth`` when absent); the reward is the world's rule judge
(``--reward``, default ``rules:correct,language,polite``: 0..3 per answer). Both algorithms train a LoRA for
``--iters`` steps; the curves land in OUT/{ppo,grpo}/reward_kl.png.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from lmstack.adapt.merge import merge_adapter
from lmstack.align.rl_commands import GRPOConfig, PPOConfig, grpo, ppo
from lmstack.config import build
from lmstack.data.synth import synth


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("runs/demo/train/model"))
    ap.add_argument("--adapter", type=Path, default=None, help="an SFT LoRA adapter to merge into --model first")
    ap.add_argument("--corpus", type=Path, default=Path("runs/demo/corpus"))
    ap.add_argument("--out", type=Path, default=Path("runs/bench_rl"))
    ap.add_argument("--reward", default="rules:correct,language,polite")
    ap.add_argument("--iters", type=int, default=60)
    ap.add_argument("--eval_prompts", type=int, default=64)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    model = args.model
    if args.adapter is not None:
        model = args.out / "sft_model"
        merge_adapter(str(args.model), str(args.adapter), out=str(model))
    corpus = args.corpus
    if not (corpus / "rl_prompts_train.jsonl").is_file():
        corpus = args.out / "corpus"
        synth(out=corpus)
    common = {"model": str(model), "prompts": [str(corpus / "rl_prompts_train.jsonl")],
              "val_prompts": [str(corpus / "rl_prompts_test.jsonl")], "reward": args.reward,
              "max_iters": args.iters, "eval_prompts": args.eval_prompts, "device": args.device,
              "max_new_tokens": 24, "log_interval": 1, "checkpoint_interval": 1000}
    rows = {}
    for name, cls, run, extra in (("ppo", PPOConfig, ppo, {"kl_target": 4.0, "kl_horizon": 2000}),
                                  ("grpo", GRPOConfig, grpo, {})):
        result = run(build(cls, {**common, **extra, "out": str(args.out / name)}))
        rows[name] = {k: result[k] for k in ("heldout_reward_before", "heldout_reward_after", "final_kl",
                                             "final_rollout_reward", "final_beta", "iters", "wall_s",
                                             "trainable_params", "peak_memory_mb", "heldout_examples")}
    if args.json:
        print(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    print(f"{'':6} {'held-out reward before':>24} {'after':>8} {'final KL':>9} {'wall s':>8}")
    for name, r in rows.items():
        print(f"{name:6} {r['heldout_reward_before']:24.3f} {r['heldout_reward_after']:8.3f} {r['final_kl']:9.3f} "
              f"{r['wall_s']:8.0f}")


if __name__ == "__main__":
    main()
