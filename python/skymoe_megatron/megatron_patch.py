"""install(): Megatron-Core's TopKRouter routes with the kit's router (gating logit normalization,
fp32 softmax, top-k, renormalization, skymoe's capacity and drop policy) and attaches the kit's
aux loss weighted by the per-layer adaptive coefficient; end_step() updates the coefficients.

Written against Megatron-Core's source (megatron/core/transformer/moe/router.py, moe_utils.py) at
core_v0.15.0 and main d98e8a64 (0.20.0 dev); see README.md for the version range. What it relies
on: TopKRouter.routing(logits[, padding_mask]) returning (probs, routing_map), both [tokens,
experts]; router.config, .topk, .layer_number, .training, .apply_z_loss(logits); the process groups
router.tp_cp_group (the tokens of one micro-batch are split over it by sequence and context
parallelism) and router.tp_dp_cp_group (every rank that routes tokens of the layer);
moe_utils.MoEAuxLossAutoScaler (attaches a loss to an activation; the schedule sets its scale).
"""

import functools
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Dict, Optional, Tuple

import torch

from .controller import AuxCoefficients, LayerStep
from .kit import KitConfig, load_kit
from .routing import apply_capacity, select_experts, skywork_aux_loss, softmax_input, switch_aux_loss

TESTED_VERSIONS = ((0, 15), (0, 20))
"""Megatron-Core major.minor versions whose router this was written against (inclusive)."""

_DROP_POLICY = {"probability": "probs", "position": "position"}  # kit -> Megatron's --moe-token-drop-policy


class MegatronConfigError(ValueError):
    """Megatron-Core's configuration disagrees with the kit, or asks for what this router cannot do."""


@dataclass
class _Installed:
    kit: KitConfig
    controller: AuxCoefficients
    router_cls: type
    original_routing: Callable
    autoscaler: Any
    group: Any = None  # tp_dp_cp group, from the first router that routes
    train_step_wrapped: bool = False


_installed: Optional[_Installed] = None


def install(kit: Optional[str] = None, *, wrap_train_step: Optional[bool] = None, allow_untested_version: bool = False) -> AuxCoefficients:
    """Patch Megatron-Core's TopKRouter to route with the kit's router and aux loss.

    kit: the kit directory or its skymoe_kit.json (default: the kit this package sits in).
    wrap_train_step: also wrap megatron.training.training.train_step so that end_step() runs after
      every training step (None: when megatron.training is importable; False: call end_step()
      yourself after each optimizer step).
    allow_untested_version: run on a Megatron-Core outside TESTED_VERSIONS (at your own risk).
    Returns the coefficients (state_dict() / load_state_dict() to carry them across restarts).
    Calling it again returns the same coefficients."""
    global _installed
    if _installed is not None:
        return _installed.controller
    cfg = load_kit(kit)
    from megatron.core.package_info import __version__ as version
    from megatron.core.transformer.moe import router as router_module
    from megatron.core.transformer.moe.moe_utils import MoEAuxLossAutoScaler

    major_minor = tuple(int(x) for x in version.split(".")[:2])
    if not TESTED_VERSIONS[0] <= major_minor <= TESTED_VERSIONS[1]:
        message = f"skymoe_megatron was written against Megatron-Core {TESTED_VERSIONS[0][0]}.{TESTED_VERSIONS[0][1]} to {TESTED_VERSIONS[1][0]}.{TESTED_VERSIONS[1][1]}; this is {version}"
        if not allow_untested_version:
            raise RuntimeError(message + " (install(allow_untested_version=True) to try anyway)")
        warnings.warn(message)
    if cfg.aux_loss.type != "none" and cfg.aux_loss.controller.kind == "skywork" and cfg.aux_loss.capacity_factor is None:
        # as in skymoe, which allows it: no capacity, no drops, and alpha decays towards 0
        warnings.warn("skymoe_megatron: the skywork coefficient adapts to the token-drop rate, which is 0 without a capacity factor: alpha will decay towards 0")
    cls = router_module.TopKRouter
    state = _Installed(cfg, AuxCoefficients(cfg.aux_loss.controller), cls, cls.routing, MoEAuxLossAutoScaler)
    cls.routing = _routing
    _installed = state
    if wrap_train_step is not False:
        state.train_step_wrapped = _wrap_train_step(required=wrap_train_step is True)
    return state.controller


def uninstall() -> None:
    """Restore Megatron-Core's own routing (and train_step)."""
    global _installed
    if _installed is None:
        return
    _installed.router_cls.routing = _installed.original_routing
    if _installed.train_step_wrapped:
        import megatron.training.training as training

        training.train_step = training.train_step.__wrapped__
    _installed = None


def end_step() -> Dict[int, LayerStep]:
    """After each optimizer step, on every rank: the step's drop rate per layer, averaged over the
    micro-batches and the ranks that route the layer's tokens, updates each layer's coefficient.
    Returns what each layer (by Megatron's layer_number) saw and its next coefficient."""
    if _installed is None:
        raise RuntimeError("skymoe_megatron.end_step(): install() first")
    return _installed.controller.end_step(_installed.group)


def coefficients() -> AuxCoefficients:
    """The installed kit's per-layer coefficients."""
    if _installed is None:
        raise RuntimeError("skymoe_megatron.coefficients(): install() first")
    return _installed.controller


def _wrap_train_step(required: bool) -> bool:
    try:
        import megatron.training.training as training
    except ImportError:
        if required:
            raise
        return False
    inner = training.train_step

    @functools.wraps(inner)
    def train_step(*args, **kwargs):
        out = inner(*args, **kwargs)
        end_step()
        return out

    training.train_step = train_step
    return True


