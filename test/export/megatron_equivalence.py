"""Driver of test/export/megatron-python.test.ts: runs skymoe_megatron under PyTorch on inputs skymoe
wrote and prints the results as JSON.

    python3 megatron_equivalence.py PYTHON_DIR INPUT.json WORK_DIR

PYTHON_DIR holds the package (python/ in the repo); WORK_DIR is a scratch directory. Besides the
package's math, it installs the package on a stand-in of Megatron-Core's router module (the
interface install() relies on, written here: a TopKRouter whose routing() the package replaces,
and an aux-loss autoscaler) and routes through it, also with a micro-batch's tokens split over two ranks (sequence
parallelism), and runs the coefficient's all-reduce over a real torch.distributed (gloo) group
of forked processes.
"""

import json
import os
import sys
import types

import torch

PYTHON_DIR, INPUT, WORK = sys.argv[1], sys.argv[2], os.path.abspath(sys.argv[3])
sys.path.insert(0, PYTHON_DIR)

import skymoe_megatron as sm  # noqa: E402

STAND_IN = {
    "megatron/__init__.py": "",
    "megatron/core/__init__.py": "",
    "megatron/core/package_info.py": "__version__ = '0.15.0'\n",
    "megatron/core/transformer/__init__.py": "",
    "megatron/core/transformer/moe/__init__.py": "",
    "megatron/core/transformer/moe/router.py": '''
import torch

class TopKRouter(torch.nn.Module):
    """Stand-in: the attributes install() reads; routing() is replaced by the package."""
    def __init__(self, config, layer_number):
        super().__init__()
        self.config = config
        self.topk = config.moe_router_topk
        self.layer_number = layer_number
        self.tp_cp_group = None
        self.tp_dp_cp_group = None
    def apply_z_loss(self, logits):
        return logits
    def routing(self, logits, padding_mask=None):
        raise NotImplementedError("stand-in routing: install() was not applied")
''',
    "megatron/training/__init__.py": "",
    "megatron/training/training.py": '''
def train_step(*args, **kwargs):
    return "stepped"

def train(steps):
    """Stand-in of Megatron-LM's loop: it calls train_step by its module-level name."""
    return [train_step() for _ in range(steps)]
''',
    "megatron/core/transformer/moe/moe_utils.py": '''
import torch

class MoEAuxLossAutoScaler(torch.autograd.Function):
    """Stand-in: returns the activation; its backward gives the attached loss a gradient of 1."""
    @staticmethod
    def forward(ctx, output, aux_loss):
        ctx.save_for_backward(aux_loss)
        return output
    @staticmethod
    def backward(ctx, grad_output):
        (aux_loss,) = ctx.saved_tensors
        return grad_output, torch.ones_like(aux_loss)
''',
}


def flat(t: torch.Tensor) -> list:
    return t.detach().reshape(-1).double().tolist()


def router_config(c: dict) -> sm.RouterConfig:
    return sm.RouterConfig(c["num_experts"], c["top_k"], c["logits_norm"], c["gate_norm_std"], c["norm_topk_prob"])


def router_case(c: dict, i: int) -> dict:
    """The package's math on one layer's logits: routing, capacity, aux loss and its gradient."""
    N, E = c["tokens"], c["num_experts"]
    logits = torch.tensor(c["logits"], dtype=torch.float32).reshape(N, E).requires_grad_(True)
    rc = router_config(c)
    r = sm.route(logits, rc)
    plan = sm.apply_capacity(r.experts, r.top_probs.detach(), E, c["capacity_factor"], c["drop_policy"])
    aux = sm.aux_loss(c["aux"], r.probs, plan.routed_per_expert, rc.top_k)
    aux.backward()
    return {
        "name": c["name"],
        "softmax_input": flat(r.logits),
        "probs": flat(r.probs),
        "experts": r.experts.reshape(-1).tolist(),
        "weights": flat(r.weights),
        "kept": plan.kept.reshape(-1).tolist(),
        "routed": plan.routed_per_expert.tolist(),
        "kept_per_expert": plan.kept_per_expert.tolist(),
        "capacity": plan.capacity,
        "drop_rate": plan.dropped.item() / (N * rc.top_k),
        "aux": aux.item(),
        "aux_grad": flat(logits.grad),
        "patched": patched_router_case(c, i),
    }


