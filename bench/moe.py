"""A mixture of experts against the dense Llama with the same active parameters, on the same tokens.

8 experts top-2 of width I/2 (``mixtral``) against one SwiGLU of width I (``llama``): per token both run the same
matmuls (plus the MoE's router, d * 8 per layer); the MoE holds 4x the feed-forward parameters. Each model trains
``--steps`` steps of the same batches (same seed) on the synthetic corpus (``lmstack synth`` + ``lmstack
prepare``, as the demo makes it; here at --scale): validation loss at equal steps, training tokens/s (the mean
of the logged windows after the first fifth), and the per-expert load after training, measured on 40 validation
batches: each layer's max / mean token-choices per expert, the worst layer and the mean over layers, with the
balance loss (``router_aux_coef`` 0.01, Switch's; and 0.1) and without it (0). A PNG of the per-expert loads
of the MoE runs. tokens/s ratios come from the models timed in turns after training (``interleaved_speed``).

    OMP_NUM_THREADS=1 python bench/moe.py                   # 500 steps, a few CPU minutes per run
    OMP_NUM_THREADS=1 python bench/moe.py --steps 100 --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from lmstack.config import build
from lmstack.data.prepare import prepare
from lmstack.data.shards import TokenShards
from lmstack.data.synth import synth
from lmstack.model.hf import load_model
from lmstack.model.moe import auxiliary_losses, moe_layers
from lmstack.plots import pyplot, save_png
from lmstack.train.config import TrainConfig
from lmstack.train.objectives.causal import causal_lm_loss, with_router_losses
from lmstack.train.pretrain import train

BODY = dict(n_layer=4, n_head=4, n_kv_head=2, n_embd=128, block_size=64, bias=False, activation="silu",
            norm_eps=1e-6, tie_embeddings=True)


def runs(width: int, balance: list[float]) -> dict[str, dict]:
    moe = dict(BODY, family="mixtral", n_experts=8, n_experts_per_tok=2, moe_intermediate_size=width // 2,
               router_z_coef=0.001)
    return {"dense": dict(BODY, family="llama", intermediate_size=width),
            **{f"moe top-2 of 8, balance {c:g}": dict(moe, router_aux_coef=c) for c in balance}}


def interleaved_speed(models: dict[str, Path], batch_size: int, rounds: int = 12, steps: int = 3
                      ) -> dict[str, float]:
    """Training tokens/s of each trained model (forward, router terms, backward, AdamW) timed in turns,
    ``rounds`` times ``steps`` steps each, the median kept: the machine's other load falls on every model alike."""
    built = {}
    for name, folder in models.items():
        model = load_model(folder).train()
        built[name] = model, torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, 1024, (batch_size, BODY["block_size"]), generator=torch.Generator().manual_seed(0))

    def step(model, optimizer) -> None:
        loss, _ = with_router_losses(model, x, causal_lm_loss(model(x), x), {})
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    times = {name: [] for name in built}
    for r in range(rounds + 1):
        for name, pair in built.items():
            t0 = time.perf_counter()
            for _ in range(steps):
                step(*pair)
            if r:  # the first round warms up
                times[name].append(time.perf_counter() - t0)
    return {name: steps * x.numel() / statistics.median(t) for name, t in times.items()}


@torch.no_grad()
def expert_load(model_dir: Path, data: Path, batches: int, batch_size: int) -> torch.Tensor:
    """[L, E] token-choices per expert on ``batches`` validation batches (every token real)."""
    model = load_model(model_dir).train()  # training mode records the routing; no dropout, dropless
    for m in moe_layers(model):
        m.load.zero_()
    val, rng = TokenShards(data, "val"), torch.Generator().manual_seed(0)
    for _ in range(batches):
        x, _ = val.batch(batch_size, model.config.block_size, rng)
        model(x)
        auxiliary_losses(model)  # adds each layer's choices to its ``load``
    return torch.stack([m.load.float() for m in moe_layers(model)])


