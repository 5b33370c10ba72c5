"""Perplexity and bits per byte, checked against transformers' loss and against the sliding-window rule."""

from __future__ import annotations

import math

import pytest
import torch
import transformers

from lmstack.text.tokenizer import train_char
from lmstack.errors import LmstackError
from lmstack.eval.perplexity import perplexity, sequence_nll
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model, save_model

TEXT = "The cat sat on the mat. 猫坐在垫子上。\nA dog ran in the park; 狗在公园里跑。\n"


@pytest.fixture
def model_dir(tmp_path):
    tok = train_char([TEXT])
    torch.manual_seed(0)
    save_model(build_model(preset("gpt2-tiny", vocab_size=tok.vocab_size, block_size=32)), tmp_path / "m", tok)
    return tmp_path / "m"


def test_matches_transformers_loss(model_dir):
    ours = load_model(model_dir).eval()
    theirs = transformers.AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = torch.randint(0, ours.config.vocab_size, (1, 30), generator=torch.Generator().manual_seed(0))
    nll, n = sequence_nll(ours, ids[0].tolist())
    with torch.no_grad():
        ref = theirs(ids, labels=ids).loss.item()  # mean NLL of tokens 1..29
    assert n == 29 and nll / n == pytest.approx(ref, abs=1e-5)


@pytest.mark.parametrize("stride", [1, 7, 32])
def test_sliding_windows_score_every_token_once(model_dir, stride):
    model = load_model(model_dir).eval()
    ids = torch.randint(0, model.config.vocab_size, (100,), generator=torch.Generator().manual_seed(1)).tolist()
    nll, n = sequence_nll(model, ids, stride)
    assert n == 99


def test_stride_one_gives_each_token_a_full_context(model_dir):
    model = load_model(model_dir).eval()
    ids = torch.randint(0, model.config.vocab_size, (60,), generator=torch.Generator().manual_seed(1)).tolist()
    manual = 0.0
    for end in range(1, 60):
        with torch.no_grad():
            logits = model(torch.tensor([ids[max(0, end - 32):end]]))[0, -1]
        manual += torch.nn.functional.cross_entropy(logits[None], torch.tensor([ids[end]])).item()
    assert sequence_nll(model, ids, stride=1)[0] == pytest.approx(manual, rel=1e-5)


def test_evaluate_reports_bits_per_byte(model_dir, tmp_path):
    (tmp_path / "eval.txt").write_text(TEXT, encoding="utf-8")
    out = perplexity(model=str(model_dir), input=[tmp_path / "eval.txt"])
    n_bytes = sum(len(p.encode()) for p in TEXT.strip().split("\n\n"))
    assert out["bytes"] == n_bytes
    assert out["perplexity"] == pytest.approx(math.exp(out["cross_entropy"]))
    assert out["bits_per_byte"] == pytest.approx(out["cross_entropy"] * out["tokens"] / (math.log(2) * n_bytes))


def test_bad_inputs(model_dir, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(LmstackError, match="empty.txt: file is empty"):
        perplexity(model=str(model_dir), input=[tmp_path / "empty.txt"])
    with pytest.raises(LmstackError, match="stride must be in 1..32"):
        sequence_nll(load_model(model_dir), [1, 2, 3], stride=33)
