"""Every method: saves and loads exactly, generates with the KV cache, refuses another base; the virtual-token
methods match peft's prompt and prefix tuning."""

from __future__ import annotations

import pytest
import torch

from lmstack.adapt.methods import METHODS, base_fingerprint, count_parameters, load_adapted, save_adapter
from lmstack.text.tokenizer import Tokenizer
from lmstack.errors import LmstackError
from lmstack.generate.api import generate
from lmstack.model import build_model
from lmstack.model.hf import load_model, save_model

PEFT_METHODS = ["lora", "adapter", "prefix", "prompt"]


def _adapted(base, name: str):
    method = METHODS[name](**({"n_virtual": 4} if name in ("prefix", "prompt") else {}))
    model = method.apply(load_model(base)).eval()
    torch.manual_seed(2)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    return method, model


@pytest.mark.parametrize("name", PEFT_METHODS)
def test_save_load_round_trip_and_fraction(base, tmp_path, name):
    method, model = _adapted(base, name)
    counts = count_parameters(model)
    assert 0 < counts["trainable_fraction"] < 0.5
    save_adapter(method, model, tmp_path / "a", base_fingerprint(model), str(base))
    loaded, tokenizer = load_adapted(base, tmp_path / "a")
    x = torch.randint(0, model.config.vocab_size, (2, 9))
    assert torch.equal(loaded(x), model(x))


@pytest.mark.parametrize("name", PEFT_METHODS)
def test_cached_generation_equals_full_forward(base, name):
    """Greedy tokens from the KV-cache decoder (virtual tokens pre-filled in the cache, prompts left-padded)
    equal the argmax of full forward passes without a cache."""
    _, model = _adapted(base, name)
    tokenizer = Tokenizer.load(base)
    prompts = ["Where does", "What is 12 + 3"]
    out = generate(model, tokenizer, prompts, max_new_tokens=6, min_new_tokens=6)
    for prompt, text in zip(prompts, out):
        ids = tokenizer.encode(prompt)
        with torch.no_grad():
            for _ in range(6):
                ids.append(int(model(torch.tensor([ids]))[0, -1].argmax()))
        assert tokenizer.encode(prompt + text) == ids or tokenizer.decode(ids) == prompt + text


@pytest.mark.parametrize("name", ["lora", "prompt"])
def test_adapter_for_another_base_is_refused(base, tmp_path, name):
    method, model = _adapted(base, name)
    save_adapter(method, model, tmp_path / "a", base_fingerprint(model), str(base))
    other = load_model(base)
    config = other.config.replace(n_layer=1)
    save_model(build_model(config), tmp_path / "other", Tokenizer.load(base))
    with pytest.raises(LmstackError, match="trained on another base model"):
        load_adapted(tmp_path / "other", tmp_path / "a")


@pytest.mark.parametrize("name", ["prefix", "prompt"])
def test_peft_reads_our_prompt_and_prefix_adapters(base, tmp_path, name):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    method, model = _adapted(base, name)
    save_adapter(method, model, tmp_path / "a", base_fingerprint(model), str(base))
    x = torch.randint(0, model.config.vocab_size, (1, 10))
    hf = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), tmp_path / "a").eval()
    theirs = hf(input_ids=x).logits[:, -10:]
    assert torch.allclose(theirs, model(x), atol=1e-4)
