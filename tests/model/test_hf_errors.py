"""A checkpoint of another shape, a truncated file or an unsupported architecture gives one clear error."""

from __future__ import annotations

import json

import pytest

from lmstack.errors import LmstackError
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model, save_model


@pytest.fixture
def saved(tmp_path):
    save_model(build_model(preset("gpt2-tiny", vocab_size=50)), tmp_path / "m")
    return tmp_path / "m"


def test_other_shape_names_the_tensor(saved):
    config = json.loads((saved / "config.json").read_text())
    config["lmstack"]["n_embd"] = 64
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(LmstackError, match="transformer.wte.weight.*another shape"):
        load_model(saved)


def test_truncated_weights(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(LmstackError, match="truncated or corrupt"):
        load_model(saved)


def test_unsupported_model_type(saved):
    (saved / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(LmstackError, match="model_type 't5' is not supported; expected one of") as e:
        load_model(saved)
    assert all(kind in str(e.value) for kind in ("gpt2", "llama", "mistral", "qwen2", "bert"))


def test_missing_directory(tmp_path):
    with pytest.raises(LmstackError, match="model directory not found"):
        load_model(tmp_path / "nope")


def test_failed_save_keeps_the_old_directory(saved, monkeypatch):
    before = (saved / "model.safetensors").read_bytes()
    import lmstack.model.hf as hf

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(hf, "save_file", boom)
    with pytest.raises(KeyboardInterrupt):
        save_model(build_model(preset("gpt2-tiny", vocab_size=50)), saved)
    assert (saved / "model.safetensors").read_bytes() == before
    assert sorted(p.name for p in saved.parent.iterdir()) == ["m"]
