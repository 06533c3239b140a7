"""The per-layer auxiliary-loss coefficient (report section 4.2, eqs. 7-9), as skymoe's
AuxController (src/train/aux-controller.ts):

    alpha_hat = xi * d   if d <= alpha_max / xi   else alpha_max
    alpha_l  <- beta * alpha_l + (1 - beta) * alpha_hat

updated after every step from d, layer l's token-drop rate of the step: the mean over the step's
micro-batches on every rank that routes tokens of the layer. skymoe's trainer sums
dropRate / accum over its micro-batches and then over the data-parallel ranks; here each rank
sums the drop rates of its micro-batches and counts them, and the sums and counts are
all-reduced, which is the same mean when every rank runs the same number of micro-batches.
"""

from dataclasses import dataclass
from typing import Dict, List, Optional

import torch

from .kit import ControllerConfig


def adaptive_step(alpha: float, d: float, cfg: ControllerConfig) -> float:
    """Eqs. 8-9 for one layer: the target from the drop rate d, then the smoothed coefficient."""
    target = cfg.xi * d if d <= cfg.alpha_max / cfg.xi else cfg.alpha_max
    return cfg.beta * alpha + (1 - cfg.beta) * target


@dataclass
class LayerStep:
    """One layer's step, as end_step reports it."""

    alpha: float
    """The coefficient the step used."""
    next_alpha: float
    """The coefficient of the next step."""
    drop_rate: float
    aux_loss: float
    """The unweighted aux loss, averaged like the drop rate."""
    micro_batches: int
    """Micro-batch shards counted over the group."""


class AuxCoefficients:
    """Per-layer coefficients (keyed by Megatron's layer_number) and the step's accumulators.

    record() is called by the router in every training forward; end_step() once per optimizer
    step, on every rank of the group at the same time (it all-reduces)."""

    def __init__(self, cfg: ControllerConfig):
        self.cfg = cfg
        self.alpha: Dict[int, float] = {}
        self._sums: Dict[int, torch.Tensor] = {}  # per layer: [sum of drop rates, sum of aux losses] (device)
        self._counts: Dict[int, int] = {}

    def coefficient(self, layer: int) -> float:
        """The coefficient of `layer`'s aux loss in the current step."""
        return self.alpha.setdefault(layer, self.cfg.alpha)

    def record(self, layer: int, drop_rate: torch.Tensor, aux_loss: torch.Tensor) -> None:
        """Add one micro-batch of `layer` (0-d tensors, kept on their device: no host sync)."""
        self.coefficient(layer)
        v = torch.stack([drop_rate.detach().double(), aux_loss.detach().double()])
        if layer in self._sums:
            self._sums[layer] += v
            self._counts[layer] += 1
        else:
            self._sums[layer] = v
            self._counts[layer] = 1

    def end_step(self, group: Optional[object] = None) -> Dict[int, LayerStep]:
        """Average this step's drop rates over the micro-batches and the group (torch.distributed,
        when initialized; a no-op otherwise), update every recorded layer's coefficient and reset
        the accumulators. Every rank of the group must have recorded the same layers."""
        layers: List[int] = sorted(self._sums)
        if not layers:
            return {}
        sums = torch.stack([self._sums[l] for l in layers])  # (L, 2)
        counts = torch.tensor([float(self._counts[l]) for l in layers], dtype=torch.float64, device=sums.device)
        reduced = torch.cat([sums, counts[:, None]], dim=1)  # (L, 3)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(reduced, op=torch.distributed.ReduceOp.SUM, group=group)
        rows = reduced.tolist()  # one host sync per step
        out: Dict[int, LayerStep] = {}
        for layer, (drop_sum, aux_sum, n) in zip(layers, rows):
            d = drop_sum / n
            alpha = self.alpha[layer]
            nxt = adaptive_step(alpha, d, self.cfg) if self.cfg.kind == "skywork" else alpha
            self.alpha[layer] = nxt
            out[layer] = LayerStep(alpha, nxt, d, aux_sum / n, int(n))
        self._sums.clear()
        self._counts.clear()
        return out

    def state_dict(self) -> Dict[str, object]:
        """The coefficients, to save next to a checkpoint (Megatron's checkpoints do not hold them)."""
        return {"kind": self.cfg.kind, "alpha": {str(l): a for l, a in sorted(self.alpha.items())}}

    def load_state_dict(self, state: Dict[str, object]) -> None:
        """Restore saved coefficients (resume)."""
        if state.get("kind") != self.cfg.kind:
            raise ValueError(f"aux coefficient state is for the '{state.get('kind')}' controller; this kit uses '{self.cfg.kind}'")
        alpha = state.get("alpha")
        if not isinstance(alpha, dict):
            raise ValueError("aux coefficient state: 'alpha' must map layer numbers to coefficients")
        self.alpha = {int(l): float(a) for l, a in alpha.items()}
