"""skymoe_megatron: Skywork-MoE's router techniques for Megatron-Core, from a skymoe kit.

    import skymoe_megatron
    skymoe_megatron.install()        # before the first forward; reads KIT/skymoe_kit.json

or, with no edit of Megatron-LM at all:

    torchrun ... -m skymoe_megatron /path/to/Megatron-LM/pretrain_gpt.py <Megatron arguments>

See README.md (the kit config, the Megatron-Core versions, what was verified).
"""

from .controller import AuxCoefficients, LayerStep, adaptive_step
from .kit import KIT_FILE, KIT_FORMAT, KIT_VERSION, AuxLossConfig, ControllerConfig, KitConfig, KitConfigError, RouterConfig, load_kit, parse_kit
from .megatron_patch import TESTED_VERSIONS, MegatronConfigError, coefficients, end_step, install, uninstall
from .routing import CapacityPlan, Routing, apply_capacity, aux_loss, expert_capacity, normalize_logits, route, select_experts, skywork_aux_loss, softmax_input, switch_aux_loss

__all__ = [
    "AuxCoefficients", "LayerStep", "adaptive_step",
    "KIT_FILE", "KIT_FORMAT", "KIT_VERSION", "AuxLossConfig", "ControllerConfig", "KitConfig", "KitConfigError", "RouterConfig", "load_kit", "parse_kit",
    "TESTED_VERSIONS", "MegatronConfigError", "coefficients", "end_step", "install", "uninstall",
    "CapacityPlan", "Routing", "apply_capacity", "aux_loss", "expert_capacity", "normalize_logits", "route", "select_experts", "skywork_aux_loss", "softmax_input", "switch_aux_loss",
]
