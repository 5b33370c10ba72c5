"""A mixture-of-experts feed-forward layer (Shazeer et al. 2017), its routing losses, and the sparse Transformer.

    x [N, d] -> router logits [N, E] (fp32) -> softmax p -> top-k experts e_t, weights w_t (renormalised when
    ``norm_topk_prob``) -> y_t = sum_j w_tj * SwiGLU_{e_tj}(x_t)  (+ sigmoid(g . x_t) * SwiGLU_shared(x_t))

Top-1 is Switch (Fedus et al. 2021), top-2 GLaM / Mixtral (Du et al. 2022; Jiang et al. 2024), a shared expert
with its sigmoid gate Qwen2-MoE. The router runs in fp32 (Switch's selective precision), also under autocast.

Capacity: with ``capacity_factor`` c, each expert takes at most ceil(c * N * k / E) token-choices per forward in
training, first choices before second ones, in token order (GShard); a dropped choice contributes nothing (the
token keeps its residual) and is counted. ``capacity_factor=None`` is dropless (every choice is computed, as
Mixtral and transformers do), and evaluation / decoding is always dropless, so a trained model's outputs do not
depend on what else is in the batch.

The experts' weights are stored stacked: ``experts.gate_up.weight`` [E * 2I, d] (expert e's gate rows then its
up rows), ``experts.proj.weight`` [E * d, I], so a Hugging Face checkpoint's per-expert tensors concatenate into
them on dim 0. Tokens are gathered per expert (one SwiGLU per expert on its tokens), or, for tiny layers, every
expert runs on every token in one einsum and the top-k are combined (``dense_dispatch``: faster on CPU while
E * N * I is small: ``DENSE_DISPATCH_MAX``).

The auxiliary losses reach training through ``auxiliary_losses(model, token_mask)``: each MoE layer keeps its
router logits and choices of its last training forward, and the objective (``train.objectives.causal``) adds
router_aux_coef * L_balance + router_z_coef * L_z over the tokens ``token_mask`` marks real.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lmstack.model.blocks import _ACTIVATIONS, SwiGLU
from lmstack.model.config import ModelConfig
from lmstack.model.transformer import Transformer

# E * N * I up to which every expert runs on every token (decoding steps, tiny batches). Measured forward + backward
# on this project's CPU, 1 thread, 8 experts of width 192, d 128: the einsum 1.2x faster at N = 1 token, 2x at
# N = 64; the gather 4x faster at N = 1024 (46 vs 189 ms). 2**17 = 8 * 85 * 192.
DENSE_DISPATCH_MAX = 2 ** 17


def load_balancing_loss(probs: torch.Tensor, experts: torch.Tensor, n_experts: int) -> torch.Tensor:
    """Switch's auxiliary loss (Fedus et al. 2021, eq. 4) over M tokens, top-k choices ``experts`` [M, k]:

        L_bal = E * sum_i f_i * P_i,  f_i = 1/(M k) sum_t sum_j 1[e_tj = i],  P_i = 1/M sum_t p_t,i

    1.0 when routing is uniform, E when one expert takes everything. (transformers' ``load_balancing_loss_func``
    does not divide f by k: its value is k times this one.)"""
    f = torch.bincount(experts.reshape(-1), minlength=n_experts).to(probs.dtype) / max(experts.numel(), 1)
    return n_experts * (f * probs.mean(dim=0)).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE's router z-loss (Zoph et al. 2022, eq. 5): L_z = 1/M sum_t (log sum_i exp x_t,i)^2, keeping router
    logits small so the fp32 softmax stays well conditioned."""
    return torch.logsumexp(logits, dim=-1).square().mean()


class ExpertLinear(nn.Module):
    """E linear maps without bias, stored as one weight [E * out, in] (Hugging Face's per-expert weights
    concatenated on dim 0); ``stacked`` views it as [E, out, in]."""

    def __init__(self, n_experts: int, d_in: int, d_out: int):
        super().__init__()
        self.n_experts = n_experts
        self.weight = nn.Parameter(torch.empty(n_experts * d_out, d_in))

    def stacked(self) -> torch.Tensor:
        return self.weight.unflatten(0, (self.n_experts, -1))


