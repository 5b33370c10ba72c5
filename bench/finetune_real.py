"""Fine-tuning on real instruction data (LLaMA-Factory's alpaca demo files): validation loss, full vs LoRA.

    python bench/finetune_real.py --model runs/demo/train/model --json

Proves the readers and the chat template on real formats: each file is read as alpaca records, rendered
with the model's chat template, prompt-masked, and tuned with each method; the validation loss (10% of the
records held out) is logged every --eval-every steps and drawn into one PNG per file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "llamafactory_demo"
METHODS = {"full": ["--lr", "1e-3"], "lora": ["--lr", "3e-3", "--lora.targets", "all-linear"]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="base model directory")
    p.add_argument("--files", nargs="+", default=["alpaca_en_demo.json", "alpaca_zh_demo.json"])
    p.add_argument("--iters", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if not DATA.is_dir():
        sys.exit(f"{DATA} is absent: this benchmark needs ../shared/data")
    out = args.out or Path(tempfile.mkdtemp(prefix="finetune_real_"))
    report = {}
    for name in args.files:
        curves = {}
        for method, flags in METHODS.items():
            run_dir = out / Path(name).stem / method
            cmd = [sys.executable, "-m", "lmstack", "finetune", "--model", args.model, "--data", str(DATA / name),
                   "--format", "alpaca", "--val_fraction", "0.1", "--out", str(run_dir), "--method", method,
                   "--max_iters", str(args.iters), "--eval_interval", str(args.eval_every), "--eval_iters", "10",
                   *flags, "--json"]
            result = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
            curves[method] = {"iters": [m["iter"] for m in metrics if "val_loss" in m],
                              "val_loss": [round(m["val_loss"], 4) for m in metrics if "val_loss" in m],
                              "trainable_fraction": result["trainable_fraction"], "truncated": result["truncated"],
                              "examples": result["examples"], "wall_s": round(result["wall_s"], 1)}
            print(name, method, curves[method]["val_loss"], file=sys.stderr)
        report[name] = curves
        _plot(curves, out / f"{Path(name).stem}_val_loss.png", name)
    if args.json:
        print(json.dumps({"out": str(out), "files": report}))
        return
    for name, curves in report.items():
        for method, c in curves.items():
            print(f"{name:<22}{method:<6} val loss {c['val_loss'][0]:.3f} -> {c['val_loss'][-1]:.3f} "
                  f"({c['trainable_fraction']:.2%} trained, {c['wall_s']} s)")
    print(f"plots in {out}")


def _plot(curves: dict, path: Path, title: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, c in curves.items():
        ax.plot(c["iters"], c["val_loss"], marker="o", label=f"{method} ({c['trainable_fraction']:.2%} trained)")
    ax.set(xlabel="step", ylabel="validation loss (nats/token)", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