def plot(loads: dict[str, torch.Tensor], path: Path) -> None:
    fig, axes = pyplot().subplots(1, len(loads), figsize=(6 * len(loads), 3.6), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, (name, load) in zip(axes, loads.items()):
        share = load / load.sum(dim=1, keepdim=True)
        L, E = share.shape
        for layer in range(L):
            ax.bar([e + (layer - (L - 1) / 2) * 0.8 / L for e in range(E)], share[layer].tolist(), 0.8 / L,
                   label=f"layer {layer}")
        ax.axhline(1 / E, color="grey", linestyle="--", label="uniform")
        ratio = (load.max(dim=1).values / load.mean(dim=1)).max()
        ax.set_title(f"{name}: worst max/mean {ratio:.2f}")
        ax.set_xlabel("expert")
        ax.set_xticks(range(E))
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel("share of token-choices (validation)")
    axes[0].legend(fontsize=7)
    save_png(fig, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--width", type=int, default=384, help="the dense MLP's width I (experts: I / 2)")
    parser.add_argument("--scale", type=float, default=0.3, help="synthetic corpus scale")
    parser.add_argument("--balance", type=float, nargs="+", default=[0.01, 0.1, 0.0],
                        help="router_aux_coef of each MoE run")
    parser.add_argument("--out", type=Path, default=Path("runs/bench_moe"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        synth(out=Path(tmp) / "corpus", scale=args.scale)
        data = Path(tmp) / "data"
        prepare([Path(tmp) / "corpus" / "pretrain.jsonl"], out=data, vocab_size=1024)
        rows, loads, folders = [], {}, {}
        configs = runs(args.width, args.balance)
        for name, model in configs.items():
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            cfg = build(TrainConfig, {"data": data, "out": out, "model": model, "batch_size": args.batch_size,
                                      "max_iters": args.steps, "eval_interval": args.steps, "eval_iters": 40,
                                      "lr": 3e-3, "warmup_iters": args.steps // 10, "log_interval": 10,
                                      "precision": "fp32", "device": "cpu", "seed": 0})
            t0 = time.perf_counter()
            result = train(cfg)
            folders[name] = out / "model"
            records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
            speed = [r["tokens_per_s"] for r in records if "tokens_per_s" in r]
            row = {"run": name, "val_loss": result["val_loss"],
                   "tokens_per_s": statistics.mean(speed[len(speed) // 5:]), "wall_s": time.perf_counter() - t0,
                   "params": load_model(out / "model").num_params()}
            if "moe" in name:
                load = expert_load(out / "model", data, 40, args.batch_size)
                ratio = load.max(dim=1).values / load.mean(dim=1)
                row |= {"load_max_mean_worst": float(ratio.max()), "load_max_mean_avg": float(ratio.mean())}
                loads[name] = load
            rows.append(row)
        speed = interleaved_speed(folders, args.batch_size)
    for row in rows:
        row["tokens_per_s_interleaved"] = speed[row["run"]]
        row["speed_vs_dense"] = speed[row["run"]] / speed["dense"]
    plot(loads, args.out / "expert_load.png")
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.steps} steps x {args.batch_size} x {BODY['block_size']} tokens, d={BODY['n_embd']}, "
          f"L={BODY['n_layer']}, dense I={args.width}, experts I={args.width // 2}; "
          f"plot: {args.out / 'expert_load.png'}")
    print("tok/s (run): the training run's own mean (other load on the machine varies between runs); tok/s: the "
          "models timed in turns, the ratio from these")
    print(f"{'run':32} {'params':>9} {'val loss':>9} {'tok/s (run)':>12} {'tok/s':>8} {'vs dense':>9} "
          f"{'load max/mean (worst, avg)':>27}")
    for r in rows:
        load = (f"{r['load_max_mean_worst']:.2f}, {r['load_max_mean_avg']:.2f}" if "load_max_mean_worst" in r
                else "-")
        print(f"{r['run']:32} {r['params']:>9,} {r['val_loss']:>9.4f} {r['tokens_per_s']:>12,.0f} "
              f"{r['tokens_per_s_interleaved']:>8,.0f} {r['speed_vs_dense']:>8.2f}x {load:>27}")


if __name__ == "__main__":
    main()
