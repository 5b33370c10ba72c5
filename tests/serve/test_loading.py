"""Loading a model to serve: a LoRA adapter is merged into the weights, a soft prompt stays a module."""

from __future__ import annotations

import torch

from lmstack.generate.loading import load_for_decoding


def test_a_lora_adapter_is_served_merged_and_a_soft_prompt_kept(model_dir, tmp_path):
    from lmstack.adapt.lora import LoRA
    from lmstack.adapt.methods import base_fingerprint, load_adapted, save_adapter
    from lmstack.adapt.prompt import Prompt
    from lmstack.model.hf import load_model

    for name, method in (("lora", LoRA(r=2)), ("prompt", Prompt(n_virtual=2))):
        model = method.apply(load_model(model_dir)).eval()
        with torch.no_grad():
            for p in model.parameters():
                if p.requires_grad:
                    p.add_(0.05)
        save_adapter(method, model, tmp_path / name, base_fingerprint(model), str(model_dir))
    served, _ = load_for_decoding(model_dir, tmp_path / "lora")
    adapted, _ = load_adapted(model_dir, tmp_path / "lora")
    x = torch.randint(0, served.config.vocab_size, (1, 8))
    assert torch.allclose(served(x), adapted(x), atol=1e-5)
    served, _ = load_for_decoding(model_dir, tmp_path / "prompt")
    adapted, _ = load_adapted(model_dir, tmp_path / "prompt")
    assert served.n_virtual == 2 and torch.allclose(served(x), adapted(x), atol=1e-5)


def test_auto_dtype_is_bf16_only_where_native_and_the_model_is_large(model_dir, monkeypatch, capsys):
    from lmstack.generate import loading
    from lmstack.model.hf import load_model

    model, cpu = load_model(model_dir), torch.device("cpu")
    monkeypatch.setattr(loading, "bf16_is_native", lambda device: True)
    assert loading.decoding_dtype("auto", model, cpu) == torch.float32  # small: overhead-bound, fp32 is faster
    monkeypatch.setattr(loading, "AUTO_BF16_BYTES", 1000)
    assert loading.decoding_dtype("auto", model, cpu) == torch.bfloat16
    served, _ = loading.load_for_decoding(model_dir)
    assert {p.dtype for p in served.parameters()} == {torch.bfloat16}
    monkeypatch.setattr(loading, "bf16_is_native", lambda device: False)
    assert loading.decoding_dtype("auto", model, cpu) == torch.float32
    assert capsys.readouterr().err == ""
    assert loading.decoding_dtype("bfloat16", model, cpu) == torch.bfloat16  # emulated: runs, after one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no native bf16" in err and "--dtype auto picks float32" in err
