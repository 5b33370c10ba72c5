"""The processes of tests/train/test_distributed.py: ``torchrun --standalone --nproc-per-node 2 dist_worker.py
ROOT DATA runs`` trains every multi-process scenario through ``lmstack.train.pretrain.train`` (one launch, so
the test pays for starting torch once); ``... dist_worker.py ROOT DATA die`` is a run whose rank 1 dies
mid-step. Each rank writes what it saw to ROOT/rank{R}.json."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch

from lmstack.adapt.finetune import FinetuneConfig, finetune
from lmstack.align.rl_commands import GRPOConfig, PPOConfig, grpo, ppo
from lmstack.config import build
from lmstack.data.shards import TokenShards
from lmstack.errors import LmstackError
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.config import TrainConfig
from lmstack.train.objectives.causal import CausalLM
from lmstack.train.pretrain import train
from lmstack.train.trainer import Callback, Trainer

LLAMA = {"family": "llama", "n_layer": 2, "n_head": 2, "n_kv_head": 1, "n_embd": 32, "block_size": 32,
         "bias": False, "activation": "silu"}
GPT2 = {"family": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 32}
LOOP = {"batch_size": 4, "max_iters": 20, "eval_interval": 10, "eval_iters": 2, "log_interval": 1,
        "checkpoint_interval": 10, "lr": 3e-3, "warmup_iters": 5, "lr_decay_iters": 20, "precision": "fp32",
        "device": "cpu", "dist_timeout": 60}
RUNS = {  # name: (model, settings)
    "ddp": (LLAMA, {"parallel": "ddp"}),
    "ddp_ga2": (LLAMA, {"parallel": "ddp", "grad_accum": 2}),
    "fsdp": (GPT2, {"parallel": "fsdp"}),
    "fsdp_ga2": (GPT2, {"parallel": "fsdp", "grad_accum": 2}),
    "fsdp_ckpt_offload": (GPT2, {"parallel": "fsdp", "fsdp": {"activation_checkpointing": True, "cpu_offload": True}}),
}
EXACT = ("ddp", "ddp_ga2", "fsdp", "fsdp_ga2", "fsdp_ckpt_offload")  # fp32: equal to the one-process run
BF16 = (GPT2, {"parallel": "fsdp", "fsdp": {"param_dtype": "bf16"}})  # bf16 compute: learns, not equal


def config(data: Path, out: Path, model: dict, **settings) -> TrainConfig:
    return build(TrainConfig, {**LOOP, "data": str(data), "out": str(out), "model": model, **settings})


def runs(root: Path, data: Path, rank: int) -> dict:
    seen: dict = {}
    for name, (model, settings) in RUNS.items():
        seen[name] = train(config(data, root / name, model, **settings))["loss"]
    seen["fsdp_bf16"] = train(config(data, root / "fsdp_bf16", *BF16[:1], **BF16[1]))
    for name, (model, settings) in (("cut_ddp", RUNS["ddp"]), ("cut_fsdp", RUNS["fsdp"])):
        train(config(data, root / name, model, **{**settings, "max_iters": 10}))  # checkpoint at 10 of 20
        torch.distributed.barrier()
        if rank == 0:  # the parent resumes this copy in one process
            shutil.copytree(root / name, root / f"{name}_ws1")
        torch.distributed.barrier()
        train(config(data, root / name, model, **settings), resume=True)
    for method, parallel in (("lora", "ddp"), ("full", "fsdp")):  # fine-tuning the run above, same loop
        cfg = build(FinetuneConfig, {**LOOP, "max_iters": 6, "model": str(root / "ddp" / "model"), "method": method,
                                     "data": [str(data.parent / "corpus" / "sft_train.jsonl")], "parallel": parallel,
                                     "out": str(root / f"sft_{method}_{parallel}")})
        seen[f"sft_{method}_{parallel}"] = finetune(cfg)
    prompts = root / f"rl_prompts_rank{rank}.jsonl"  # short ones: the tiny model's context is 32 tokens
    records = [{"prompt": [{"role": "user", "content": q}], "lang": "en", "answer": "x"} for q in ("Hi", "Who?")]
    prompts.write_text("".join(json.dumps(r) + "\n" for r in records * 2))
    cfg = build(GRPOConfig, {**LOOP, "max_iters": 2, "model": str(root / "ddp" / "model"), "parallel": "fsdp",
                             "prompts": [str(prompts)], "group": 2,
                             "rollout_prompts": 2, "batch_size": 2, "max_new_tokens": 6, "eval_prompts": 2,
                             "reward": "rules:language", "out": str(root / "grpo_fsdp")})
    seen["grpo_fsdp"] = grpo(cfg)  # rollouts decode under inference mode: FSDP2 units gathered first
    for parallel in ("ddp", "fsdp"):  # PPO decodes with the policy inside its root (policy + value head)
        settings = {k: v for k, v in cfg.__dict__.items() if k in ("max_iters", "batch_size", "max_new_tokens")}
        seen[f"ppo_{parallel}"] = ppo(build(PPOConfig, {
            **LOOP, **settings, "model": str(root / "ddp" / "model"), "parallel": parallel, "prompts": [str(prompts)],
            "rollout_prompts": 2, "eval_prompts": 2, "reward": "rules:language", "out": str(root / f"ppo_{parallel}")}))
    for name, model, settings in (("odd_batch", LLAMA, {"parallel": "ddp", "batch_size": 3}),
                                  ("fsdp_small", {**LLAMA, "n_layer": 1}, {"parallel": "fsdp"})):
        try:
            train(config(data, root / name, model, **settings))
            seen[name] = None
        except LmstackError as e:
            seen[name] = str(e)
    return seen


class DieAt(Callback):
    def __init__(self, it: int):
        self.it = it

    def on_step_end(self, trainer: Trainer, loss: float, metrics: dict) -> None:
        if trainer.state.iter == self.it and trainer.parallel.rank == 1:
            os._exit(3)  # as a killed process: no clean-up, no goodbye to the group


def die(root: Path, data: Path, rank: int) -> dict:
    cfg = config(data, root / "die", LLAMA, parallel="ddp", checkpoint_interval=5, dist_timeout=20)
    tokenizer = Tokenizer.load(data)
    model_cfg = cfg.model.replace(vocab_size=tokenizer.vocab_size)
    objective = CausalLM(TokenShards(data, "train"), TokenShards(data, "val"), cfg.batch_size, 32, model_cfg,
                         tokenizer)
    try:
        Trainer(objective, cfg, cfg.out, callbacks=[DieAt(12)], progress=False).run()
        return {"die": None}
    except LmstackError as e:
        return {"die": str(e)}


if __name__ == "__main__":
    root, data, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    rank = int(os.environ["RANK"])
    seen = {"runs": runs, "die": die}[mode](root, data, rank)
    (root / f"{mode}_rank{rank}.json").write_text(json.dumps(seen))
