"""The DPO family's losses: each equals its closed form on fixed log-probabilities, and trl 1.16's implementation.

trl's losses live in bound methods that read a few attributes (and, for DPO and KTO, a model forward): they are
called with a stand-in ``self`` and a stand-in model whose per-token log-probabilities are the fixed ones.
trl 1.16's DPO ``sigmoid`` has no label smoothing (conservative DPO lives in CPOTrainer's ``sigmoid``, which is
the same formula on whatever log-ratio it is given), so cDPO is checked there with h's parts as its inputs.
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from lmstack.align import losses as L
from lmstack.errors import LmstackError

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
trl = pytest.importorskip("trl")
from trl import DPOTrainer, KTOTrainer  # noqa: E402
from trl.experimental.cpo import CPOTrainer  # noqa: E402
from trl.experimental.orpo import ORPOTrainer  # noqa: E402

B, T = 5, 9
TOKENS = torch.tensor([3, 5, 8, 2, 6, 4, 8, 1, 7, 3])  # answer lengths: chosen rows then rejected rows


def _per_token() -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log-probs [2B, T-1] of the answers (zero elsewhere) and the completion mask [2B, T]: row i's
    answer is its last TOKENS[i] positions."""
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(2 * B, T, dtype=torch.long)
    for i, n in enumerate(TOKENS.tolist()):
        mask[i, T - n:] = 1
    logps = -torch.rand(2 * B, T - 1, generator=g, dtype=torch.float64) * 1.5 * mask[:, 1:]
    return logps, mask


def _pairs() -> tuple[L.PairLogps, torch.Tensor, torch.Tensor]:
    per_token, mask = _per_token()
    policy = per_token.sum(1)
    ref = policy + torch.linspace(-1.2, 0.9, 2 * B, dtype=torch.float64)
    lp = L.PairLogps(policy[:B], policy[B:], ref[:B], ref[B:], TOKENS[:B].double(), TOKENS[B:].double())
    return lp, per_token, mask


def _h(lp: L.PairLogps) -> list[float]:
    return [(c - rc) - (r - rr) for c, rc, r, rr in zip(lp.chosen.tolist(), lp.ref_chosen.tolist(),
                                                          lp.rejected.tolist(), lp.ref_rejected.tolist())]


def _logsig(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x > 0 else x - math.log1p(math.exp(x))


def _closed_forms(lp: L.PairLogps, p: L.LossParams) -> dict[str, list[float]]:
    """Each loss's formula, elementwise in Python floats."""
    b, eps, out = p.beta, p.label_smoothing, {}
    h = _h(lp)
    out["sigmoid"] = [-(1 - eps) * _logsig(b * x) - eps * _logsig(-b * x) for x in h]
    out["robust"] = [(-(1 - eps) * _logsig(b * x) + eps * _logsig(-b * x)) / (1 - 2 * eps) for x in h]
    out["hinge"] = [max(0.0, 1 - b * x) for x in h]
    nc, nr = lp.chosen_tokens.tolist(), lp.rejected_tokens.tolist()
    c, r, rc, rr = lp.chosen.tolist(), lp.rejected.tolist(), lp.ref_chosen.tolist(), lp.ref_rejected.tolist()
    out["ipo"] = [((c[i] - rc[i]) / nc[i] - (r[i] - rr[i]) / nr[i] - 1 / (2 * b)) ** 2 for i in range(B)]
    ac, ar = [c[i] / nc[i] for i in range(B)], [r[i] / nr[i] for i in range(B)]
    z = [b * (ac[i] - ar[i]) - p.simpo_gamma for i in range(B)]
    out["simpo"] = [-(1 - eps) * _logsig(x) - eps * _logsig(-x) for x in z]
    odds = [(ac[i] - math.log(-math.expm1(ac[i]))) - (ar[i] - math.log(-math.expm1(ar[i]))) for i in range(B)]
    out["orpo"] = [-ac[i] - p.orpo_lambda * _logsig(odds[i]) for i in range(B)]
    return out


PARAMS = [L.LossParams(beta=0.1), L.LossParams(beta=0.5, label_smoothing=0.2, simpo_gamma=0.3, orpo_lambda=0.7)]


@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("loss_type", sorted(L.PAIR_LOSSES))
def test_pair_loss_equals_its_closed_form(loss_type, p):
    lp, _, _ = _pairs()
    out = L.PAIR_LOSSES[loss_type](lp, p)
    assert out.losses.shape == (B,)
    assert out.losses.tolist() == pytest.approx(_closed_forms(lp, p)[loss_type], abs=1e-6)
    if loss_type in L.REFERENCE_FREE:
        expected = p.beta * lp.chosen / lp.chosen_tokens, p.beta * lp.rejected / lp.rejected_tokens
    else:
        expected = p.beta * (lp.chosen - lp.ref_chosen), p.beta * (lp.rejected - lp.ref_rejected)
    assert torch.allclose(out.chosen_rewards, expected[0].to(out.chosen_rewards.dtype), atol=1e-6)
    assert torch.allclose(out.rejected_rewards, expected[1].to(out.rejected_rewards.dtype), atol=1e-6)


def test_losses_are_differentiable_and_dpo_pushes_chosen_up():
    lp, _, _ = _pairs()
    chosen = lp.chosen.clone().requires_grad_(True)
    rejected = lp.rejected.clone().requires_grad_(True)
    lp = L.PairLogps(chosen, rejected, lp.ref_chosen, lp.ref_rejected, lp.chosen_tokens, lp.rejected_tokens)
    L.sigmoid(lp, L.LossParams()).losses.mean().backward()
    assert (chosen.grad < 0).all() and (rejected.grad > 0).all()  # descent raises chosen, lowers rejected


def _stand_in(**attrs) -> SimpleNamespace:
    accelerator = SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x)
    return SimpleNamespace(model=SimpleNamespace(training=True), accelerator=accelerator, aux_loss_enabled=False,
                           _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1,
                           **attrs)


