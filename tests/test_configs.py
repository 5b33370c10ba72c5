"""Every YAML file shipped in lmstack/configs fills its dataclass without an unknown key or a bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

import lmstack
from lmstack.config import build, load_yaml
from lmstack.adapt.finetune import FinetuneConfig
from lmstack.align.dpo_command import DPOConfig
from lmstack.align.reward_commands import RewardConfig
from lmstack.align.rl_commands import GRPOConfig, PPOConfig
from lmstack.data.clean.config import CleanConfig
from lmstack.scaling.sweep import SweepConfig
from lmstack.train.config import TrainConfig

CONFIGS = sorted((Path(lmstack.__file__).parent / "configs").glob("*.yaml"))
OWNER = {"clean.yaml": CleanConfig, "demo_sft.yaml": FinetuneConfig, "align_reward.yaml": RewardConfig,
         "align_dpo.yaml": DPOConfig, "align_ppo.yaml": PPOConfig, "align_grpo.yaml": GRPOConfig,
         "scaling_sweep.yaml": SweepConfig}


def test_configs_are_shipped():
    assert {p.name for p in CONFIGS} >= {"demo.yaml", "demo_sft.yaml", "clean.yaml"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_builds(path):
    build(OWNER.get(path.name, TrainConfig), load_yaml(path), str(path))
