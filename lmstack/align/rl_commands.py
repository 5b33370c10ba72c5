"""``lmstack ppo`` and ``lmstack grpo``: optimise a policy against a reward by sampling, one command per algorithm.

    base model dir + prompts (read_prompts: prompt-only or preference files) + reward (rules:..., a reward model
      directory, file.py:function) -> method.apply(model) [lora by default] -> PPO | GRPO objective
      -> the one trainer -> out/adapter or out/model, metrics.jsonl, loss.png, reward_kl.png

Before training and after it, the held-out prompts (``val_prompts``, or a seeded ``val_fraction`` of the prompts)
are answered greedily and scored with the same reward: ``heldout_reward_before`` (the base model) and
``heldout_reward_after`` (the trained policy) in the result, beside the last rollout's KL to the reference.
Everything a user can get wrong (files, reward, prompt lengths, the rollout's split into minibatches) is checked
before anything is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from lmstack.adapt.finetune import PolicyConfig
from lmstack.adapt.methods import count_parameters
from lmstack.align.data import encode_prompts
from lmstack.align.grpo import GRPO
from lmstack.align.held_out import greedy_replies
from lmstack.align.on_policy import OnPolicy
from lmstack.align.ppo import PPO, KLController
from lmstack.align.rewards import RewardFn, load_reward
from lmstack.data.preferences import PromptRecord, read_prompts
from lmstack.devices import resolve_device, use_bf16
from lmstack.data.splits import hold_out
from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.io import read_jsonl
from lmstack.model.hf import load_causal_lm
from lmstack.text.chat import ChatFormat
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.distributed import gathered
from lmstack.train.checkpoint import check_run_dir
from lmstack.plots import pyplot, save_png
from lmstack.train.metrics import peak_memory_mb
from lmstack.train.trainer import Trainer


@dataclass
class RLConfig(PolicyConfig):
    """What PPO and GRPO share: the policy, the prompts, the reward, sampling and the rollout's minibatches."""
    model: Path = Path("runs/demo/sft/model")  # the starting (and reference) model: an SFT model, merged
    prompts: list[Path] = field(default_factory=lambda: [Path("runs/demo/corpus/rl_prompts_train.jsonl")])
    val_prompts: list[Path] = field(default_factory=list)  # held-out prompts; empty: hold out val_fraction
    val_fraction: float = 0.1
    eval_prompts: int = 64  # held-out prompts answered before and after (0: skip the evaluation)
    reward: str = "rules:chosen"  # rules:NAME[,NAME], a reward model directory, or file.py:function
    out: Path = Path("runs/rl")
    max_new_tokens: int = 32  # the longest sampled answer
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    rollout_prompts: int = 16  # prompts per rollout batch
    epochs: int = 2  # passes over each rollout's minibatches (PPO's ppo_epochs)
    clip: float = 0.2  # epsilon of the clipped ratio
    # the loop's defaults, for RL: batch_size is the minibatch (answers per optimizer step)
    batch_size: int = 8
    max_iters: int = 200
    lr: float = 5e-4
    min_lr: float = 5e-5
    warmup_iters: int = 10
    weight_decay: float = 0.0
    checkpoint_interval: int = 50

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.epochs < 1 or self.rollout_prompts < 1 or not 0 < self.clip < 1:
            raise LmstackError(f"need epochs >= 1, rollout_prompts >= 1 and 0 < clip < 1; got {self.epochs}, "
                               f"{self.rollout_prompts}, {self.clip}")
        if not 0 <= self.val_fraction < 1 or self.eval_prompts < 0:
            raise LmstackError(f"need 0 <= val_fraction < 1 and eval_prompts >= 0; got {self.val_fraction}, "
                               f"{self.eval_prompts}")

    def generation(self) -> GenerationConfig:
        return GenerationConfig(max_new_tokens=self.max_new_tokens, do_sample=True, temperature=self.temperature,
                                top_k=self.top_k, top_p=self.top_p)