def write_stand_in() -> None:
    for rel, text in STAND_IN.items():
        path = os.path.join(WORK, "stand-in", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    sys.path.insert(0, os.path.join(WORK, "stand-in"))


def kit_json(c: dict, alpha: float) -> dict:
    return {
        "format": "skymoe-megatron-kit",
        "version": 1,
        "router": {k: c[k] for k in ("num_experts", "top_k", "logits_norm", "gate_norm_std", "norm_topk_prob")},
        "aux_loss": {
            "type": c["aux"],
            "controller": {"kind": "fixed", "alpha": alpha, "xi": 0.2, "alpha_max": 0.01, "beta": 0.99},
            "capacity_factor": c["capacity_factor"],
            "drop_policy": c["drop_policy"],
        },
        "model": {"model_type": "skywork"},
        "layout": {"ignored": "unknown keys are ignored"},
    }


def megatron_config(c: dict, **over) -> types.SimpleNamespace:
    cfg = dict(
        num_moe_experts=c["num_experts"],
        moe_router_topk=c["top_k"],
        moe_router_score_function="softmax",
        moe_expert_capacity_factor=c["capacity_factor"],
        moe_token_drop_policy={"probability": "probs", "position": "position"}[c["drop_policy"]],
        moe_router_load_balancing_type="none",
        moe_pad_expert_input_to_capacity=False,
        calculate_per_token_loss=False,
    )
    cfg.update(over)
    return types.SimpleNamespace(**cfg)


PATCH_ALPHA = 0.03


def write_kit(c: dict, i: int) -> str:
    path = os.path.join(WORK, f"kit-{i}")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, sm.KIT_FILE), "w") as f:
        json.dump(kit_json(c, PATCH_ALPHA), f)
    return path


def patched_router_case(c: dict, i: int) -> dict:
    """install() on the stand-in, then a training forward and backward through TopKRouter.routing:
    the dense probs and routing map Megatron's dispatcher reads, the gradient the attached aux loss
    sends to the logits (alpha times the aux loss's), and the drop rate end_step() averages."""
    controller = sm.install(write_kit(c, i))
    try:
        from megatron.core.transformer.moe.router import TopKRouter

        N, E = c["tokens"], c["num_experts"]
        router = TopKRouter(megatron_config(c), layer_number=3)
        router.train()
        logits = torch.tensor(c["logits"], dtype=torch.float32).reshape(N, 1, E).requires_grad_(True)  # [s, b, E]
        probs, routing_map = router.routing(logits)
        (probs * 0).sum().backward()  # only the attached aux loss sends a gradient
        step = sm.end_step()[3]
        return {
            "probs": flat(probs),
            "routing_map": routing_map.reshape(-1).int().tolist(),
            "grad": flat(logits.grad),
            "alpha": PATCH_ALPHA,
            "drop_rate": step.drop_rate,
            "aux": step.aux_loss,
            "next_alpha": controller.coefficient(3),
        }
    finally:
        sm.uninstall()