class Experts(nn.Module):
    """E SwiGLU feed-forward experts, proj(act(gate(x)) * up(x)), each applied to the tokens routed to it."""

    def __init__(self, n_experts: int, n_embd: int, inter: int, activation: str):
        super().__init__()
        self.n_experts, self.inter = n_experts, inter
        self.gate_up = ExpertLinear(n_experts, n_embd, 2 * inter)
        self.proj = ExpertLinear(n_experts, inter, n_embd)
        self.act = _ACTIVATIONS[activation]

    def gathered(self, h: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """sum over each token's choices of w * expert(x): h [N, d], experts / weights [N, k] (weight 0 = dropped
        choice, skipped) -> [N, d]. Choices are sorted by expert and each expert runs once on its tokens."""
        N, k = experts.shape
        flat_e, flat_w = experts.reshape(-1), weights.reshape(-1)
        token = torch.arange(N, device=h.device).repeat_interleave(k)  # [N k]: the token of each choice
        kept = flat_w != 0
        flat_e, flat_w, token = flat_e[kept], flat_w[kept], token[kept]
        order = torch.argsort(flat_e, stable=True)
        token, flat_w = token[order], flat_w[order]
        counts = torch.bincount(flat_e, minlength=self.n_experts).tolist()
        # E views [2I, d] / [d, I] by one unbind: its backward stacks the E gradients once (indexing expert by
        # expert would zero-fill a whole-weight gradient per expert)
        gate_up, proj = self.gate_up.stacked().unbind(0), self.proj.stacked().unbind(0)
        outs = []
        for e, xs in enumerate(h[token].split(counts)):  # xs [n_e, d]
            if xs.numel():
                g, u = F.linear(xs, gate_up[e]).chunk(2, dim=-1)
                outs.append(F.linear(self.act(g) * u, proj[e]))
        if not outs:
            return torch.zeros_like(h)
        out = torch.cat(outs) * flat_w[:, None].to(h.dtype)  # [A, d]
        return torch.zeros_like(h).index_add_(0, token, out)

    def dense(self, h: torch.Tensor, experts: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        """The same sum with every expert run on every token ([N, E, I]) and the choices' weights as a [N, E]
        combine matrix: E/k times the FLOPs, but three batched matmuls instead of a loop over experts."""
        combine = torch.zeros(h.size(0), self.n_experts, device=h.device, dtype=weights.dtype)
        combine.scatter_add_(1, experts, weights)
        g, u = torch.einsum("nd,eod->neo", h, self.gate_up.stacked()).chunk(2, dim=-1)
        y = torch.einsum("nei,edi->ned", self.act(g) * u, self.proj.stacked())
        return torch.einsum("ne,ned->nd", combine.to(h.dtype), y)


class MoE(nn.Module):
    """The routed feed-forward layer (see the module docstring); an MLP in place of ``SwiGLU`` in a ``Block``.

    After a training forward, ``last`` holds (router logits [N, E] fp32, choices [N, k], kept [N, k]) for
    ``auxiliary_losses``; ``load`` accumulates each expert's real token-choices over training (the plot)."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        c = config
        self.n_experts, self.top_k, self.norm_topk_prob = c.n_experts, c.n_experts_per_tok, c.norm_topk_prob
        self.capacity_factor, self.aux_coef, self.z_coef = c.capacity_factor, c.router_aux_coef, c.router_z_coef
        self.router = nn.Linear(c.n_embd, c.n_experts, bias=False)
        self.experts = Experts(c.n_experts, c.n_embd, c.moe_intermediate_size, c.activation)
        self.shared = self.shared_gate = None
        if c.n_shared_experts:
            self.shared = SwiGLU(c.replace(intermediate_size=c.shared_expert_intermediate_size, bias=False))
            self.shared_gate = nn.Linear(c.n_embd, 1, bias=False)
        self.last: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.register_buffer("load", torch.zeros(c.n_experts, dtype=torch.float64), persistent=False)

    def route(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Router logits [N, E] in fp32, top-k choices [N, k] and their weights [N, k] (fp32)."""
        with torch.autocast(h.device.type, enabled=False):
            logits = F.linear(h.float(), self.router.weight.float())
        probs = logits.softmax(dim=-1)
        weights, experts = probs.topk(self.top_k, dim=-1)
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return logits, experts, weights

    def capacity_mask(self, experts: torch.Tensor) -> torch.Tensor:
        """[N, k] True where a choice fits its expert's capacity ceil(c * N * k / E); choices are taken first
        choices first, each rank in token order (GShard, Lepikhin et al. 2021)."""
        N, k = experts.shape
        capacity = math.ceil(self.capacity_factor * N * k / self.n_experts)
        by_rank = experts.t().reshape(-1)  # [k N]: every token's first choice, then every second choice
        onehot = F.one_hot(by_rank, self.n_experts)
        position = (onehot.cumsum(dim=0) * onehot).sum(dim=-1) - 1  # the choice's place in its expert's queue
        return (position < capacity).reshape(k, N).t()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        h = x.reshape(B * T, d)
        logits, experts, weights = self.route(h)
        kept = torch.ones_like(experts, dtype=torch.bool)
        if self.training and self.capacity_factor is not None:
            kept = self.capacity_mask(experts)
            weights = weights * kept
        if self.training:
            self.last = (logits, experts, kept)
        dispatch = self.experts.dense if self.n_experts * h.size(0) * self.experts.inter <= DENSE_DISPATCH_MAX \
            else self.experts.gathered
        y = dispatch(h, experts, weights)
        if self.shared is not None:
            y = y + torch.sigmoid(self.shared_gate(h)) * self.shared(h)
        return y.reshape(B, T, d)

    def expert_params(self) -> int:
        """Parameters of one routed expert."""
        return (self.experts.gate_up.weight.numel() + self.experts.proj.weight.numel()) // self.n_experts


def moe_layers(model: nn.Module) -> list[MoE]:
    """The MoE layers inside ``model`` (through any wrapper: a compiled module, a task head, an adapter)."""
    return [m for m in model.modules() if isinstance(m, MoE)]


def auxiliary_losses(model: nn.Module, token_mask: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
    """The routers' training term for ``model``'s last training forward, averaged over its MoE layers:

        L_aux = 1/L sum_l (router_aux_coef * L_bal,l + router_z_coef * L_z,l)

    over the tokens ``token_mask`` [B, T] marks real (None: all), so padding never counts; and the metrics
    moe_balance, moe_z (layer means), moe_load_max (the worst layer's max / mean expert load) and moe_dropped
    (the share of real choices over capacity). (None, {}) for a dense model or outside training. Each layer's
    real choices are added to its ``load`` counts."""
    layers = [m for m in moe_layers(model) if m.training and m.last is not None]
    if not layers:
        return None, {}
    total, bal, z, ratios, dropped = 0.0, 0.0, 0.0, [], []
    for m in layers:
        logits, experts, kept = m.last
        m.last = None
        if token_mask is not None:
            real = token_mask.reshape(-1).to(logits.device).bool()
            logits, experts, kept = logits[real], experts[real], kept[real]
        b, zl = load_balancing_loss(logits.softmax(dim=-1), experts, m.n_experts), router_z_loss(logits)
        total = total + m.aux_coef * b + m.z_coef * zl
        with torch.no_grad():
            counts = torch.bincount(experts.reshape(-1), minlength=m.n_experts).double()
            m.load += counts
            ratios.append(counts.max() / counts.mean().clamp(min=1e-9))
            dropped.append((~kept).sum() / max(kept.numel(), 1))
        bal, z = bal + b.detach(), z + zl.detach()
    n = len(layers)
    metrics = {"moe_balance": bal / n, "moe_z": z / n, "moe_load_max": torch.stack(ratios).max().float(),
               "moe_dropped": torch.stack(dropped).float().mean()}  # tensors: no device sync here
    return total / n, metrics


class SparseTransformer(Transformer):
    """The decoder with MoE feed-forward layers: FLOPs count the parameters a token uses (top-k of the routed
    experts, plus the shared one), not every expert."""

    def active_params(self) -> int:
        """``num_params()`` less the routed experts a token skips: sum over MoE layers of (E - k) * expert size."""
        return self.num_params() - sum((m.n_experts - m.top_k) * m.expert_params() for m in moe_layers(self))

    def matmul_params(self) -> int:
        """The dense count less the routed experts a token skips: FLOPs (and MFU) count active parameters."""
        return super().matmul_params() - (self.num_params() - self.active_params())
