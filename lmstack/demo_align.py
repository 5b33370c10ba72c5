"""``lmstack demo-align`` (``make demo-align``): the textbook alignment path on the demo's model, with a report.

    demo's pretrained model + its SFT LoRA, merged ─► reward model (Bradley-Terry) ─► reward-eval
                                                  ├► DPO (LoRA, cached reference log-probs)
                                                  ├► PPO (LoRA + value head, the reward model, KL to the SFT model)
                                                  └► GRPO (LoRA, rule rewards: correct, polite, in the asked language)

on the synthetic world's ``preferences`` and ``rl_prompts`` datasets, held-out prompts answered greedily before and
after each stage and judged by the world's rules (``lmstack.data.synth.preferences.judge``).
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from lmstack.adapt.merge import merge_adapter
from lmstack.adapt.methods import load_adapted
from lmstack.align.dpo_command import DPOConfig, dpo
from lmstack.align.held_out import greedy_replies, judge_replies
from lmstack.align.reward_commands import RewardConfig, reward_eval, train_reward
from lmstack.align.rl_commands import GRPOConfig, PPOConfig, grpo, ppo
from lmstack.config import build, load_yaml, merge
from lmstack.data.preferences import read_prompts
from lmstack.data.synth import synth
from lmstack.data.synth.preferences import judge
from lmstack.demo import demo
from lmstack.errors import LmstackError
from lmstack.io import atomic_open

CONFIGS = Path(__file__).parent / "configs"


def demo_align(out: Path = Path("runs/demo-align"), demo_dir: Path = Path("runs/demo"), overwrite: bool = False,
               scale: float = 1.0) -> dict:
    """Reward model, DPO, PPO and GRPO on the demo's SFT model and the synthetic preferences; writes report.md.

    Args:
        out: folder for every artefact of the run (corpus, the four stages, report.md)
        demo_dir: the `lmstack demo` run to start from (run first when it has no SFT adapter yet)
        overwrite: replace an earlier run in OUT (otherwise an existing OUT/report.md is refused)
        scale: size of the synthetic datasets (1.0: 1,500 preference pairs, 1,000 RL prompts)
    """
    out, demo_dir, t0, timings = Path(out), Path(demo_dir), time.perf_counter(), {}
    if (out / "report.md").exists() and not overwrite:
        raise LmstackError(f"{out} holds an earlier demo-align run; pass --overwrite to replace it")
    if out.exists() and overwrite:
        shutil.rmtree(out)
    if not (demo_dir / "sft" / "adapter").is_dir():
        _say(f"{demo_dir} has no SFT adapter yet: running the demo first")
        demo(out=demo_dir)
    _say("1/6 the SFT model (the demo's LoRA merged) and the synthetic preferences")
    sft = out / "sft_model"
    merge_adapter(str(demo_dir / "train" / "model"), str(demo_dir / "sft" / "adapter"), out=str(sft))
    corpus = out / "corpus"
    synth(out=corpus, scale=scale)
    tests = read_prompts(corpus / "preferences_test.jsonl")
    before = _judged(sft, None, tests)
    timings["setup"] = _lap(t0, timings)
    _say(f"   SFT: {before['chosen_kind']:.1%} of {before['n']} held-out prompts answered the preferred way")

    _say("2/6 reward model (Bradley-Terry on the SFT model)")
    reward = train_reward(_config(RewardConfig, "align_reward.yaml", model=sft, out=out / "reward",
                                  data=[corpus / "preferences_train.jsonl"],
                                  val_data=[corpus / "preferences_test.jsonl"]))
    rm_eval = reward_eval(out / "reward" / "model", [corpus / "preferences_test.jsonl"], out=out / "reward" / "eval")
    timings["reward model"] = _lap(t0, timings)
    _say(f"   held-out pairwise accuracy {rm_eval['accuracy']:.3f}")

    _say("3/6 DPO (LoRA; reference log-probs cached before training)")
    dpo_result = dpo(_config(DPOConfig, "align_dpo.yaml", model=sft, out=out / "dpo",
                             data=[corpus / "preferences_train.jsonl"], val_data=[corpus / "preferences_test.jsonl"]))
    after_dpo = _judged(sft, out / "dpo" / "adapter", tests)
    timings["DPO"] = _lap(t0, timings)
    _say(f"   implicit-reward accuracy {dpo_result['val/accuracy']:.3f}; preferred answers "
         f"{before['chosen_kind']:.1%} -> {after_dpo['chosen_kind']:.1%}")

    _say("4/6 PPO (LoRA + value head, reward model, KL to the SFT model)")
    rl_data = {"prompts": [corpus / "rl_prompts_train.jsonl"], "val_prompts": [corpus / "rl_prompts_test.jsonl"]}
    ppo_result = ppo(_config(PPOConfig, "align_ppo.yaml", model=sft, out=out / "ppo",
                             reward=str(out / "reward" / "model"), **rl_data))
    after_ppo = _judged(sft, out / "ppo" / "adapter", tests)
    timings["PPO"] = _lap(t0, timings)
    _say(f"   held-out reward {ppo_result['heldout_reward_before']:.3f} -> {ppo_result['heldout_reward_after']:.3f}, "
         f"KL {ppo_result['final_kl']:.3f}")

    _say("5/6 GRPO (LoRA, rule rewards)")
    grpo_result = grpo(_config(GRPOConfig, "align_grpo.yaml", model=sft, out=out / "grpo", **rl_data))
    after_grpo = _judged(sft, out / "grpo" / "adapter", tests)
    timings["GRPO"] = _lap(t0, timings)
    _say(f"   held-out reward {grpo_result['heldout_reward_before']:.3f} -> "
         f"{grpo_result['heldout_reward_after']:.3f}, KL {grpo_result['final_kl']:.3f}")

    _say("6/6 writing the report")
    judged = {"SFT": before, "DPO": after_dpo, "PPO": after_ppo, "GRPO": after_grpo}
    write_report(out / "report.md", reward, rm_eval, dpo_result, ppo_result, grpo_result, judged, timings)
    return {"report": str(out / "report.md"), "reward_model_accuracy": rm_eval["accuracy"],
            "dpo_implicit_accuracy": dpo_result["val/accuracy"],
            **{f"preferred_{k.lower()}": v["chosen_kind"] for k, v in judged.items()},
            "ppo_reward_before": ppo_result["heldout_reward_before"],
            "ppo_reward_after": ppo_result["heldout_reward_after"],
            "ppo_kl": ppo_result["final_kl"], "grpo_reward_before": grpo_result["heldout_reward_before"],
            "grpo_reward_after": grpo_result["heldout_reward_after"], "grpo_kl": grpo_result["final_kl"],
            "seconds": round(time.perf_counter() - t0, 1)}


def _config(cls, yaml_name: str, **values):
    """A stage's config: its YAML under lmstack/configs, then the run's paths."""
    path = CONFIGS / yaml_name
    return build(cls, merge(load_yaml(path), {k: _plain(v) for k, v in values.items()}), str(path))


def _plain(value):
    return [str(v) for v in value] if isinstance(value, list) else str(value) if isinstance(value, Path) else value


def _judged(model: Path, adapter: Path | None, records) -> dict:
    """The share of held-out prompts whose greedy answer is correct, polite and in the asked language."""
    policy, tokenizer = load_adapted(model, adapter)
    replies = greedy_replies(policy, tokenizer, [r.prompt for r in records])
    result = judge_replies(replies, [r.meta for r in records], judge)
    for r, e in zip(records, result["examples"]):
        e["prompt"] = r.prompt[-1]["content"]
    return result


def write_report(path: Path, reward: dict, rm_eval: dict, dpo_result: dict, ppo_result: dict, grpo_result: dict,
                 judged: dict[str, dict], timings: dict) -> None:
    pct = lambda x: f"{x:.1%}"  # noqa: E731
    lines = ["# lmstack demo-align report", "",
             "The demo's SFT model aligned four ways on the synthetic world's preferences (chosen answers are correct, "
             "polite and in the asked language; rejected ones have a wrong fact, are rude, or are in the other "
             "language).", "",
             "## Reward model", "",
             f"Bradley-Terry on {reward.get('pairs', '?')} pairs, {reward['iters']} steps: held-out pairwise accuracy "
             f"**{rm_eval['accuracy']:.3f}** on {rm_eval['pairs']} pairs (mean margin {rm_eval['mean_margin']:.2f}).",
             "", "![reward margins](reward/eval/margins.png)", "",
             "## Held-out prompts answered the preferred way (greedy, judged by the world's rules)", "",
             "| policy | preferred | correct | polite | asked language |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | {pct(j['chosen_kind'])} | {pct(j['correct'])} | {pct(j['polite'])} | "
              f"{pct(j['right_language'])} |" for name, j in judged.items()]
    lines += ["", f"DPO ({dpo_result['loss_type']}, {dpo_result['iters']} steps): held-out implicit-reward accuracy "
              f"**{dpo_result['val/accuracy']:.3f}**.", "", "![DPO loss](dpo/loss.png)", "",
              "## PPO and GRPO", "", "| stage | reward | held-out reward before | after | final KL |",
              "|---|---|---:|---:|---:|"]
    for name, r in (("PPO", ppo_result), ("GRPO", grpo_result)):
        lines.append(f"| {name} | {r['reward']} | {r['heldout_reward_before']:.3f} | {r['heldout_reward_after']:.3f} | "
                     f"{r['final_kl']:.3f} |")
    lines += ["", "![PPO reward and KL](ppo/reward_kl.png)", "", "![GRPO reward and KL](grpo/reward_kl.png)", "",
              "## Examples (held-out prompts)", "", "| prompt | SFT | DPO | PPO | GRPO |", "|---|---|---|---|---|"]
    cell = lambda t: json.dumps(t[:100], ensure_ascii=False)[1:-1].replace("|", "\\|")  # noqa: E731
    rows = zip(*(j["examples"] for j in judged.values()))
    lines += ["| " + " | ".join([cell(row[0]["prompt"]), *(cell(e["reply"]) for e in row)]) + " |" for row in rows]
    lines += ["", "## Time per stage (seconds)", "", "| stage | seconds |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    with atomic_open(path) as f:
        f.write("\n".join(lines) + "\n")


def _lap(t0: float, timings: dict) -> float:
    return time.perf_counter() - t0 - sum(timings.values())


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
