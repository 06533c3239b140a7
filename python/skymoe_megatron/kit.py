"""The kit config: skymoe_kit.json at the kit root, written by `skymoe export megatron`.

Only the fields below are read; unknown keys (the layout, the predictions, anything a later
exporter adds) are ignored. A missing or bad field raises KitConfigError naming it.
"""

import json
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

KIT_FORMAT = "skymoe-megatron-kit"
KIT_VERSION = 1
KIT_FILE = "skymoe_kit.json"


class KitConfigError(ValueError):
    """A missing or bad field of the kit config; `field` is its dotted path (e.g. 'router.top_k')."""

    def __init__(self, source: str, field: str, message: str):
        super().__init__(f"{source}: field '{field}': {message}")
        self.source = source
        self.field = field


@dataclass(frozen=True)
class RouterConfig:
    num_experts: int
    top_k: int
    logits_norm: bool
    """Gating logit normalization (report section 4.1): logits / (std(logits) / gate_norm_std)."""
    gate_norm_std: float
    norm_topk_prob: bool
    """Renormalize the k selected probabilities to sum to 1."""


@dataclass(frozen=True)
class ControllerConfig:
    kind: str
    """'skywork': the adaptive coefficient (report eqs. 7-9); 'fixed': alpha throughout."""
    alpha: float
    """The initial (skywork) or constant (fixed) coefficient."""
    xi: float
    alpha_max: float
    beta: float


@dataclass(frozen=True)
class AuxLossConfig:
    type: str
    """'skywork': sum_j (1/E - mean_i p_ij)^2 (report eq. 4); 'switch': E sum_j f_j P_j; 'none'."""
    controller: ControllerConfig
    capacity_factor: Optional[float]
    """capacity = ceil(capacity_factor * tokens * k / E) per expert; None: dropless."""
    drop_policy: str
    """'probability': an over-full expert drops its lowest gate probabilities; 'position': its last tokens."""


@dataclass(frozen=True)
class KitConfig:
    router: RouterConfig
    aux_loss: AuxLossConfig
    model: Dict[str, Any]
    """The skymoe model's Hugging Face config.json."""
    source: str


def load_kit(path: Optional[str] = None) -> KitConfig:
    """Read and check a kit config. `path`: the file or the kit directory; by default the kit this
    package was copied into (KIT/skymoe_megatron/ -> KIT/skymoe_kit.json)."""
    if path is None:
        path = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.isdir(path):
        path = os.path.join(path, KIT_FILE)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no kit config (skymoe export megatron writes {KIT_FILE} at the kit root)") from None
    except json.JSONDecodeError as e:
        raise KitConfigError(path, "(file)", f"not valid JSON: {e}") from None
    return parse_kit(obj, path)


def parse_kit(obj: Any, source: str = KIT_FILE) -> KitConfig:
    """Check a parsed kit config (see load_kit)."""
    top = _Fields(obj, source, "")
    fmt = top.get("format", str)
    if fmt != KIT_FORMAT:
        raise KitConfigError(source, "format", f"expected '{KIT_FORMAT}', got {fmt!r}")
    version = top.get("version", int)
    if version != KIT_VERSION:
        raise KitConfigError(source, "version", f"this skymoe_megatron reads version {KIT_VERSION}, got {version}")

    r = top.section("router")
    num_experts = r.integer("num_experts", 1)
    router = RouterConfig(
        num_experts=num_experts,
        top_k=r.integer("top_k", 1, num_experts),
        logits_norm=r.get("logits_norm", bool),
        gate_norm_std=r.positive("gate_norm_std"),
        norm_topk_prob=r.get("norm_topk_prob", bool),
    )
    if router.logits_norm and num_experts < 2:
        raise KitConfigError(source, "router.logits_norm", "logit normalization divides by the std over experts: it needs at least 2 experts")

    a = top.section("aux_loss")
    aux_type = a.choice("type", ("skywork", "switch", "none"))
    c = a.section("controller")
    controller = ControllerConfig(
        kind=c.choice("kind", ("skywork", "fixed")),
        alpha=c.non_negative("alpha"),
        xi=c.positive("xi"),
        alpha_max=c.non_negative("alpha_max"),
        beta=c.non_negative("beta"),
    )
    if controller.beta > 1:
        raise KitConfigError(source, "aux_loss.controller.beta", f"expected a number in [0, 1], got {controller.beta}")
    capacity_factor = a.optional_positive("capacity_factor")
    aux_loss = AuxLossConfig(aux_type, controller, capacity_factor, a.choice("drop_policy", ("probability", "position")))

    model = top.get("model", dict)
    return KitConfig(router, aux_loss, model, source)


class _Fields:
    """Typed access to one JSON object of the kit config, naming fields by their dotted path."""

    def __init__(self, obj: Any, source: str, prefix: str):
        if not isinstance(obj, dict):
            raise KitConfigError(source, prefix.rstrip(".") or "(top level)", f"expected an object, got {_kind(obj)}")
        self.obj, self.source, self.prefix = obj, source, prefix

    def _bad(self, key: str, message: str) -> KitConfigError:
        return KitConfigError(self.source, self.prefix + key, message)

    def get(self, key: str, typ: type) -> Any:
        if key not in self.obj:
            raise self._bad(key, "missing")
        v = self.obj[key]
        # JSON true is not a number here, and 2.0 is not an integer
        ok = isinstance(v, typ) and not (typ in (int, float) and isinstance(v, bool))
        if typ is float and isinstance(v, int) and not isinstance(v, bool):
            v, ok = float(v), True
        if not ok:
            raise self._bad(key, f"expected {_TYPE_NAMES[typ]}, got {_kind(v)}")
        return v

    def section(self, key: str) -> "_Fields":
        return _Fields(self.get(key, dict), self.source, self.prefix + key + ".")

    def integer(self, key: str, lo: int, hi: Optional[int] = None) -> int:
        v = self.get(key, int)
        if v < lo or (hi is not None and v > hi):
            raise self._bad(key, f"expected an integer in [{lo}, {hi if hi is not None else 'inf'}], got {v}")
        return v

    def choice(self, key: str, options: tuple) -> str:
        v = self.get(key, str)
        if v not in options:
            raise self._bad(key, f"expected one of {', '.join(repr(o) for o in options)}, got {v!r}")
        return v

    def _finite(self, key: str) -> float:
        v = self.get(key, float)
        if not math.isfinite(v):
            raise self._bad(key, f"expected a finite number, got {v}")
        return v

    def positive(self, key: str) -> float:
        v = self._finite(key)
        if v <= 0:
            raise self._bad(key, f"expected a number > 0, got {v}")
        return v

    def non_negative(self, key: str) -> float:
        v = self._finite(key)
        if v < 0:
            raise self._bad(key, f"expected a number >= 0, got {v}")
        return v

    def optional_positive(self, key: str) -> Optional[float]:
        if key not in self.obj:
            raise self._bad(key, "missing (null for dropless)")
        return None if self.obj[key] is None else self.positive(key)


_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false", dict: "an object"}


def _kind(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return f"the number {v}"
    if isinstance(v, str):
        return f"the string {v!r}"
    if isinstance(v, list):
        return "an array"
    return "an object"