def _fake_model(per_token: torch.Tensor):
    """A stand-in for trl's fused-LM-head forward: its per-token log-probs are the fixed ones."""
    def forward(**kwargs):
        zeros = torch.zeros_like(per_token)
        return SimpleNamespace(log_probs=per_token, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())
    return forward


def _trl_dpo(loss_type: str, p: L.LossParams, lp: L.PairLogps, per_token, mask) -> torch.Tensor:
    self = _stand_in(ld_alpha=None, precompute_ref_logps=True, f_divergence_type="reverse_kl",
                     loss_types=[loss_type], loss_weights=[1.0], beta=p.beta, label_smoothing=p.label_smoothing,
                     use_weighting=False)
    inputs = {"input_ids": torch.zeros(2 * B, T, dtype=torch.long), "attention_mask": torch.ones(2 * B, T),
              "completion_mask": mask, "ref_chosen_logps": lp.ref_chosen, "ref_rejected_logps": lp.ref_rejected}
    loss = DPOTrainer._compute_loss(self, _fake_model(per_token), inputs, False)
    margins = self._metrics["train"]["rewards/margins"][-1]
    return loss, margins


@pytest.mark.parametrize("p", PARAMS)
@pytest.mark.parametrize("loss_type", ["sigmoid", "robust", "ipo", "hinge"])
def test_reference_losses_equal_trl_dpo_trainer(loss_type, p):
    """DPOTrainer._compute_loss on the same per-token log-probs (it sums them, and counts IPO's answer tokens
    from the completion mask itself). trl's sigmoid ignores label_smoothing: compared at eps = 0 only."""
    if loss_type == "sigmoid":
        p = L.LossParams(beta=p.beta)
    lp, per_token, mask = _pairs()
    assert torch.allclose(per_token.sum(1), torch.cat([lp.chosen, lp.rejected]))
    out = L.PAIR_LOSSES[loss_type](lp, p)
    loss, margins = _trl_dpo(loss_type, p, lp, per_token, mask)
    assert out.losses.mean().item() == pytest.approx(loss.item(), abs=1e-6)
    assert (out.chosen_rewards - out.rejected_rewards).mean().item() == pytest.approx(margins, abs=1e-6)


def test_conservative_dpo_equals_trl_label_smoothed_sigmoid():
    """cDPO: CPOTrainer.cpo_loss(sigmoid) computes -(1-eps) log sigma(beta d) - eps log sigma(-beta d) of
    d = chosen - rejected; given the log-ratios as chosen and rejected, d = h."""
    lp, _, _ = _pairs()
    for p in PARAMS:
        self = _stand_in(alpha=0.0, loss_type="sigmoid", beta=p.beta, label_smoothing=p.label_smoothing,
                         simpo_gamma=p.simpo_gamma)
        theirs, _, _ = CPOTrainer.cpo_loss(self, lp.chosen - lp.ref_chosen, lp.rejected - lp.ref_rejected)
        assert L.sigmoid(lp, p).losses.tolist() == pytest.approx(theirs.tolist(), abs=1e-6)


