"""Sequence-to-sequence fine-tuning: a tiny T5 learns to copy through ``lmstack finetune``; bad records are one
line; a decoder (causal or prefix LM) trains on the same pairs."""

from __future__ import annotations

import json
import random

import pytest
import torch

from lmstack.adapt.finetune import FinetuneConfig, finetune
from lmstack.adapt.methods import Full
from lmstack.adapt.seq2seq import DecoderPairBatches, PairFinetune
from lmstack.errors import LmstackError
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model, save_model
from lmstack.text.tokenizer import train_char
from lmstack.train.config import LoopConfig
from lmstack.train.objectives.causal import IGNORE
from lmstack.train.trainer import Trainer

LETTERS = "abcdefgh"


def words(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 4))) for _ in range(n)]


def write(path, records) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


@pytest.fixture(scope="module")
def t5_base(tmp_path_factory):
    tok = train_char([LETTERS])
    torch.manual_seed(0)
    model = build_model(preset("t5-tiny", vocab_size=tok.vocab_size, block_size=16, n_layer=2, n_embd=64,
                               intermediate_size=128))
    return save_model(model, tmp_path_factory.mktemp("t5") / "base", tok), tok


@torch.no_grad()
def greedy(model, ids: list[int], eos: int, n: int = 6) -> list[int]:
    out = [model.config.decoder_start_token_id]
    for _ in range(n):
        out.append(int(model(torch.tensor([ids]), torch.tensor([out]))[0, -1].argmax()))
        if out[-1] == eos:
            break
    return out[1:]


@pytest.mark.slow
def test_t5_learns_to_copy(t5_base, tmp_path):
    base, tok = t5_base
    write(tmp_path / "train.jsonl", [{"input": w, "output": w} for w in words(3000, 0)])
    test = words(30, 1)
    write(tmp_path / "val.jsonl", [{"input": w, "output": w} for w in test])
    cfg = FinetuneConfig(model=base, method="full", data=[tmp_path / "train.jsonl"], val_data=[tmp_path / "val.jsonl"],
                         out=tmp_path / "out", batch_size=32, max_iters=700, lr=1e-3, warmup_iters=10,
                         eval_interval=700, eval_iters=2, checkpoint_interval=700)
    result = finetune(cfg)
    assert result["examples"] == 3000 and result["val_examples"] == 30
    assert result["val_loss"] < 0.5 < 2.0 < result["first_loss"]
    model = load_model(tmp_path / "out" / "model").eval()
    exact = sum(tok.decode(greedy(model, tok.encode(w), tok.eos_id)) == w + "<|eos|>" for w in test)
    assert exact >= 15  # of 30 held-out words copied exactly (a random guess: < 1 in 500)


def test_bad_record_is_one_line_before_anything_is_written(t5_base, tmp_path):
    base, _ = t5_base
    (tmp_path / "bad.jsonl").write_text('{"input": "ab", "output": "ab"}\n{"output": "ab"}\n')
    cfg = FinetuneConfig(model=base, method="full", data=[tmp_path / "bad.jsonl"], out=tmp_path / "out", max_iters=1)
    with pytest.raises(LmstackError, match=r"bad.jsonl:2: .*'input' is missing"):
        finetune(cfg)
    assert not (tmp_path / "out" / "model").exists()


def test_decoder_pairs_mask_the_input_and_a_prefix_lm_learns_them(tmp_path):
    rows = DecoderPairBatches([([5, 6, 7], [8, 9, 2])], pad_id=0).collate([([5, 6, 7], [8, 9, 2])], 16)
    x, y, p = rows
    assert x.tolist() == [[5, 6, 7, 8, 9]] and y.tolist() == [[IGNORE, IGNORE, 8, 9, 2]] and p.tolist() == [3]
    tok = train_char([LETTERS])
    torch.manual_seed(0)
    model = build_model(preset("llama-tiny", family="prefix_lm", vocab_size=tok.vocab_size, block_size=16, n_layer=1))
    base = save_model(model, tmp_path / "base", tok)
    write(tmp_path / "train.jsonl", [{"input": w, "output": w[::-1]} for w in words(200, 0)])
    objective = PairFinetune(base, Full(), tok, [tmp_path / "train.jsonl"], [], batch_size=16, val_fraction=0.1)
    result = Trainer(objective, LoopConfig(max_iters=60, lr=3e-3, warmup_iters=5, eval_interval=60, eval_iters=2),
                     progress=False).run()
    assert objective.prefix and result["loss_last"] < result["loss_first"] - 0.5
