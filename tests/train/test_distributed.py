"""Multi-process training on CPU (gloo, world size 2): DDP and FSDP2 reach a one-process run's losses with the
same global batch, sharded checkpoints resume at world sizes 1 and 2, export loads in transformers, and bad
input (an odd batch, FSDP on too small a model, a foreign checkpoint, no rendezvous, a dead rank) is one line.

One ``torchrun`` launch (tests/train/dist_worker.py) trains every scenario; the single-process references run
here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers

from lmstack.adapt.finetune import FinetuneConfig, finetune
from lmstack.config import build
from lmstack.errors import LmstackError
from lmstack.model.hf import load_model
from lmstack.train.config import LoopConfig, TrainConfig
from lmstack.train.distributed import build_parallel, take_rows
from lmstack.train.export import export
from lmstack.train.pretrain import train

sys.path.insert(0, str(Path(__file__).parent))
from dist_worker import EXACT, LLAMA, LOOP, RUNS  # noqa: E402

WORKER = Path(__file__).parent / "dist_worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _losses(out: Path) -> dict[int, float]:
    return {r["iter"]: r["loss"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if "loss" in r}


def _config(data: Path, out: Path, model: dict, **settings) -> TrainConfig:
    return build(TrainConfig, {**LOOP, "data": str(data), "out": str(out), "model": model, **settings})


@pytest.fixture(scope="module")
def world(data, tmp_path_factory) -> Path:
    """Every world-size-2 scenario, trained by one torchrun launch."""
    root = tmp_path_factory.mktemp("dist")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(WORKER), str(root), str(data), "runs"], env=ENV, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The one-process runs of the same global batches."""
    root = tmp_path_factory.mktemp("ref")
    for name, (model, settings) in RUNS.items():
        train(_config(data, root / name, model, **_single(settings)))
    return root


def _single(settings: dict) -> dict:
    """The one-process run's settings: the same global batch, no parallel options."""
    return {k: v for k, v in settings.items() if k not in ("parallel", "fsdp")}


@pytest.mark.parametrize("name", EXACT)
def test_losses_equal_one_process_run(world, reference, name):
    ours, ref = _losses(world / name), _losses(reference / name)
    assert sorted(ours) == list(range(1, 21))
    assert ours == pytest.approx(ref, rel=1e-6, abs=0)  # fp32: a few ulps of ~5 nats
    assert ours[20] < ours[1] - 0.3  # and it learns


def test_fsdp_bf16_compute_learns(world):
    seen = json.loads((world / "runs_rank0.json").read_text())["fsdp_bf16"]
    assert seen["loss_last"] < seen["loss_first"] - 0.3
    assert seen["loss"] == pytest.approx(_losses(world / "fsdp")[20], abs=0.05)  # close to fp32, not equal


@pytest.mark.parametrize("method,parallel", [("lora", "ddp"), ("full", "fsdp")])
def test_finetune_under_torchrun(world, data, method, parallel):
    """SFT (masked mean per rank: close to, not bit-equal with, one process) runs and saves its artefact."""
    seen = json.loads((world / "runs_rank0.json").read_text())[f"sft_{method}_{parallel}"]
    ref = finetune(build(FinetuneConfig, {**LOOP, "max_iters": 6, "model": str(world / "ddp" / "model"),
                                          "method": method, "data": [str(data.parent / "corpus" / "sft_train.jsonl")],
                                          "out": str(world / f"sft_{method}_ref")}))
    assert seen["iters"] == 6 and Path(seen["saved"]).is_dir()
    assert seen["loss"] == pytest.approx(ref["loss"], rel=0.05)
    assert seen["trainable_params"] == ref["trainable_params"]


def test_grpo_and_ppo_under_fsdp(world):
    """RL rollouts decode under torch.inference_mode; with FSDP2 the units are gathered before it
    (``train.distributed.gathered``), so the next update's in-place write of the parameters works."""
    seen = json.loads((world / "runs_rank0.json").read_text())
    assert seen["grpo_fsdp"]["iters"] == 2 and Path(seen["grpo_fsdp"]["saved"]).is_dir()
    ddp, fsdp = seen["ppo_ddp"], seen["ppo_fsdp"]  # PPO's rollouts call the policy inside its root
    assert fsdp["iters"] == 2 and fsdp["loss"] == pytest.approx(ddp["loss"], rel=1e-5)
    assert fsdp["final_rollout_reward"] == pytest.approx(ddp["final_rollout_reward"], rel=1e-6)


def test_rank_zero_writes_alone(world):
    files = sorted(p.name for p in (world / "ddp").iterdir())
    assert files == ["checkpoint", "loss.png", "metrics.jsonl", "model", "train_config.json"]
    assert sorted(p.name for p in (world / "ddp" / "checkpoint" / "dcp").iterdir()) == \
        [".metadata", "__0_0.distcp", "__1_0.distcp"]  # one shard file per rank
    records = (world / "ddp" / "metrics.jsonl").read_text().splitlines()
    assert len(records) == len({json.dumps(json.loads(r)) for r in records})  # one writer: no doubled lines


