"""The compiled decode step picks exactly the tokens the eager model does (slow: it compiles)."""

from __future__ import annotations

import pytest
import torch

from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.model.source import ModelSource

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("prompts", [[[5, 17, 42, 8, 91, 33, 60]], [[5, 17, 42, 8, 91, 33, 60], [9, 4]]],
                         ids=["one", "left-padded"])
def test_compiled_decoding_is_token_identical(pair, prompts):
    model, _ = pair
    config = GenerationConfig(max_new_tokens=60, repetition_penalty=1.3)
    eager = torch.stack(list(decode(model, prompts, config)), dim=1)
    compiled = torch.stack(list(decode(ModelSource(model, compile=True), prompts, config)), dim=1)
    assert torch.equal(compiled, eager)


def test_compiled_code_persists_per_torch_version(pair, tmp_path, monkeypatch):
    """The compile cache lives under XDG_CACHE_HOME, one folder per torch version: a folder another version wrote
    (junk here) is neither read nor touched, and compiling fills this version's."""
    import os

    from lmstack.model.source import compile_cache_dir

    model, _ = pair
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "unset below")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    stale = tmp_path / "lmstack" / "compile" / "torch-0.0.1"
    stale.mkdir(parents=True)
    (stale / "fxgraph").write_bytes(b"\x80not a cache entry")
    assert compile_cache_dir() == tmp_path / "lmstack" / "compile" / f"torch-{torch.__version__}"
    torch._dynamo.reset()  # an earlier test's compiled step would be reused from memory, writing nothing
    try:
        config = GenerationConfig(max_new_tokens=8)
        compiled = torch.stack(list(decode(ModelSource(model, compile=True), [[5, 17, 42]], config)), dim=1)
        assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(compile_cache_dir())
    finally:
        os.environ.pop("TORCHINDUCTOR_CACHE_DIR", None)
    assert torch.equal(compiled, torch.stack(list(decode(model, [[5, 17, 42]], config)), dim=1))
    assert any(compile_cache_dir().rglob("*")) and [p.name for p in stale.iterdir()] == ["fxgraph"]