@pytest.mark.parametrize("p", PARAMS)
def test_simpo_equals_trl_cpo_trainer(p):
    """CPOTrainer's simpo on length-averaged log-probs (its ``average_log_prob`` for simpo), cpo_alpha = 0."""
    lp, _, _ = _pairs()
    self = _stand_in(alpha=0.0, loss_type="simpo", beta=p.beta, label_smoothing=p.label_smoothing,
                     simpo_gamma=p.simpo_gamma)
    theirs, chosen_r, rejected_r = CPOTrainer.cpo_loss(self, lp.chosen / lp.chosen_tokens,
                                                       lp.rejected / lp.rejected_tokens)
    ours = L.simpo(lp, p)
    assert ours.losses.tolist() == pytest.approx(theirs.tolist(), abs=1e-6)
    assert ours.chosen_rewards.tolist() == pytest.approx(chosen_r.tolist(), abs=1e-6)
    assert ours.rejected_rewards.tolist() == pytest.approx(rejected_r.tolist(), abs=1e-6)


@pytest.mark.parametrize("p", PARAMS)
def test_orpo_equals_trl_odds_ratio_loss(p):
    """ORPOTrainer.odds_ratio_loss (its beta is ORPO's lambda) returns lambda log sigma(log odds ratio);
    ORPO's loss is the NLL minus its mean. Our NLL is per answer token of the chosen answer."""
    lp, _, _ = _pairs()
    self = _stand_in(beta=p.orpo_lambda)
    theirs, *_ = ORPOTrainer.odds_ratio_loss(self, lp.chosen / lp.chosen_tokens, lp.rejected / lp.rejected_tokens)
    nll = -(lp.chosen / lp.chosen_tokens)
    assert L.orpo(lp, p).losses.tolist() == pytest.approx((nll - theirs).tolist(), abs=1e-6)


def test_log1mexp_is_stable_on_both_branches():
    x = torch.tensor([-1e-8, -0.5, -0.7, -5.0, -50.0], dtype=torch.float64)
    assert L.log1mexp(x).tolist() == pytest.approx([math.log(-math.expm1(v)) for v in x.tolist()], rel=1e-9)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.3, 0.6)])
def test_kto_equals_its_closed_form_and_trl_kto_trainer(weights):
    n = 7
    g = torch.Generator().manual_seed(3)
    mask = torch.zeros(n, T, dtype=torch.long)
    lengths = [2, 5, 3, 8, 1, 4, 6]
    for i, k in enumerate(lengths):
        mask[i, T - k:] = 1
    per_token = -torch.rand(n, T - 1, generator=g, dtype=torch.float64) * mask[:, 1:]
    policy = per_token.sum(1)
    ref = policy + torch.linspace(-0.8, 1.1, n, dtype=torch.float64)
    label = torch.tensor([1, 0, 1, 1, 0, 0, 1]).bool()
    policy_kl = -torch.rand(n, generator=g, dtype=torch.float64) * 6
    ref_kl = policy_kl - torch.linspace(-0.5, 1.5, n, dtype=torch.float64)
    p = L.LossParams(beta=0.3, desirable_weight=weights[0], undesirable_weight=weights[1])

    z = L.kto_kl(policy_kl, ref_kl)
    assert z.item() == pytest.approx(max(0.0, sum((policy_kl - ref_kl).tolist()) / n), abs=1e-12)
    losses, rewards = L.kto(policy, ref, label, z, p)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    r = (policy - ref).tolist()
    expected = [weights[0] * (1 - sig(p.beta * (r[i] - z.item()))) if label[i] else
                weights[1] * (1 - sig(p.beta * (z.item() - r[i]))) for i in range(n)]
    assert losses.tolist() == pytest.approx(expected, abs=1e-6)
    assert rewards.tolist() == pytest.approx([p.beta * x for x in r], abs=1e-9)

    self = _stand_in(calculate_KL=True, precompute_ref_logps=True, loss_type="kto", beta=p.beta,
                     desirable_weight=weights[0], undesirable_weight=weights[1],
                     _compute_kl_logps=lambda model, batch: policy_kl)
    inputs = {"input_ids": torch.zeros(n, T, dtype=torch.long), "attention_mask": torch.ones(n, T),
              "completion_mask": mask, "label": label.long(), "ref_logps": ref, "ref_KL_logps": ref_kl}
    theirs = KTOTrainer._compute_loss(self, _fake_model(per_token), inputs, False)
    assert losses.mean().item() == pytest.approx(theirs.item(), abs=1e-6)
    assert self._metrics["train"]["kl"][-1] == pytest.approx(z.item(), abs=1e-9)


def test_kto_reference_point_is_clamped_at_zero():
    assert L.kto_kl(torch.tensor([-3.0, -2.0]), torch.tensor([-1.0, -1.0])).item() == 0.0


@pytest.mark.parametrize("bad", [{"beta": 0.0}, {"label_smoothing": 0.5}, {"orpo_lambda": -1.0}])
def test_bad_hyper_parameters_are_refused(bad):
    with pytest.raises(LmstackError):
        L.LossParams(**bad)