@pytest.mark.parametrize("name", ["ddp", "fsdp"])
def test_resume_at_world_size_2_and_1(world, reference, data, name):
    ref = _losses(reference / name)
    at2 = _losses(world / f"cut_{name}")  # saved and resumed at world size 2
    assert at2 == pytest.approx(ref, rel=1e-6, abs=0)
    model, settings = RUNS[name]
    out = world / f"cut_{name}_ws1"  # saved at 2, resumed here by one process (DCP reshards)
    train(_config(data, out, model, **_single(settings)), resume=True)
    at1 = _losses(out)
    assert sorted(at1) == list(range(1, 21))
    assert {k: at1[k] for k in range(11, 21)} == pytest.approx({k: ref[k] for k in range(11, 21)}, rel=1e-6, abs=0)


@pytest.mark.parametrize("name,arch", [("ddp", "LlamaForCausalLM"), ("fsdp", "GPT2LMHeadModel")])
def test_export_loads_in_transformers(world, tmp_path, name, arch):
    result = export(world / name, out=tmp_path / "hf")
    assert result["iter"] == 20 and result["world_size"] == 2
    hf, info = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf", output_loading_info=True)
    assert type(hf).__name__ == arch
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    trained = load_model(world / name / "model")  # the artefact rank 0 saved at the end
    x = torch.randint(0, trained.config.vocab_size, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hf(x).logits, trained(x), atol=1e-5, rtol=1e-5)
    with pytest.raises(LmstackError, match="exists"):
        export(world / name, out=tmp_path / "hf")


def test_bad_input_is_one_line(world, data, tmp_path):
    seen = [json.loads((world / f"runs_rank{r}.json").read_text()) for r in (0, 1)]
    for rank in seen:
        assert "batch_size 3" in rank["odd_batch"] and "not divisible by the 2 processes" in rank["odd_batch"]
        assert "fsdp shards over 2 processes, but the model has 1 blocks" in rank["fsdp_small"]
    with pytest.raises(LmstackError, match="checkpoint of another model: parameter"):
        train(_config(data, world / "cut_ddp", {**LLAMA, "n_embd": 48}), resume=True)
    with pytest.raises(LmstackError, match="no sharded checkpoint"):
        export(tmp_path, out=tmp_path / "hf")
    os.environ.pop("WORLD_SIZE", None)
    with pytest.raises(LmstackError, match="needs the processes torchrun starts"):
        build_parallel(LoopConfig(parallel="ddp"))


def test_take_rows():
    x = torch.arange(8).view(4, 2)
    assert torch.equal(take_rows((x, x + 1), 1, 2)[1], torch.tensor([[5, 6], [7, 8]]))
    assert take_rows({"a": [1, 2, 3, 4], "s": "val"}, 0, 2) == {"a": [1, 2], "s": "val"}
    with pytest.raises(LmstackError, match="3 rows cannot be split evenly over 2"):
        take_rows([1, 2, 3], 0, 2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_missing_rendezvous_is_one_line(data, tmp_path):
    """A process whose rendezvous never answers exits non-zero with one line naming it, having written nothing."""
    lonely = subprocess.run([sys.executable, "-m", "lmstack", "train", "--data", str(data), "--out",
                             str(tmp_path / "lonely"), "--parallel", "ddp", "--dist_timeout", "3",
                             "--batch_size", "2"],
                            env={**ENV, "RANK": "1", "LOCAL_RANK": "1", "WORLD_SIZE": "2",
                                 "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port())},
                            capture_output=True, text=True, timeout=120)
    assert lonely.returncode == 2  # an LmstackError
    last = lonely.stderr.strip().splitlines()[-1]  # ours; torch's C++ logger adds its retries above it
    assert lonely.stderr.count("lmstack train: error:") == 1  # (TORCH_CPP_LOG_LEVEL=FATAL silences those)
    assert last.startswith("lmstack train: error: rank 1 of 2: no rendezvous with the other processes at "
                           "127.0.0.1:"), lonely.stderr[-2000:]
    assert not (tmp_path / "lonely").exists()  # nothing written


def test_dead_rank_leaves_last_checkpoint(data, tmp_path):
    """Rank 1 dies mid-step (after step 12): rank 0 exits with one line and the last checkpoint (iteration 10)
    is intact."""
    port = _free_port()
    procs = [subprocess.Popen([sys.executable, str(WORKER), str(tmp_path), str(data), "die"],
                              env={**ENV, "RANK": str(r), "LOCAL_RANK": str(r), "WORLD_SIZE": "2",
                                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    for p in procs:
        p.wait(timeout=120)
    assert procs[1].returncode == 3
    assert procs[0].returncode == 0, procs[0].stderr.read()[-2000:]
    said = json.loads((tmp_path / "die_rank0.json").read_text())["die"]
    assert said.startswith("rank 0 of 2: lost the other processes at iteration 12"), said
    state = json.loads((tmp_path / "die" / "checkpoint" / "trainer_state.json").read_text())
    assert state["iter"] == 10 and state["sharded"]["world_size"] == 2
    assert (tmp_path / "die" / "checkpoint" / "dcp" / ".metadata").is_file()