def sharded_rank(rank: int, cases: list, out_dir: str) -> None:
    """One of two sequence-parallel ranks: each routes half of every case's tokens through the
    patched TopKRouter, whose tp_cp group (the token split) and tp_dp_cp group are both ranks."""
    torch.distributed.init_process_group("gloo", init_method="file://" + os.path.join(out_dir, "rendezvous"), rank=rank, world_size=2)
    from megatron.core.transformer.moe.router import TopKRouter

    results = []
    for i, c in enumerate(cases):
        sm.install(os.path.join(WORK, f"kit-{i}"))
        try:
            N, E = c["tokens"], c["num_experts"]
            half = N // 2
            logits = torch.tensor(c["logits"], dtype=torch.float32).reshape(N, E)[rank * half : (rank + 1) * half]
            logits = logits.reshape(half, 1, E).clone().requires_grad_(True)
            router = TopKRouter(megatron_config(c), layer_number=3)
            router.tp_cp_group = router.tp_dp_cp_group = torch.distributed.group.WORLD
            router.train()
            probs, _ = router.routing(logits)
            (probs * 0).sum().backward()
            step = sm.end_step()[3]
            results.append({"grad": flat(logits.grad), "aux": step.aux_loss, "drop_rate": step.drop_rate})
        finally:
            sm.uninstall()
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(results, f)
    torch.distributed.destroy_process_group()


def sharded_cases(cases: list) -> list:
    """The two ranks' gradients concatenated (the whole micro-batch's), their aux loss and mean drop rate."""
    out_dir = os.path.join(WORK, "sharded")
    os.makedirs(out_dir, exist_ok=True)
    torch.multiprocessing.start_processes(sharded_rank, args=(cases, out_dir), nprocs=2, start_method="fork")
    ranks = []
    for r in range(2):
        with open(os.path.join(out_dir, f"rank{r}.json")) as f:
            ranks.append(json.load(f))
    return [{"grad": a["grad"] + b["grad"], "aux": [a["aux"], b["aux"]], "drop_rate": [a["drop_rate"], b["drop_rate"]]} for a, b in zip(*ranks)]


TRAIN_STEP_ALPHA = 0.002


def train_step_case(c: dict) -> dict:
    """install() wraps train_step: after a step that routed one micro-batch, the coefficient has
    moved by one adaptive step from the drop rate; uninstall() restores train_step."""
    kit = kit_json(c, TRAIN_STEP_ALPHA)
    kit["aux_loss"]["controller"]["kind"] = "skywork"
    path = os.path.join(WORK, "kit-train-step")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, sm.KIT_FILE), "w") as f:
        json.dump(kit, f)
    import megatron.training.training as training

    original = training.train_step
    controller = sm.install(path)
    try:
        from megatron.core.transformer.moe.router import TopKRouter

        router = TopKRouter(megatron_config(c), layer_number=2)
        router.train()
        router.routing(torch.tensor(c["logits"], dtype=torch.float32).reshape(c["tokens"], 1, c["num_experts"]))
        stepped = training.train(1)
        return {"wrapped": training.train_step is not original, "returned": stepped, "alpha0": TRAIN_STEP_ALPHA, "alpha": controller.coefficient(2)}
    finally:
        sm.uninstall()
        assert training.train_step is original, "uninstall() restores train_step"


def launcher_case(c: dict) -> dict:
    """python -m skymoe_megatron SCRIPT ARGS: the script runs as __main__ with its arguments, its
    directory first on sys.path, the router patched."""
    script_dir = os.path.join(WORK, "megatron-lm")
    os.makedirs(script_dir, exist_ok=True)
    script = os.path.join(script_dir, "pretrain_gpt.py")
    with open(script, "w") as f:
        f.write(
            "import json, sys\n"
            "from megatron.core.transformer.moe.router import TopKRouter\n"
            "import skymoe_megatron.megatron_patch as p\n"
            "print(json.dumps({'name': __name__, 'argv': sys.argv, 'path0': sys.path[0],"
            " 'patched': TopKRouter.routing is p._routing, 'train_step_wrapped': p._installed.train_step_wrapped}))\n"
        )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([PYTHON_DIR, os.path.join(WORK, "stand-in")]), SKYMOE_KIT=os.path.join(WORK, "kit-0"))
    import subprocess

    r = subprocess.run([sys.executable, "-m", "skymoe_megatron", script, "--num-layers", "2"], env=env, capture_output=True, text=True, cwd=WORK)
    if r.returncode != 0:
        return {"error": r.stderr}
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["path0_is_script_dir"] = out.pop("path0") == script_dir
    out["argv"] = [os.path.basename(out["argv"][0])] + out["argv"][1:]
    return out


