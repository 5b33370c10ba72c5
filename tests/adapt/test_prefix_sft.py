"""Fine-tuning a prefix LM reads each example's prompt bidirectionally (as decoding does), with the same loss a
full forward with that prefix gives; a causal decoder's fine-tuning is unchanged."""

from __future__ import annotations

import json

import pytest
import torch

from lmstack.adapt.finetune import FinetuneConfig, finetune
from lmstack.adapt.methods import Full
from lmstack.adapt.objective import SupervisedFinetune
from lmstack.config import build
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.text.tokenizer import Tokenizer, train_bpe
from lmstack.train.objectives.causal import IGNORE, causal_lm_loss


@pytest.fixture(scope="module")
def prefix_base(corpus, tmp_path_factory):
    texts = [m["content"] for line in (corpus / "sft_train.jsonl").read_text().splitlines()
             for m in json.loads(line)["messages"]]
    tokenizer = train_bpe(texts, vocab_size=400)
    torch.manual_seed(0)
    model = build_model(preset("llama-tiny", family="prefix_lm", vocab_size=tokenizer.vocab_size, block_size=160,
                               n_layer=2))
    return save_model(model, tmp_path_factory.mktemp("plm") / "base", tokenizer)


def test_prefix_lm_sft_reads_the_prompt_as_its_prefix(prefix_base, corpus, tmp_path):
    objective = SupervisedFinetune(prefix_base, Full(), Tokenizer.load(prefix_base),
                                   [corpus / "sft_train.jsonl"], [], batch_size=4)
    model = objective.build(torch.device("cpu")).eval()
    assert objective.reads_prefix
    x, y = objective.batch("train", torch.Generator().manual_seed(0))
    first = [int((row != IGNORE).nonzero()[0]) for row in y]  # where each row's answer starts to be predicted
    with torch.no_grad():
        loss, _ = objective.loss(model, (x, y))
        want = causal_lm_loss(model(x, prefix_len=torch.tensor(first) + 1), y)
        causal = causal_lm_loss(model(x), y)
    assert float(loss) == pytest.approx(float(want), abs=1e-6)
    assert abs(float(loss) - float(causal)) > 1e-4  # the prefix is read otherwise than causally
    out = finetune(build(FinetuneConfig, {"model": str(prefix_base), "data": [str(corpus / "sft_train.jsonl")],
                                          "out": str(tmp_path / "ft"), "method": "full", "max_iters": 3,
                                          "eval_interval": 3, "eval_iters": 1, "batch_size": 4}))
    assert out["iters"] == 3
