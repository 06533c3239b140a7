"""The router's math on one shard of tokens, in PyTorch, exactly as skymoe computes it
(src/model/moe.ts; SPEC section 1):

    z = logits / (std(logits over experts, unbiased, no eps) / lambda)     # when logits_norm
    p = softmax(z) in fp32;  (w, idx) = topk(p, k);  w = w / sum(w)        # when norm_topk_prob
    capacity = ceil(capacity_factor * N * k / E) per expert; an over-full expert keeps its
    highest-probability assignments (ties: earlier token first), or its first tokens
    aux (skywork, report eq. 4) = sum_j (1/E - mean_i p_ij)^2
    aux (switch) = E * sum_j f_j * P_j,  f_j = assignments routed to j before capacity / (N * k)

Shape letters: N tokens, E experts, K top-k, M = N * K assignments.
"""

import math
from dataclasses import dataclass
from typing import Optional

import torch

from .kit import RouterConfig


def normalize_logits(logits: torch.Tensor, gate_norm_std: float) -> torch.Tensor:
    """Gating logit normalization (report section 4.1): divide by std / lambda. The mean is not
    subtracted: the softmax is shift invariant. No eps, as in the released model."""
    sd = torch.std(logits, dim=-1, unbiased=True, keepdim=True)  # (N, 1)
    return logits / (sd / gate_norm_std)


def softmax_input(logits: torch.Tensor, router: RouterConfig) -> torch.Tensor:
    """The logits that enter the softmax: fp32, normalized when logits_norm is on. (N, E)"""
    z = logits.float()
    return normalize_logits(z, router.gate_norm_std) if router.logits_norm else z


@dataclass
class Routing:
    logits: torch.Tensor
    """The softmax input. (N, E)"""
    probs: torch.Tensor
    """Gate probabilities over all experts, fp32. (N, E)"""
    experts: torch.Tensor
    """The k experts of each token, best first. (N, K) int64"""
    top_probs: torch.Tensor
    """Their gate probabilities (what the 'probability' drop policy ranks). (N, K)"""
    weights: torch.Tensor
    """Their combine weights: top_probs, renormalized over the k when norm_topk_prob. (N, K)"""


def select_experts(z: torch.Tensor, router: RouterConfig) -> Routing:
    """Softmax over all experts, top-k, renormalization, from the softmax input z (N, E)."""
    p = torch.softmax(z, dim=-1)  # (N, E)
    top_p, idx = torch.topk(p, router.top_k, dim=-1, sorted=True)  # (N, K)
    w = top_p / top_p.sum(dim=-1, keepdim=True) if router.norm_topk_prob else top_p  # (N, K)
    return Routing(z, p, idx, top_p, w)


def route(logits: torch.Tensor, router: RouterConfig) -> Routing:
    """The router on gate logits (N, E): normalization, softmax, top-k, renormalization."""
    return select_experts(softmax_input(logits, router), router)


def expert_capacity(num_tokens: int, top_k: int, num_experts: int, capacity_factor: float) -> int:
    """Assignments one expert takes: ceil(capacity_factor * N * k / E), evaluated as skymoe does."""
    return math.ceil(capacity_factor * num_tokens * top_k / num_experts)


@dataclass
class CapacityPlan:
    kept: torch.Tensor
    """Per assignment, whether its expert takes it. (N, K) bool"""
    routed_per_expert: torch.Tensor
    """Assignments routed to each expert before capacity. (E) int64"""
    kept_per_expert: torch.Tensor
    """Assignments each expert takes. (E) int64"""
    capacity: Optional[int]
    dropped: torch.Tensor
    """Dropped assignments (0-d int64, on the device: reading it syncs)."""


def apply_capacity(experts: torch.Tensor, top_probs: torch.Tensor, num_experts: int, capacity_factor: Optional[float], drop_policy: str) -> CapacityPlan:
    """Capacity per expert with a drop policy, as skymoe's planDispatch: assignment a = token * k + slot;
    'probability' keeps an expert's highest gate probabilities (ties: lower a first), 'position'
    its lowest a (earliest tokens)."""
    N, K = experts.shape
    flat = experts.reshape(-1)  # (M)
    M = flat.numel()
    routed = torch.bincount(flat, minlength=num_experts)  # (E)
    if capacity_factor is None:
        kept = torch.ones_like(experts, dtype=torch.bool)
        return CapacityPlan(kept, routed, routed.clone(), None, torch.zeros((), dtype=torch.long, device=experts.device))
    capacity = expert_capacity(N, K, num_experts, capacity_factor)
    if drop_policy == "probability":
        # descending probability; the stable sort keeps ties in assignment order
        order = torch.sort(top_probs.reshape(-1), descending=True, stable=True).indices  # (M)
    elif drop_policy == "position":
        order = torch.arange(M, device=experts.device)
    else:
        raise ValueError(f"drop policy {drop_policy!r}: expected 'probability' or 'position'")
    # group by expert, keeping the policy's order inside each group, and rank within the group
    order = order[torch.sort(flat[order], stable=True).indices]  # (M)
    start = torch.cumsum(routed, 0) - routed  # (E) first position of each expert's group
    rank = torch.empty(M, dtype=torch.long, device=experts.device)
    rank[order] = torch.arange(M, device=experts.device) - start[flat[order]]
    kept = (rank < capacity).reshape(N, K)
    kept_per_expert = torch.clamp(routed, max=capacity)
    return CapacityPlan(kept, routed, kept_per_expert, capacity, routed.sum() - kept_per_expert.sum())


def skywork_aux_loss(mean_probs: torch.Tensor) -> torch.Tensor:
    """Report eq. 4 from the mean gate probability per expert (E): sum_j (1/E - mean_i p_ij)^2."""
    E = mean_probs.shape[-1]
    return torch.sum((1.0 / E - mean_probs) ** 2)


def switch_aux_loss(mean_probs: torch.Tensor, routed_fraction: torch.Tensor) -> torch.Tensor:
    """Switch Transformer's E * sum_j f_j * P_j: f_j (E) the fraction of assignments routed to j
    (before capacity, a constant), P_j (E) the mean gate probability."""
    E = mean_probs.shape[-1]
    return torch.sum(mean_probs * routed_fraction) * E


def aux_loss(kind: str, probs: torch.Tensor, routed_per_expert: torch.Tensor, top_k: int) -> torch.Tensor:
    """The unweighted aux loss of one layer over the tokens of probs (N, E)."""
    N = probs.shape[0]
    mean_probs = probs.mean(dim=0)  # (E)
    if kind == "skywork":
        return skywork_aux_loss(mean_probs)
    if kind == "switch":
        return switch_aux_loss(mean_probs, routed_per_expert.to(probs.dtype) / (N * top_k))
    raise ValueError(f"aux loss {kind!r}: expected 'skywork' or 'switch'")