@dataclass
class PPOConfig(RLConfig):
    gamma: float = 1.0  # discount
    lam: float = 0.95  # GAE's lambda
    clip_value: float = 0.2  # the value loss's clip range
    vf_coef: float = 0.1
    ent_coef: float = 0.0  # entropy bonus
    kl_coef: float = 0.05  # beta (the start value, with kl_target)
    kl_target: float | None = None  # adaptive beta (Ziegler et al. 2019): KL per answer to hold; None: fixed
    kl_horizon: int = 10000
    whiten_advantages: bool = True
    out: Path = Path("runs/ppo")

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (0 <= self.gamma <= 1 and 0 <= self.lam <= 1) or min(self.clip_value, self.vf_coef, self.kl_coef) < 0:
            raise LmstackError(f"need gamma and lam in [0, 1], clip_value, vf_coef and kl_coef >= 0; got {self.gamma}, "
                               f"{self.lam}, {self.clip_value}, {self.vf_coef}, {self.kl_coef}")
        if (self.kl_target is not None and self.kl_target <= 0) or self.kl_horizon <= 0:
            raise LmstackError(f"kl_target and kl_horizon must be positive, got {self.kl_target}, {self.kl_horizon}")


@dataclass
class GRPOConfig(RLConfig):
    group: int = 8  # answers sampled per prompt
    beta: float = 0.04  # weight of the k3 KL to the reference; 0: no reference
    eps: float = 1e-4  # in the advantage's denominator
    rollout_prompts: int = 4
    epochs: int = 1
    out: Path = Path("runs/grpo")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group < 2 or self.beta < 0 or self.eps <= 0:
            raise LmstackError(f"need group >= 2 (answers to compare), beta >= 0 and eps > 0; got {self.group}, "
                               f"{self.beta}, {self.eps}")


