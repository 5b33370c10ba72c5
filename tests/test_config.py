"""The dataclass is the one source of truth: YAML and --key value fill it, unknown keys are named."""

from __future__ import annotations

import pytest

from lmstack.cli import parse_args
from lmstack.config import build, load_yaml
from lmstack.errors import LmstackError
from lmstack.model.config import ModelConfig
from lmstack.train.config import TrainConfig


def test_nested_yaml_and_overrides(tmp_path):
    (tmp_path / "c.yaml").write_text("batch_size: 4\nmodel:\n  n_layer: 2\n  family: llama\n")

    def train(cfg: TrainConfig, resume: bool = False):
        """Args:
            cfg: config
            resume: resume
        """

    kwargs = parse_args(train, ["--config", str(tmp_path / "c.yaml"), "--model.n_layer", "3", "--lr=0.01",
                                "--resume"], "lmstack train")
    cfg = kwargs["cfg"]
    assert ((cfg.batch_size, cfg.model.n_layer, cfg.model.family, cfg.lr, kwargs["resume"])
            == (4, 3, "llama", 0.01, True))


def test_unknown_key_is_named_with_the_valid_ones():
    with pytest.raises(LmstackError, match="unknown config key 'n_layers' for ModelConfig; valid keys: family"):
        build(TrainConfig, {"model": {"n_layers": 2}}, "x.yaml")


@pytest.mark.parametrize("key,value,message", [
    ("batch_size", "many", "batch_size: expected int"),
    ("compile", "maybe", "compile: expected true or false"),
    ("precision", "fp8", "'fp8' is not one of"),
])
def test_bad_values_name_the_field(key, value, message):
    with pytest.raises(LmstackError, match=message):
        build(TrainConfig, {key: value}, "command line")


def test_invalid_model_shape_is_reported():
    with pytest.raises(LmstackError, match="n_embd=130 is not divisible by model.n_head=4"):
        build(TrainConfig, {"model": {"n_embd": 130}}, "command line")


def test_yaml_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    with pytest.raises(LmstackError, match="bad.yaml: not valid YAML"):
        load_yaml(tmp_path / "bad.yaml")
    with pytest.raises(LmstackError, match="config file not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_defaults_build():
    assert build(ModelConfig, {}).head_dim == 32
