"""A training run never destroys earlier work: an existing run is refused unless --resume or --overwrite, a run that
fails on its inputs writes nothing, and a torn last metrics line does not block --resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmstack.cli import main
from lmstack.config import build
from lmstack.errors import LmstackError
from lmstack.train.config import TrainConfig
from lmstack.train.metrics import MetricsLog
from lmstack.train.pretrain import train

MODEL = {"family": "llama", "n_layer": 1, "n_head": 2, "n_kv_head": 1, "n_embd": 16, "block_size": 16,
         "bias": False, "activation": "silu"}


def _cfg(data: Path, out: Path, **over) -> TrainConfig:
    values = {"data": str(data), "out": str(out), "model": MODEL, "batch_size": 2, "max_iters": 4,
              "eval_interval": 4, "eval_iters": 1, "log_interval": 1, "checkpoint_interval": 2, "warmup_iters": 1,
              **over}
    return build(TrainConfig, values)


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    train(_cfg(data, out))
    return out


def test_an_earlier_run_is_refused_and_left_byte_identical(data, finished):
    before = _files(finished)
    assert {"train_config.json", "metrics.jsonl", "checkpoint/trainer_state.pt", "model/model.safetensors"} <= set(
        before)
    with pytest.raises(LmstackError, match="holds an earlier run's checkpoint: .*--resume .*--overwrite"):
        train(_cfg(data, finished, max_iters=6))
    with pytest.raises(LmstackError, match="give one of them"):
        train(_cfg(data, finished), resume=True, overwrite=True)
    assert _files(finished) == before


@pytest.mark.parametrize("flags", [{"overwrite": True}, {"resume": True}])
def test_a_block_size_larger_than_the_data_writes_nothing(data, finished, flags):
    """The probe's case: block size beyond the shards. Before, metrics.jsonl was already emptied and
    train_config.json rewritten when the first batch failed."""
    before = _files(finished)
    tokens = json.loads((data / "manifest.json").read_text())["splits"]["val"]["tokens"]
    huge = _cfg(data, finished, model={**MODEL, "block_size": tokens + 1})
    with pytest.raises(LmstackError, match=f"the val split has {tokens} tokens, too few for block_size {tokens + 1}"):
        train(huge, **flags)
    assert _files(finished) == before


def test_overwrite_starts_afresh_and_drops_the_old_checkpoint(data, finished, tmp_path):
    out = tmp_path / "run"
    train(_cfg(data, out))
    result = train(_cfg(data, out, max_iters=2, checkpoint_interval=2, seed=7), overwrite=True)
    assert result["iters"] == 2
    assert [r["iter"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())] == [1, 2, 2]
    assert json.loads((out / "checkpoint" / "trainer_state.json").read_text())["iter"] == 2
    assert json.loads((out / "train_config.json").read_text())["seed"] == 7


def test_a_torn_last_metrics_line_is_dropped_and_resume_goes_on(data, tmp_path, capsys):
    out = tmp_path / "run"
    train(_cfg(data, out, max_iters=4, checkpoint_interval=4, eval_interval=4))
    with open(out / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"iter": 5, "loss": 4.1, "lr"')  # the disk filled mid-line
    train(_cfg(data, out, max_iters=6, eval_interval=6), resume=True)
    assert "metrics.jsonl:" in capsys.readouterr().err
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if "loss" in r] == [1, 2, 3, 4, 5, 6]


def test_only_the_last_line_counts_as_torn(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"iter": 1, "loss": 2.0}\n{"iter": 2, "lo\n{"iter": 3, "loss": 1.0}\n')
    with pytest.raises(LmstackError, match=r"metrics.jsonl:2: not a metrics record"):
        MetricsLog(path, resume_iter=3)
    path.write_bytes(b'{"iter": 1, "loss": 2.0}\n{"iter": 2, "loss": 1.5}\n{"iter": 3, "text": "\xe4')  # torn in a
    # multi-byte character: the tail is not even UTF-8
    MetricsLog(path, resume_iter=2)
    assert path.read_text() == '{"iter": 1, "loss": 2.0}\n{"iter": 2, "loss": 1.5}\n'


def test_cli_refusal_is_one_line(data, finished, capsys):
    argv = ["train", "--data", str(data), "--out", str(finished), "--max_iters", "2"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code != 0
    err = capsys.readouterr().err.strip()
    assert "holds an earlier run's checkpoint" in err and "\n" not in err and "Traceback" not in err


def test_a_run_killed_before_its_first_checkpoint_is_an_earlier_run_too(tmp_path):
    from lmstack.train.checkpoint import check_run_dir

    (tmp_path / "metrics.jsonl").write_text('{"iter": 1, "loss": 5.0}\n')
    with pytest.raises(LmstackError, match="holds an earlier run's metrics.jsonl"):
        check_run_dir(tmp_path, resume=False, overwrite=False)
    check_run_dir(tmp_path, resume=False, overwrite=True)
    check_run_dir(tmp_path / "new", resume=False, overwrite=False)