def ppo(cfg: PPOConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """PPO as in InstructGPT: sample answers, score them, per-token KL to the reference, GAE, clipped losses.

    Args:
        cfg: the run (--config FILE.yaml, then overrides such as --reward rules:answer --kl_target 6)
        resume: continue from OUT/checkpoint exactly where it stopped
        overwrite: start afresh although OUT holds an earlier run's checkpoint (otherwise that is refused)
    """
    def make(tokenizer: Tokenizer, records: list[PromptRecord], reward: RewardFn, bf16: bool) -> PPO:
        return PPO(cfg.model, cfg.method_config(), tokenizer, records, reward, cfg.generation(), cfg.rollout_prompts,
                   cfg.epochs, cfg.batch_size, cfg.max_len, bf16, gamma=cfg.gamma, lam=cfg.lam, clip=cfg.clip,
                   clip_value=cfg.clip_value, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
                   kl=KLController(cfg.kl_coef, cfg.kl_target, cfg.kl_horizon),
                   whiten_advantages=cfg.whiten_advantages)
    return run_rl(cfg, make, resume, overwrite, "ppo_config.json")


def grpo(cfg: GRPOConfig, resume: bool = False, overwrite: bool = False) -> dict:
    """GRPO: groups of sampled answers per prompt, group-normalised rewards as advantages, no value model.

    Args:
        cfg: the run (--config FILE.yaml, then overrides such as --reward rules:answer --group 8 --beta 0)
        resume: continue from OUT/checkpoint exactly where it stopped
        overwrite: start afresh although OUT holds an earlier run's checkpoint (otherwise that is refused)
    """
    def make(tokenizer: Tokenizer, records: list[PromptRecord], reward: RewardFn, bf16: bool) -> GRPO:
        return GRPO(cfg.model, cfg.method_config(), tokenizer, records, reward, cfg.generation(),
                    cfg.rollout_prompts, cfg.epochs, cfg.batch_size, cfg.max_len, bf16, group=cfg.group,
                    clip=cfg.clip, beta=cfg.beta, eps=cfg.eps)
    return run_rl(cfg, make, resume, overwrite, "grpo_config.json")


def run_rl(cfg: RLConfig, make, resume: bool, overwrite: bool, config_name: str) -> dict:
    """Read and check everything, evaluate the base, train ``make(...)``'s objective, evaluate the policy."""
    check_run_dir(cfg.out, resume, overwrite)
    tokenizer = Tokenizer.load(cfg.model)
    device = resolve_device(cfg.device)
    records, held_out = split_prompts(cfg)
    reward = load_reward(cfg.reward, tokenizer, device)
    bf16 = use_bf16(cfg.precision, device)
    objective: OnPolicy = make(tokenizer, records, reward, bf16)
    trainer = Trainer(objective, cfg, cfg.out, resume=resume, config_name=config_name)  # builds: prompts checked
    policy = objective.policy(trainer.model)
    encode_prompts(ChatFormat(tokenizer), held_out, cfg.max_len or policy.config.block_size, cfg.max_new_tokens)
    before = held_out_reward(load_causal_lm(cfg.model, device=device), tokenizer, held_out, reward, cfg)
    result = trainer.run()
    with gathered(trainer.model):  # FSDP2: the root's parameters too, whole, for the policy's decoding
        after = held_out_reward(policy.eval(), tokenizer, held_out, reward, cfg)
    plot_reward_kl([r for _, r in read_jsonl(cfg.out / "metrics.jsonl")], cfg.out / "reward_kl.png",
                   objective.title(trainer.model))
    last = objective.last_stats
    return {**result, **count_parameters(trainer.model), "method": cfg.method, "reward": cfg.reward,
            "prompts": len(records), "heldout_prompts": len(held_out),
            "heldout_reward_before": before["mean"], "heldout_reward_after": after["mean"],
            "heldout_examples": after["examples"], "final_rollout_reward": last.get("reward"),
            "final_kl": last.get("kl"), "final_beta": last.get("beta"),
            "peak_memory_mb": round(peak_memory_mb(trainer.device), 1), "out": str(cfg.out)}


def split_prompts(cfg: RLConfig) -> tuple[list[PromptRecord], list[PromptRecord]]:
    """The training prompts and the held-out ones (``val_prompts``, or a seeded ``val_fraction``, at least one),
    the latter cut to ``eval_prompts``."""
    records = [r for path in cfg.prompts for r in read_prompts(path)]
    if cfg.val_prompts:
        held_out = [r for path in cfg.val_prompts for r in read_prompts(path)]
    elif cfg.eval_prompts and cfg.val_fraction:
        records, held_out = hold_out(records, cfg.val_fraction, cfg.seed, "prompt", "--val_prompts")
    else:
        held_out = []
    return records, held_out[:cfg.eval_prompts]


def held_out_reward(model: torch.nn.Module, tokenizer: Tokenizer, records: list[PromptRecord], reward: RewardFn,
                    cfg: RLConfig) -> dict:
    """The mean reward of ``model``'s greedy answers to ``records`` (None without any), and a few examples."""
    if not records:
        return {"mean": None, "examples": []}
    replies = greedy_replies(model, tokenizer, [r.prompt for r in records], cfg.max_new_tokens, cfg.batch_size)
    rewards = reward(records, replies)
    examples = [{"prompt": r.prompt[-1]["content"], "reply": reply, "reward": value}
                for r, reply, value in zip(records[:3], replies, rewards)]
    return {"mean": sum(rewards) / len(rewards), "examples": examples}


def plot_reward_kl(records: list[dict], path: Path, title: str = "") -> None:
    """Mean rollout reward and KL to the reference per logged step (two panels)."""
    steps = [r for r in records if "reward" in r]
    fig, (top, bottom) = pyplot().subplots(2, 1, figsize=(7, 5), sharex=True)
    if steps:
        top.plot([r["iter"] for r in steps], [r["reward"] for r in steps], label="mean reward", linewidth=1)
        bottom.plot([r["iter"] for r in steps], [r.get("kl", float("nan")) for r in steps], color="tab:red",
                    label="KL to the reference", linewidth=1)
    top.set_ylabel("reward")
    bottom.set_ylabel("KL (nats)")
    bottom.set_xlabel("iteration")
    top.set_title(title)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if steps:
            ax.legend()
    save_png(fig, path)