def config_errors(c: dict) -> list:
    """install() with a Megatron config that disagrees with the kit: the error names the field."""
    path = os.path.join(WORK, "kit-config-errors")
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, sm.KIT_FILE), "w") as f:
        json.dump(kit_json(c, 0.01), f)
    from megatron.core.transformer.moe.router import TopKRouter

    out = []
    for over in ({"moe_router_topk": c["top_k"] + 1}, {"moe_expert_capacity_factor": None}, {"moe_router_load_balancing_type": "seq_aux_loss"}, {"moe_pad_expert_input_to_capacity": True}):
        sm.install(path)
        try:
            router = TopKRouter(megatron_config(c, **over), layer_number=1)
            router.train()
            router.routing(torch.zeros(4, 1, c["num_experts"]))
            out.append({"override": list(over)[0], "error": None})
        except sm.MegatronConfigError as e:
            out.append({"override": list(over)[0], "error": str(e)})
        finally:
            sm.uninstall()
    return out


def controller_rank(rank: int, c: dict, out_dir: str) -> None:
    """One data-parallel rank: record its micro-batches' drop rates, end_step() all-reduces."""
    R = c["ranks"]
    if R > 1:
        torch.distributed.init_process_group("gloo", init_method="file://" + os.path.join(out_dir, "rendezvous"), rank=rank, world_size=R)
    cfg = sm.ControllerConfig(**c["controller"])
    coef = sm.AuxCoefficients(cfg)
    alphas = []
    for step in c["drops"]:  # [rank][micro][layer]
        for micro in step[rank]:
            for l, d in enumerate(micro):
                coef.record(l, torch.tensor(d, dtype=torch.float64), torch.zeros(()))
        report = coef.end_step()
        alphas.append([report[l].next_alpha for l in sorted(report)])
    with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
        json.dump(alphas, f)
    if R > 1:
        torch.distributed.destroy_process_group()


def controller_case(c: dict, i: int) -> dict:
    out_dir = os.path.join(WORK, f"controller-{i}")
    os.makedirs(out_dir, exist_ok=True)
    if c["ranks"] == 1:
        controller_rank(0, c, out_dir)
    else:
        torch.multiprocessing.start_processes(controller_rank, args=(c, out_dir), nprocs=c["ranks"], start_method="fork")
    per_rank = []
    for r in range(c["ranks"]):
        with open(os.path.join(out_dir, f"rank{r}.json")) as f:
            per_rank.append(json.load(f))
    return {"name": c["name"], "alpha": per_rank[0], "ranks_agree": all(a == per_rank[0] for a in per_rank)}


def kit_case(c: dict) -> dict:
    try:
        k = sm.parse_kit(c["config"], "skymoe_kit.json")
        return {"name": c["name"], "error": None, "router": vars(k.router), "controller": vars(k.aux_loss.controller)}
    except sm.KitConfigError as e:
        return {"name": c["name"], "error": str(e), "field": e.field}


def main() -> None:
    with open(INPUT) as f:
        spec = json.load(f)
    write_stand_in()
    result = {
        "torch": torch.__version__,
        "router": [router_case(c, i) for i, c in enumerate(spec["router"])],
        "sharded": sharded_cases(spec["router"]),
        "config_errors": config_errors(spec["router"][0]),
        "train_step": train_step_case(spec["router"][0]),
        "launcher": launcher_case(spec["router"][0]),
        "controller": [controller_case(c, i) for i, c in enumerate(spec["controller"])],
        "kits": [kit_case(c) for c in spec["kits"]],
    }
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
