"""The loss-spike guard on injected spikes: clean / spiked / spiked + guard, train loss per step, as a PNG.

    OMP_NUM_THREADS=1 python bench/spike_guard.py [--out docs/bench/spike_guard.png] [--json]

A tiny Llama (2 layers, width 32) on the built-in synthetic world (300-token BPE), 200 steps of 8 x 32 tokens on
the CPU. Two injections, each at step 100:
  poisoned batch   one batch's loss (and gradient) x1000, clipping off: AdamW's second moments are poisoned and
                   the unguarded run stalls; guard = ``spike_guard: skip`` (OLMo-core's 6-sigma rule).
  learning rate    lr x100 for 3 steps: the applied updates wreck the weights; guard = ``spike_guard: rollback``
                   (PaLM: restore the last checkpoint, skip 2 steps of batches), checkpoints every 20 steps.
Prints each run's final validation loss and the guard's events.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from lmstack.data.prepare import prepare
from lmstack.data.shards import TokenShards
from lmstack.data.synth import synth
from lmstack.model.config import ModelConfig
from lmstack.plots import pyplot, save_png
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.config import LoopConfig
from lmstack.train.spike_injection import LrSpike, PoisonedLM
from lmstack.train.trainer import Trainer

MODEL = ModelConfig(family="llama", n_layer=2, n_head=2, n_kv_head=1, n_embd=32, block_size=32, bias=False,
                    activation="silu")
SPIKE, STEPS = 100, 200


def run(data: Path, out: Path, poison: bool = False, lr_spike: bool = False, **loop) -> tuple[dict, list[dict]]:
    tok = Tokenizer.load(data)
    objective = PoisonedLM(TokenShards(data, "train"), TokenShards(data, "val"), 8, 32,
                           MODEL.replace(vocab_size=tok.vocab_size), tok, at=SPIKE if poison else None)
    cfg = LoopConfig(max_iters=STEPS, batch_size=8, lr=3e-3, min_lr=3e-4, warmup_iters=10, eval_interval=STEPS,
                     eval_iters=8, log_interval=1, checkpoint_interval=20, device="cpu", spike_window=64,
                     spike_min_history=32, rollback_skip=2, **loop)
    callbacks = [LrSpike(range(SPIKE, SPIKE + 3))] if lr_spike else []
    result = Trainer(objective, cfg, out, callbacks=callbacks, progress=False).run()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return result, [r for r in records if "loss" in r]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/bench/spike_guard.png"))
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synth(out=root / "corpus", scale=0.03)
        prepare([root / "corpus" / "pretrain.jsonl"], out=root / "data", vocab_size=300)
        data = root / "data"
        scenarios = {
            "poisoned batch (x1000 loss, no clipping)": [
                ("clean", {"grad_clip": 0.0}), ("spiked", {"poison": True, "grad_clip": 0.0}),
                ("spiked + skip guard", {"poison": True, "grad_clip": 0.0, "spike_guard": "skip"})],
            "learning rate x100 for 3 steps": [
                ("clean", {}), ("spiked", {"lr_spike": True}),
                ("spiked + rollback guard", {"lr_spike": True, "spike_guard": "rollback"})],
        }
        fig, axes = pyplot().subplots(1, 2, figsize=(12, 4.2), sharey=True)
        figures = {}
        for ax, (title, runs) in zip(axes, scenarios.items()):
            for i, (label, kwargs) in enumerate(runs):
                result, steps = run(data, root / f"{title[:8]}{i}", **kwargs)
                figures[f"{title} / {label}"] = {"val_loss": result["val_loss"],
                                                 "events": [(e["iter"], e["action"])
                                                            for e in result.get("spike_events", [])]}
                ax.plot([r["iter"] for r in steps], [min(r["loss"], 12.0) for r in steps], linewidth=1,
                        label=f"{label}: val {result['val_loss']:.3f}")
            ax.axvline(SPIKE + 1, color="grey", linestyle=":", linewidth=1)
            ax.set_title(title)
            ax.set_xlabel("iteration")
            ax.grid(alpha=0.3)
            ax.legend()
        axes[0].set_ylabel("train loss (nats/token, capped at 12)")
        fig.suptitle("lmstack spike guard: tiny Llama, 200 CPU steps, spike injected at step 101")
        save_png(fig, args.out)
    figures["png"] = str(args.out)
    if args.json:
        print(json.dumps(figures))
    else:
        for name, v in figures.items():
            print(name, v)


if __name__ == "__main__":
    main()
