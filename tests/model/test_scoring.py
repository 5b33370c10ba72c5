"""Continuation log-probabilities: equal to a direct per-row computation and to transformers' loss, the same
under right and left padding and any batch size, differentiable, and clear about bad input."""

from __future__ import annotations

import pytest
import torch

from lmstack.errors import LmstackError
from lmstack.model import build_model, preset
from lmstack.model.hf import save_model
from lmstack.model.scoring import sequence_logprobs, token_logprobs

V = 61


@pytest.fixture(scope="module", params=["gpt2-tiny", "llama-tiny"])
def model(request):
    torch.manual_seed(0)
    model = build_model(preset(request.param, vocab_size=V, block_size=64)).eval()
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(3)
    return model


def rows(seed: int = 0) -> tuple[list[list[int]], list[list[int]]]:
    g = torch.Generator().manual_seed(seed)
    lengths = [(1, 1), (5, 3), (2, 9), (12, 1), (7, 6)]
    return ([torch.randint(0, V, (c,), generator=g).tolist() for c, _ in lengths],
            [torch.randint(0, V, (x,), generator=g).tolist() for _, x in lengths])


def direct(model, context: list[int], continuation: list[int]) -> torch.Tensor:
    """log_softmax of one unpadded forward pass, read at the tokens that predict the continuation."""
    with torch.no_grad():
        logp = model(torch.tensor([context + continuation]))[0].float().log_softmax(-1)
    return torch.stack([logp[len(context) - 1 + t, tok] for t, tok in enumerate(continuation)])


@pytest.mark.parametrize("padding", ["right", "left"])
@pytest.mark.parametrize("batch_size", [1, 2, 32])
def test_token_logprobs_equal_a_direct_computation(model, padding, batch_size):
    contexts, continuations = rows()
    with torch.no_grad():
        ours = token_logprobs(model, contexts, continuations, padding=padding, batch_size=batch_size)
    assert [len(r) for r in ours] == [len(x) for x in continuations]
    for got, c, x in zip(ours, contexts, continuations):
        torch.testing.assert_close(got, direct(model, c, x), atol=1e-5, rtol=1e-5)
        assert (got <= 0).all()


def test_sequence_scores_sum_or_average_the_tokens(model):
    contexts, continuations = rows(1)
    with torch.no_grad():
        per_token = token_logprobs(model, contexts, continuations)
        total = sequence_logprobs(model, contexts, continuations)
        mean = sequence_logprobs(model, contexts, continuations, normalize=True)
    torch.testing.assert_close(total, torch.stack([r.sum() for r in per_token]))
    torch.testing.assert_close(mean, total / torch.tensor([float(len(x)) for x in continuations]))


def test_matches_transformers_loss_on_the_continuation(model, tmp_path):
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(save_model(model, tmp_path / "m")).eval()
    contexts, continuations = rows(2)
    with torch.no_grad():
        ours = sequence_logprobs(model, contexts, continuations)
        for score, c, x in zip(ours, contexts, continuations):
            ids = torch.tensor([c + x])
            labels = ids.clone()
            labels[0, :len(c)] = -100  # score only the continuation
            loss = hf(input_ids=ids, labels=labels).loss.item()  # mean NLL of the continuation tokens
            assert score.item() == pytest.approx(-loss * len(x), rel=1e-4, abs=1e-4)


def test_scores_are_differentiable(model):
    contexts, continuations = rows(3)
    model.zero_grad()
    sequence_logprobs(model, contexts, continuations).sum().backward()
    assert model.lm_head.weight.grad is not None and model.lm_head.weight.grad.abs().sum() > 0
    model.zero_grad()


def test_bad_input_is_a_clear_error(model):
    with pytest.raises(LmstackError, match="at least one token"):
        token_logprobs(model, [[1, 2]], [[]])
    with pytest.raises(LmstackError, match="at least one token"):
        token_logprobs(model, [[]], [[3]])
    with pytest.raises(LmstackError, match="2 contexts but 1 continuations"):
        token_logprobs(model, [[1], [2]], [[3]])
