"""A checkpoint of another shape, a truncated file or an unsupported architecture gives one clear error."""

from __future__ import annotations

import json
import os
import stat

import pytest

from lmstack.errors import LmstackError
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model, save_model
from lmstack.text.tokenizer import train_bpe


@pytest.fixture
def saved(tmp_path):
    save_model(build_model(preset("gpt2-tiny", vocab_size=50)), tmp_path / "m")
    return tmp_path / "m"


def test_other_shape_names_the_tensor(saved):
    config = json.loads((saved / "config.json").read_text())
    config["lmstack"].update(n_embd=64, head_dim=16)
    config["n_embd"] = 64  # both sides edited: they agree, the tensors do not
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(LmstackError, match="transformer.wte.weight.*another shape"):
        load_model(saved)


def test_truncated_weights(saved):
    data = (saved / "model.safetensors").read_bytes()
    (saved / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(LmstackError, match="truncated or corrupt"):
        load_model(saved)


def test_unsupported_model_type(saved):
    (saved / "config.json").write_text(json.dumps({"model_type": "bart"}))  # (t5 is a family now)
    with pytest.raises(LmstackError, match="model_type 'bart' is not supported; expected one of") as e:
        load_model(saved)
    assert all(kind in str(e.value) for kind in ("gpt2", "llama", "mistral", "qwen2", "bert", "t5"))


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


@pytest.mark.parametrize("preset_name,hf_key,value,ours", [
    ("gpt2-tiny", "n_layer", 2, "lmstack.n_layer is 4"),
    ("gpt2-tiny", "vocab_size", 64, "lmstack.vocab_size is 50"),
    ("llama-tiny", "num_hidden_layers", 2, "lmstack.n_layer is 4"),
    ("llama-tiny", "num_key_value_heads", 4, "lmstack.n_kv_head is 2"),
    ("llama-tiny", "rms_norm_eps", 1e-5, "lmstack.norm_eps is 1e-06"),
    ("bert-tiny", "max_position_embeddings", 64, "lmstack.block_size is 128"),
])
def test_hugging_face_fields_that_disagree_with_the_lmstack_block_are_refused(tmp_path, preset_name, hf_key, value,
                                                                              ours):
    """An edit transformers would follow and lmstack would silently ignore is refused, naming both sides."""
    path = save_model(build_model(preset(preset_name, vocab_size=50)), tmp_path / "m")
    config = json.loads((path / "config.json").read_text())
    config[hf_key] = value
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(LmstackError) as e:
        load_model(path)
    assert str(e.value).startswith(f'{path / "config.json"}: "{hf_key}" is {value!r} but {ours}')
    assert "must agree" in str(e.value) and "\n" not in str(e.value)


def test_fields_that_do_not_change_the_model_may_differ(saved):
    """Keys the lmstack block does not read (dropout, a token id, architectures) are not a disagreement, and an
    edit made on both sides loads the edited model."""
    config = json.loads((saved / "config.json").read_text())
    config.update(resid_pdrop=0.3, architectures=["GPT2Model"], eos_token_id=7)
    (saved / "config.json").write_text(json.dumps(config))
    assert load_model(saved).config.n_layer == 4
    config["n_layer"] = config["lmstack"]["n_layer"] = 3
    (saved / "config.json").write_text(json.dumps(config))
    with pytest.raises(LmstackError, match="checkpoint"):  # the tensors of layer 3 are now unexpected
        load_model(saved)


def test_every_output_of_save_model_gets_the_umask_mode(tmp_path):
    """safetensors writes 0600 files; every output of a save follows the umask as ``open`` would."""
    tokenizer = train_bpe(["hello world, hello model"] * 20, vocab_size=300)
    for mask, want in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        old = os.umask(mask)
        try:
            path = save_model(build_model(preset("gpt2-tiny", vocab_size=tokenizer.vocab_size)), tmp_path / "m",
                              tokenizer=tokenizer)
        finally:
            os.umask(old)
        files = [f for f in path.rglob("*") if f.is_file()]
        assert {f.name for f in files} >= {"config.json", "model.safetensors", "generation_config.json",
                                           "tokenizer.json"}
        assert {f.name: stat.S_IMODE(f.stat().st_mode) for f in files} == {f.name: want for f in files}
        assert stat.S_IMODE(path.stat().st_mode) == want | 0o111 & ~mask