def _check_router(router: Any, kit: KitConfig) -> None:
    """Megatron's config must agree with the kit on what the dispatcher and the model read too."""
    c = router.config

    def need(field: str, want: Any, flag: str) -> None:
        got = getattr(c, field, None)
        if got != want:
            raise MegatronConfigError(f"Megatron-Core config {field} is {got!r}, the kit needs {want!r}: {flag}")

    need("num_moe_experts", kit.router.num_experts, f"--num-experts {kit.router.num_experts}")
    need("moe_router_topk", kit.router.top_k, f"--moe-router-topk {kit.router.top_k}")
    need("moe_router_score_function", "softmax", "--moe-router-score-function softmax")
    cf = kit.aux_loss.capacity_factor
    need("moe_expert_capacity_factor", cf, "drop --moe-expert-capacity-factor" if cf is None else f"--moe-expert-capacity-factor {cf}")
    if cf is not None:
        need("moe_token_drop_policy", _DROP_POLICY[kit.aux_loss.drop_policy], f"--moe-token-drop-policy {_DROP_POLICY[kit.aux_loss.drop_policy]}")
    lb = getattr(c, "moe_router_load_balancing_type", "none")
    if lb not in ("none", "aux_loss"):
        raise MegatronConfigError(f"Megatron-Core config moe_router_load_balancing_type is {lb!r}: the kit's router computes the load-balancing loss itself; pass --moe-router-load-balancing-type none")
    for field, flag in (
        ("moe_pad_expert_input_to_capacity", "--moe-pad-expert-input-to-capacity"),
        ("moe_router_enable_expert_bias", "--moe-router-enable-expert-bias"),
        ("moe_router_topk_scaling_factor", "--moe-router-topk-scaling-factor"),
        ("moe_router_num_groups", "--moe-router-num-groups"),
        ("moe_enable_routing_replay", "--moe-enable-routing-replay"),
    ):
        if getattr(c, field, None):
            raise MegatronConfigError(f"Megatron-Core config {field} is set: the skymoe router does not implement it; drop {flag}")
    if getattr(router, "is_mtp_layer", False):
        raise MegatronConfigError("the skymoe router does not route multi-token-prediction layers (a skymoe model has none)")
    if router.layer_number is None:
        raise MegatronConfigError("TopKRouter.layer_number is not set: the per-layer coefficients are keyed by it")


def _group_size(group: Any) -> int:
    if group is None or not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 1
    return torch.distributed.get_world_size(group=group)


def _sum_over(t: torch.Tensor, group: Any) -> torch.Tensor:
    """The sum over the group of a tensor, whose gradient is that of this rank's term alone: each
    rank differentiates with respect to its own tokens, and Megatron sums the router's weight
    gradients over the sequence-parallel group (the weight is marked sequence_parallel)."""
    if _group_size(group) == 1:
        return t
    total = t.detach().clone()
    torch.distributed.all_reduce(total, group=group)
    return t + (total - t.detach())


def _routing(self, logits: torch.Tensor, padding_mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """TopKRouter.routing with the kit's router: probs and routing_map [tokens, experts]."""
    st = _installed
    kit = st.kit
    if not getattr(self, "_skymoe_checked", False):
        _check_router(self, kit)
        self._skymoe_checked = True
        if st.group is None:
            st.group = getattr(self, "tp_dp_cp_group", None)
    if padding_mask is not None and bool(padding_mask.any()):  # True marks a padding token
        raise NotImplementedError("skymoe_megatron: padded tokens (padding_mask) are not supported by the skymoe router")
    E, K = kit.router.num_experts, kit.router.top_k
    out_dtype = logits.dtype
    z = softmax_input(logits.reshape(-1, E), kit.router)  # (N, E) fp32, normalized
    z = self.apply_z_loss(z)  # Megatron's z-loss, on the logits that enter the softmax (as skymoe)
    r = select_experts(z, kit.router)
    N = z.shape[0]
    plan = apply_capacity(r.experts, r.top_probs.detach(), E, kit.aux_loss.capacity_factor, kit.aux_loss.drop_policy)
    weights = r.weights * plan.kept  # dropped assignments add nothing
    probs = torch.zeros(N, E, dtype=weights.dtype, device=z.device).scatter(1, r.experts, weights).to(out_dtype)
    routing_map = torch.zeros(N, E, dtype=torch.int32, device=z.device).scatter(1, r.experts, plan.kept.to(torch.int32)).bool()

    if self.training and torch.is_grad_enabled():  # not in evaluation, nor in the no-grad pass before a recomputation
        layer = self.layer_number
        group = getattr(self, "tp_cp_group", None)
        aux = torch.zeros((), device=z.device)
        if kit.aux_loss.type != "none":
            # The micro-batch's tokens may be split over tp_cp (sequence/context parallelism): the
            # loss is that of the whole micro-batch, as skymoe computes it on unsplit tokens.
            n_total = N * _group_size(group)
            mean_probs = _sum_over(r.probs.sum(dim=0), group) / n_total  # (E)
            if kit.aux_loss.type == "skywork":
                aux = skywork_aux_loss(mean_probs)
            else:
                routed = _sum_over(plan.routed_per_expert.to(mean_probs.dtype), group)
                aux = switch_aux_loss(mean_probs, routed / (n_total * K))
            alpha = st.controller.coefficient(layer)
            if alpha > 0:
                weighted = alpha * aux
                if getattr(self.config, "calculate_per_token_loss", False):
                    # as Megatron's own aux loss: the per-token normalization divides by all tokens
                    weighted = weighted * N * _group_size(group)
                probs = st.autoscaler.apply(probs, weighted)
        st.controller.record(layer, plan.dropped.to(torch.float64) / max(N * K, 1), aux)
    return probs, routing_map


__all__ = ["install", "uninstall", "end_step", "coefficients", "MegatronConfigError", "TESTED_VERSIONS"]
