"""Denoising objectives on a tiny T5 and the prefix LM on a tiny decoder: losses fall, the prefix mask is exact,
prefix-LM decoding reads the prompt bidirectionally, bad input is one line."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lmstack.data.noise import reweighted
from lmstack.data.prepare import prepare
from lmstack.data.synth import synth
from lmstack.errors import LmstackError
from lmstack.generate.config import GenerationConfig
from lmstack.generate.decode import decode
from lmstack.model import build_model, preset
from lmstack.model.hf import load_model, save_model
from lmstack.model.scoring import sequence_logprobs
from lmstack.train.config import TrainConfig
from lmstack.data.shards import TokenShards
from lmstack.text.tokenizer import Tokenizer
from lmstack.train.objectives.denoising import UL2, SpanCorruption, shift_right
from lmstack.train.pretrain import train


@pytest.fixture(scope="module")
def sentinel_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("denoise")
    synth(out=root / "corpus", scale=0.03)
    prepare([root / "corpus" / "pretrain.jsonl"], out=root / "data", vocab_size=300, sentinels=40)
    return root / "data"


def run(data: Path, out: Path, objective: str, model, iters: int = 40) -> dict:
    cfg = TrainConfig(data=data, out=out, model=model, objective=objective, max_iters=iters, eval_interval=iters,
                      eval_iters=2, batch_size=8, warmup_iters=4, lr=3e-3, log_interval=5)
    return train(cfg)


@pytest.mark.parametrize("objective", ["span_corruption", "infilling", "ul2"])
def test_denoising_loss_falls_on_tiny_t5(sentinel_data, tmp_path, objective):
    model = preset("t5-tiny", block_size=48, n_layer=1, n_decoder_layer=1, n_embd=64, intermediate_size=128)
    result = run(sentinel_data, tmp_path / objective, objective, model)
    assert result["loss_last"] < result["loss_first"] - 1.0
    loaded = load_model(tmp_path / objective / "model")
    assert type(loaded).__name__ == "EncoderDecoder"


def test_prefix_lm_loss_falls_and_saves_a_prefix_lm(data, tmp_path):
    model = preset("llama-tiny", family="prefix_lm", block_size=48, n_layer=1)
    result = run(data, tmp_path / "p", "prefix_lm", model)
    assert result["loss_last"] < result["loss_first"] - 1.0
    folder = tmp_path / "p" / "model"
    assert "transformers has no class" in (folder / "README.txt").read_text()
    transformers = pytest.importorskip("transformers")
    with pytest.raises((ValueError, KeyError)):  # not loaded as a causal Llama that would read prompts causally
        transformers.AutoModelForCausalLM.from_pretrained(folder)


def test_denoising_needs_sentinels_and_prefix_lm_a_prefix_model(data, tmp_path):
    with pytest.raises(LmstackError, match="--sentinels 100"):
        run(data, tmp_path / "a", "span_corruption", preset("t5-tiny", block_size=48), iters=1)
    with pytest.raises(LmstackError, match="--model.family prefix_lm"):
        run(data, tmp_path / "b", "prefix_lm", preset("llama-tiny", block_size=48), iters=1)
    assert not (tmp_path / "a" / "model").exists() and not (tmp_path / "b" / "model").exists()


def tiny_prefix_lm():
    torch.manual_seed(0)
    return build_model(preset("llama-tiny", family="prefix_lm", vocab_size=50, block_size=16, n_layer=2)).eval()


def test_prefix_mask_is_exact():
    model = tiny_prefix_lm()
    x = torch.randint(0, 50, (1, 12))
    p = torch.tensor([5])
    h = model.hidden_states(model.tok_emb(x), prefix_len=p)
    suffix = x.clone()
    suffix[0, 9] = (x[0, 9] + 1) % 50  # a suffix token: the prefix and the suffix before it are unchanged
    h2 = model.hidden_states(model.tok_emb(suffix), prefix_len=p)
    assert torch.equal(h[0, :9], h2[0, :9]) and not torch.allclose(h[0, 9:], h2[0, 9:])
    prefix = x.clone()
    prefix[0, 3] = (x[0, 3] + 1) % 50  # a prefix token: earlier prefix positions see it
    h3 = model.hidden_states(model.tok_emb(prefix), prefix_len=p)
    assert not torch.allclose(h[0, :3], h3[0, :3], atol=1e-6)
    causal = model.hidden_states(model.tok_emb(prefix))  # without prefix_len: a causal decoder
    assert torch.allclose(causal[0, :3], model.hidden_states(model.tok_emb(x))[0, :3])


def test_prefix_lm_greedy_decode_is_argmax_of_full_forward(tmp_path):
    model = tiny_prefix_lm()
    prompt = [3, 7, 11, 2, 9]
    tokens = torch.stack(list(decode(model, [prompt], GenerationConfig(max_new_tokens=6)))).T[0].tolist()
    seq = list(prompt)
    for _ in range(6):  # argmax of a full forward, the prompt as the bidirectional prefix
        logits = model(torch.tensor([seq]), prefix_len=torch.tensor([len(prompt)]))
        seq.append(int(logits[0, -1].argmax()))
    assert tokens == seq[len(prompt):]
    causal = list(prompt)  # the same weights read causally give other logits: the prefix matters
    assert not torch.allclose(model(torch.tensor([causal]))[0, -1],
                              model(torch.tensor([causal]), prefix_len=torch.tensor([len(prompt)]))[0, -1])


def test_prefix_lm_round_trip_and_too_long_prefix(tmp_path):
    model = tiny_prefix_lm()
    folder = save_model(model, tmp_path / "m")
    loaded = load_model(folder)
    x = torch.randint(0, 50, (2, 10))
    p = torch.tensor([3, 7])
    assert type(loaded).__name__ == "PrefixLM" and torch.equal(loaded(x, prefix_len=p), model(x, prefix_len=p))
    with pytest.raises(LmstackError, match="prefix of 17 tokens exceeds the context of 16"):
        model(x, prefix_len=torch.tensor([17, 1]))


def test_shift_right():
    y = torch.tensor([[5, 6, 7], [8, -100, -100]])
    assert shift_right(y, 0, 1).tolist() == [[0, 5, 6], [0, 8, 1]]


def test_denoising_batches_are_seeded_and_fit_the_context(sentinel_data):
    shards, tok = TokenShards(sentinel_data, "train"), Tokenizer.load(sentinel_data)
    for kind in (SpanCorruption, UL2):
        objective = kind(shards, shards, 4, 48, preset("t5-tiny", block_size=48), tok)
        a = objective.batch("train", torch.Generator().manual_seed(1))
        b = objective.batch("train", torch.Generator().manual_seed(1))
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        inputs, mask, targets = a
        assert inputs.shape[1] <= 48 and targets.shape[1] <= 48 and mask.sum(1).min() > 0
    inputs, mask, targets = SpanCorruption(shards, shards, 4, 48, preset("t5-tiny", block_size=48), tok).batch(
        "train", torch.Generator().manual_seed(0))
    assert inputs.shape[1] == 48 and bool(mask.all())  # T5's helper fills the encoder exactly
    assert (targets[:, 0] == tok.sentinel_ids[0]).all()


def test_prefix_lm_scores_a_continuation_with_the_context_as_its_prefix():
    """log p(continuation | context) as scoring and the harness read it: the context bidirectional, the
    continuation causal; a batch of different lengths equals one by one; contexts too long are cut from the left."""
    model = tiny_prefix_lm().eval()
    contexts, continuations = [[3, 7, 11, 2], [5, 9]], [[4, 8, 1], [6]]
    with torch.no_grad():
        got = sequence_logprobs(model, contexts, continuations)
        for (ctx, cont), value in zip(zip(contexts, continuations), got):
            logits = model(torch.tensor([ctx + cont[:-1]]), prefix_len=torch.tensor([len(ctx)]))[0]
            want = logits[len(ctx) - 1:].log_softmax(-1).gather(1, torch.tensor(cont)[:, None]).sum()
            assert float(value) == pytest.approx(float(want), abs=1e-5)
        long = list(range(1, 40))  # block 16: the last 14 tokens of the context are kept for a 3-token answer
        assert torch.allclose(model.continuation_logits([long], [[4, 8, 1]])[0],
                              model.continuation_logits([long[-14:]], [[4, 8, 1]])[0])


def test_ul2_weights_choose_the_denoisers(sentinel_data, tmp_path):
    """--ul2_weights R,X,X,S: weight 0 leaves a denoiser out; only S left, every input leads with [S]."""
    shards, tok = TokenShards(sentinel_data, "train"), Tokenizer.load(sentinel_data)
    only_s = UL2(shards, shards, 8, 48, preset("t5-tiny", block_size=48), tok, denoisers=reweighted([0, 0, 0, 1]))
    inputs, _, _ = only_s.batch("train", torch.Generator().manual_seed(0))
    assert (inputs[:, 0] == tok.token_to_id("[S]")).all()
    mixed = UL2(shards, shards, 64, 48, preset("t5-tiny", block_size=48), tok).batch("train", torch.Generator())[0]
    assert len(set(mixed[:, 0].tolist())) == 3  # R, X and S mode tokens
    with pytest.raises(LmstackError, match="need --objective ul2"):
        TrainConfig(objective="span_corruption", ul2_weights=[1, 1, 1, 1])
    with pytest.raises(LmstackError, match="4 numbers"):
        TrainConfig(objective="ul2", ul2_weights=[1, 1])
    model = preset("t5-tiny", block_size=48, n_layer=1, n_decoder_layer=1, n_embd=64, intermediate_size=128)
    cfg = TrainConfig(data=sentinel_data, out=tmp_path / "s", model=model, objective="ul2", max_iters=2,
                      eval_interval=2, eval_iters=1, batch_size=4, ul2_weights=[0, 0, 0, 1])
    assert train(cfg)["iters"] == 2
