"""An encoder-decoder in the evaluation harness and the scorers: log p(continuation | context as the encoder input)
equal to transformers' T5 with labels, generate_until equal to decoding, and the CLI commands on a T5 folder."""

from __future__ import annotations

import json
import math

import torch
import transformers

from lmstack.cli import main
from lmstack.eval.lm import GenRequest, LocalLM
from lmstack.generate.api import generate, stream
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.model.scoring import sequence_logprobs
from lmstack.text.tokenizer import train_bpe

TEXT = ["The river town of Kell trades salt and amber. 凯尔河镇以盐和琥珀贸易为生。", "hello world, 你好，世界！"] * 20


def _t5(vocab: int):
    torch.manual_seed(0)
    return build_model(preset("t5-tiny", vocab_size=vocab, n_embd=32, head_dim=8, intermediate_size=64,
                              block_size=64)).eval()


def test_scores_match_transformers_with_labels(tmp_path):
    model = _t5(97)
    theirs = transformers.T5ForConditionalGeneration.from_pretrained(save_model(model, tmp_path / "m")).eval()
    contexts, continuations = [[5, 17, 42, 8], [44, 3]], [[9, 10, 11], [60, 61, 62, 63, 64]]
    ours = sequence_logprobs(model, contexts, continuations)
    for row, (c, x) in enumerate(zip(contexts, continuations)):
        with torch.no_grad():
            loss = theirs(input_ids=torch.tensor([c]), labels=torch.tensor([x])).loss  # mean NLL over x
        assert math.isclose(ours[row].item(), -loss.item() * len(x), abs_tol=1e-4)


def test_local_lm_scores_and_generates(tmp_path):
    tok = train_bpe(TEXT, vocab_size=300)
    model = _t5(tok.vocab_size)
    lm = LocalLM.from_model(model, tok)
    (logp, greedy), = lm.loglikelihood([("The river town", " of Kell")])
    cont = tok.encode(" of Kell")
    assert math.isclose(logp, sequence_logprobs(model, [tok.encode("The river town")], [cont]).item(), abs_tol=1e-4)
    assert isinstance(greedy, bool)
    (text,), = lm.generate_until([GenRequest("The river town", until=[], max_gen_toks=8)])
    steps = decode(model, [tok.encode("The river town")], GenerationConfig(max_new_tokens=8), tok.eos_id)
    assert text == tok.decode([t for t in torch.stack(list(steps), 1)[0].tolist() if t != tok.eos_id])  # to eos


def test_generate_command_decodes_a_t5_folder(tmp_path, capsys):
    tok = train_bpe(TEXT, vocab_size=300)
    model = _t5(tok.vocab_size)
    folder = save_model(model, tmp_path / "t5", tok)
    main(["generate", "--model", str(folder), "The river town", "--max-new-tokens", "6", "--json", "--no-stream"])
    result = json.loads(capsys.readouterr().out)
    steps = decode(model, [tok.encode("The river town")], GenerationConfig(max_new_tokens=6), tok.eos_id)
    ids = [t for t in torch.stack(list(steps), 1)[0].tolist() if t != tok.eos_id]  # the decoder text, to eos
    assert result["completion"] == tok.decode(ids)


def test_streaming_pieces_join_to_the_generated_text():
    tok = train_bpe(TEXT, vocab_size=300)
    model = _t5(tok.vocab_size)
    config = GenerationConfig(max_new_tokens=12, do_sample=True, seed=5)
    pieces = list(stream(model, tok, "The river town", config))
    assert len(pieces) > 1 and "".join(pieces) == generate(model, tok, "The river town", config)
