"""Bad input on the command line gives one error line naming the argument, never a traceback (issue 18, item 6).

Each case runs through ``lmstack.cli.main`` and fails in argument parsing, before any model or data is read.
"""

from __future__ import annotations

import math

import pytest

from lmstack import cli
from lmstack.config import SEED32, build, check_seed
from lmstack.errors import LmstackError
from lmstack.train.config import LoopConfig, TrainConfig


def one_line_error(capsys, *argv: str) -> str:
    with pytest.raises(SystemExit) as e:
        cli.main(list(argv))
    err = capsys.readouterr().err
    assert e.value.code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


@pytest.mark.parametrize("flag,value", [
    ("--lr", "nan"), ("--lr", "inf"), ("--min_lr", "-inf"), ("--weight_decay", "nan"), ("--grad_clip", "inf"),
    ("--beta1", "nan"), ("--beta2", "inf"), ("--max_seconds", "inf"), ("--model.norm_eps", "nan"),
    ("--model.dropout", "nan"), ("--model.rope_theta", "inf"),
])
def test_a_non_finite_training_float_names_its_flag(capsys, tmp_path, flag, value):
    err = one_line_error(capsys, "train", "--data", str(tmp_path), flag, value)
    assert err == f"lmstack train: error: {flag}: expected a finite number, got '{value}'"


@pytest.mark.parametrize("flag,value,message", [
    ("--lr", "-0.1", "need 0 <= min_lr <= lr and lr > 0"), ("--lr", "0", "need 0 <= min_lr <= lr and lr > 0"),
    ("--beta1", "1", "beta1 must be in [0, 1), got 1.0"), ("--beta2", "-0.5", "beta2 must be in [0, 1), got -0.5"),
    ("--weight_decay", "-1", "weight_decay must be 0 or more"), ("--grad_clip", "-1", "grad_clip must be 0 or more"),
    ("--warmup_iters", "-5", "warmup_iters must be 0 or more"), ("--lr_decay_iters", "0", "lr_decay_iters must be"),
    ("--max_seconds", "0", "max_seconds must be positive"),
])
def test_an_out_of_range_training_option_names_its_key(capsys, tmp_path, flag, value, message):
    err = one_line_error(capsys, "train", "--data", str(tmp_path), flag, value)
    assert err.startswith("lmstack train: error: ") and message in err


@pytest.mark.parametrize("argv", [
    ["train", "--data", "d", "--seed", str(2**80)], ["train", "--data", "d", "--seed", str(-2**63 - 1)],
    ["finetune", "--seed", str(2**64)], ["generate", "m", "hi", "--seed", str(2**80)],
    ["train-dense", "d", "--seed", str(2**63)],
])
def test_a_seed_out_of_range_names_seed_and_the_range(capsys, argv):
    err = one_line_error(capsys, *argv)
    assert err.endswith(f"--seed: seed {argv[-1]} is out of range; a seed must be an integer in [-2**63, 2**63 - 1]")


def test_seed_bounds():
    assert check_seed(2**63 - 1, "seed") == 2**63 - 1 and check_seed(-2**63, "seed") == -2**63
    with pytest.raises(LmstackError, match=r"dedup.seed: seed 4294967296 .* in \[0, 2\*\*32 - 1\]"):
        check_seed(2**32, "dedup.seed", SEED32)
    with pytest.raises(LmstackError, match="seed: seed True is out of range"):
        check_seed(True, "seed")
    with pytest.raises(LmstackError, match=r"seed: seed 1208925819614629174706176 is out of range"):
        LoopConfig(seed=2**80)  # Python callers too
    with pytest.raises(LmstackError, match="lr must be a finite number, got nan"):
        LoopConfig(lr=math.nan)


@pytest.mark.parametrize("argv,label", [
    (["generate", "model", "\udcff"], "prompt"),  # what Python makes of `lmstack generate $'\xff'`
    (["generate", "model", "ok", "--stop", "fine", "caf\udce9"], "--stop"),
    (["index", "docs\udcfe.txt", "--out", "o"], "docs"),
    (["search", "idx", "--query", "green \udcc3 tea"], "--query"),
    (["train", "--data", "d", "--device", "cu\udcffda"], "--device"),
    (["chat", "--model", "m", "--system", "\udcff"], "--system"),
])
def test_arguments_that_are_not_utf8_are_named(capsys, argv, label):
    byte = next(f"0x{ord(c) - 0xDC00:02x}" for c in "".join(argv) if 0xDC80 <= ord(c) <= 0xDCFF)
    err = one_line_error(capsys, *argv)
    assert f"error: {label}: the argument is not valid UTF-8 (byte {byte} at character" in err


def test_cli_flags_are_blamed_not_the_yaml_file(capsys, tmp_path):
    """A bad value from the command line names the flag; one from the YAML file names the file and key."""
    yaml = tmp_path / "c.yaml"
    yaml.write_text("lr: 0.01\nmodel:\n  n_layer: 2\n", encoding="utf-8")
    base = ["train", "--config", str(yaml), "--data", str(tmp_path)]
    assert one_line_error(capsys, *base, "--lr", "abc") == "lmstack train: error: --lr: expected float, got 'abc'"
    assert (one_line_error(capsys, *base, "--model.n_layer", "x")
            == "lmstack train: error: --model.n_layer: expected int, got 'x'")
    assert "error: --model.n_layers: unknown config key 'n_layers' for ModelConfig" in one_line_error(
        capsys, *base, "--model.n_layers", "3")
    yaml.write_text("lr: abc\nmodel:\n  n_layer: x\n", encoding="utf-8")
    assert one_line_error(capsys, *base) == f"lmstack train: error: {yaml}: lr: expected float, got 'abc'"
    assert (one_line_error(capsys, *base, "--lr", "0.1")
            == f"lmstack train: error: {yaml}: model.n_layer: expected int, got 'x'")


def test_flags_win_over_yaml_and_sections_merge():
    cfg = build(TrainConfig, {"lr": 0.01, "model": {"n_layer": 2, "n_head": 2}}, "c.yaml",
                flags={"lr": "0.02", "model": {"n_layer": "3"}})
    assert (cfg.lr, cfg.model.n_layer, cfg.model.n_head) == (0.02, 3, 2)
    with pytest.raises(LmstackError, match="^--model: expected a mapping"):
        build(TrainConfig, {"model": {"n_layer": 2}}, "c.yaml", flags={"model": "big"})
