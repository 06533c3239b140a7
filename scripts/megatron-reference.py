#!/usr/bin/env python3
"""Reference numbers from Megatron-LM's own FLOPs and theoretical-memory functions.

Usage:
    python3 scripts/megatron-reference.py /path/to/Megatron-LM-checkout > test/fixtures/megatron/reference.json

Megatron-LM is never imported as a package (its imports need transformer_engine, apex, a recent
torch, ...). Instead this script parses the checkout's source files with `ast`, takes just the
top-level functions it needs, follows the names those functions use to their definitions
(through `from x import y` chains, `megatron.*` modules only; standard-library modules are
imported normally), compiles each definition under its original file name and line numbers and
execs it into one namespace. The only substitute is `print_rank_0`, which needs torch.distributed
and is replaced by a plain print into a capture buffer.

The defaults of every argument a case does not set are read from the same checkout
(`add_argument(...)` calls of megatron/training/arguments.py, or the fields of
TransformerConfig / ModelParallelConfig, which Megatron turns into arguments with
ArgumentGroupFactory, `argparse_meta` defaults taking precedence), so each value is
traceable to a file and line.

Nothing here is part of skymoe's runtime; the output is a test fixture. The checkout stays
outside this repository.
"""
import argparse
import ast
import builtins
import contextlib
import copy
import importlib
import io
import json
import os
import subprocess
import sys

TRAINING = "megatron/training/training.py"
MEMORY = "megatron/training/theoretical_memory_usage.py"
ARGUMENTS = "megatron/training/arguments.py"
DATACLASSES = [
    ("megatron/core/transformer/transformer_config.py", "TransformerConfig"),
    ("megatron/core/model_parallel_config.py", "ModelParallelConfig"),
]
VOCAB_PADDING = "megatron/core/tokenizers/utils/build_tokenizer.py"


# ----------------------------------------------------------------------------------------------
# Loading functions out of the checkout
# ----------------------------------------------------------------------------------------------

def _bound_and_loaded(node):
    """Names a definition binds anywhere inside it, and names it reads."""
    bound, loaded = set(), set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name):
            (loaded if isinstance(n.ctx, ast.Load) else bound).add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            for a in n.names:
                bound.add((a.asname or a.name).split(".")[0])
        elif isinstance(n, ast.ExceptHandler) and n.name:
            bound.add(n.name)
    return bound, loaded


def free_names(node):
    bound, loaded = _bound_and_loaded(node)
    if isinstance(node, (ast.Assign, ast.AnnAssign)):
        bound = set()  # the target itself is what we are defining
    return sorted(n for n in loaded - bound if not hasattr(builtins, n))


class Loader:
    def __init__(self, root, stubs):
        self.root = root
        self.ns = {"__builtins__": builtins, "__name__": "megatron_reference"}
        self.origin = {}  # name -> "path:line" or "stub" or "stdlib module"
        self.stubs = stubs
        self._trees = {}

    def rel(self, path):
        return os.path.relpath(path, self.root)

    def tree(self, path):
        if path not in self._trees:
            with open(path) as f:
                self._trees[path] = ast.parse(f.read(), filename=path)
        return self._trees[path]

    def module_file(self, modname):
        base = os.path.join(self.root, *modname.split("."))
        for cand in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(cand):
                return cand
        raise FileNotFoundError(f"module {modname} not in checkout")

    def _package_of(self, path):
        # a/b/c.py and a/b/__init__.py both belong to package a.b
        return self.rel(path)[:-3].split(os.sep)[:-1]

    def _resolve_from(self, path, node):
        if node.level == 0:
            return node.module
        pkg = self._package_of(path)
        pkg = pkg[: len(pkg) - (node.level - 1)]
        return ".".join(pkg + ([node.module] if node.module else []))

    def function_node(self, path, name):
        for node in self.tree(path).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name:
                return node
        raise KeyError(f"{name} not defined at top level of {self.rel(path)}")

    def load(self, name, path, bind_as=None):
        bind_as = bind_as or name
        if bind_as in self.origin:
            return
        if bind_as in self.stubs:
            self.ns[bind_as] = self.stubs[bind_as]
            self.origin[bind_as] = "stub (see how)"
            return
        for node in self.tree(path).body:
            defines = (
                (isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name == name)
                or (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets))
                or (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == name)
            )
            if defines:
                self.origin[bind_as] = f"{self.rel(path)}:{node.lineno}"
                # dependencies first: annotations and default values are evaluated at def time
                for dep in free_names(node):
                    self.load(dep, path)
                code = compile(ast.Module(body=[node], type_ignores=[]), path, "exec")
                exec(code, self.ns)
                if bind_as != name:
                    self.ns[bind_as] = self.ns[name]
                return
        for node in self.tree(path).body:
            if isinstance(node, ast.ImportFrom):
                for a in node.names:
                    if (a.asname or a.name) == name:
                        mod = self._resolve_from(path, node)
                        if mod.split(".")[0] == "megatron":
                            self.load(a.name, self.module_file(mod), bind_as)
                        elif mod.split(".")[0] in sys.stdlib_module_names:
                            self.ns[bind_as] = getattr(importlib.import_module(mod), a.name)
                            self.origin[bind_as] = f"stdlib {mod}.{a.name}"
                        else:
                            raise RuntimeError(f"{name} comes from non-stdlib module {mod}; stub it")
                        return
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if (a.asname or a.name).split(".")[0] == name:
                        top = a.name.split(".")[0]
                        if top not in sys.stdlib_module_names:
                            raise RuntimeError(f"{name} is non-stdlib module {a.name}; stub it")
                        # `import x.y as z` binds x.y; `import x.y` binds x
                        self.ns[bind_as] = importlib.import_module(a.name if a.asname else top)
                        self.origin[bind_as] = f"stdlib module {a.name}"
                        return
        raise KeyError(f"cannot resolve {name} from {self.rel(path)}")


# ----------------------------------------------------------------------------------------------
# Defaults, as declared in the checkout
# ----------------------------------------------------------------------------------------------

def _literal(node):
    try:
        return ast.literal_eval(node)
    except Exception as e:  # noqa: BLE001
        raise ValueError(f"non-literal default {ast.unparse(node)}") from e


def declared_defaults(root):
    """dest -> (default, 'file:line') from arguments.py add_argument calls and config dataclasses."""
    out = {}
    path = os.path.join(root, ARGUMENTS)
    with open(path) as f:
        tree = ast.parse(f.read())
    for n in ast.walk(tree):
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "add_argument":
            opts = [a.value for a in n.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            longs = [o for o in opts if o.startswith("--")]
            kw = {k.arg: k.value for k in n.keywords if k.arg}
            if "dest" in kw:
                dest = _literal(kw["dest"])
            elif longs:
                dest = longs[0][2:].replace("-", "_")
            else:
                continue
            action = _literal(kw["action"]) if "action" in kw and isinstance(kw["action"], ast.Constant) else None
            if "default" in kw:
                try:
                    val = _literal(kw["default"])
                except ValueError:
                    continue
            elif action == "store_true":
                val = False
            elif action == "store_false":
                val = True
            else:
                val = None
            out.setdefault(dest, (val, f"{ARGUMENTS}:{n.lineno}"))
    for rel, cls in DATACLASSES:
        with open(os.path.join(root, rel)) as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if not (isinstance(node, ast.ClassDef) and node.name == cls):
                continue
            for st in node.body:
                if not (isinstance(st, ast.AnnAssign) and isinstance(st.target, ast.Name) and st.value is not None):
                    continue
                v = st.value
                try:
                    if isinstance(v, ast.Call) and getattr(v.func, "id", None) == "field":
                        kw = {k.arg: k.value for k in v.keywords}
                        val = _literal(kw["default"]) if "default" in kw else None
                        meta = kw.get("metadata")
                        if isinstance(meta, ast.Dict):
                            for mk, mv in zip(meta.keys, meta.values):
                                if isinstance(mk, ast.Constant) and mk.value == "argparse_meta" and isinstance(mv, ast.Dict):
                                    for ak, av in zip(mv.keys, mv.values):
                                        if isinstance(ak, ast.Constant) and ak.value == "default":
                                            val = _literal(av)
                    else:
                        val = _literal(v)
                except (ValueError, KeyError):
                    continue
                out.setdefault(st.target.id, (val, f"{rel}:{st.lineno} ({cls} field)"))
    return out


# ----------------------------------------------------------------------------------------------
# Tracing which lines (branches) ran, and which attributes were read
# ----------------------------------------------------------------------------------------------

class RecordingNamespace(argparse.Namespace):
    def __getattribute__(self, name):
        if not name.startswith("__"):
            object.__getattribute__(self, "__dict__").setdefault("_reads", [])
            reads = object.__getattribute__(self, "__dict__")["_reads"]
            if name != "_reads" and name not in reads:
                reads.append(name)
        return object.__getattribute__(self, name)


def namespace(values):
    ns = RecordingNamespace(**copy.deepcopy(values))
    ns.__dict__["_reads"] = []
    return ns


def reads_of(ns):
    return sorted(ns.__dict__["_reads"])


@contextlib.contextmanager
def trace_lines(files, sink):
    def local(frame, event, arg):
        if event == "line":
            sink.add((frame.f_code.co_filename, frame.f_lineno))
        return local

    def glob(frame, event, arg):
        if frame.f_code.co_filename in files:
            return local
        return None

    old = sys.gettrace()
    sys.settrace(glob)
    try:
        yield
    finally:
        sys.settrace(old)


def branch_labels(loader, path, func_node, labels, executed):
    """labels: [(label, source substring)]; a label is taken if a line of the function containing
    the substring ran."""
    with open(path) as f:
        lines = f.read().split("\n")
    out = {}
    for label, needle in labels:
        hits = [i + 1 for i in range(func_node.lineno - 1, func_node.end_lineno) if needle in lines[i]]
        if not hits:
            out[label] = "not in source"
        else:
            out[label] = any((path, h) in executed for h in hits)
    return out


FLOPS_BRANCHES = [
    ("hybrid_flops (hybrid_layer_pattern set)", "return hybrid_flops("),
    ("transformer_flops", "return transformer_flops()"),
    ("no GQA: num_query_groups := num_attention_heads", "args.num_query_groups = args.num_attention_heads"),
    ("dense: every MLP dense (num_experts None)", "num_experts_routed_to = 0"),
    ("MoE: num_experts_routed_to = moe_router_topk", "num_experts_routed_to = args.moe_router_topk"),
    ("MoE pattern from int moe_layer_freq", "1 if (i % args.moe_layer_freq == 0) else 0 for i in range(args.num_layers)"),
    ("MTP layers counted", "mtp_num_layers = args.mtp_num_layers"),
    ("no MTP", "mtp_num_layers = 0"),
    ("MLA attention", "assert not args.group_query_attention"),
    ("MHA/GQA attention", "query_projection_size = args.kv_channels * args.num_attention_heads"),
    ("linear-attention variant layers", "num_linear_attention_layers = sum(linear_attention_pattern)"),
    ("no linear attention", "num_linear_attention_layers = 0"),
]

WEIGHT_BRANCHES = [
    ("no GQA: num_query_groups := num_attention_heads", "args.num_query_groups = args.num_attention_heads"),
    ("MoE pattern from int moe_layer_freq", "1 if (i % args.moe_layer_freq == 0) else 0 for i in range(args.num_layers)"),
    ("dense: no MoE layers", "moe_layer_pattern = [0] * args.num_layers"),
    ("MTP layers counted", "mtp_layer_is_moe = moe_layer_pattern[-1]"),
    ("MLA attention", "assert not args.group_query_attention"),
    ("untied output layer on the single stage (PP 1) added", "tp_sharded_params_on_most_loaded_shard += embedding_size"),
    ("other-stage shard computed (PP > 1)", "num_parameters_on_other_model_shards = ("),
]

ACTIVATION_BRANCHES = [
    ("interleaved schedule penalty (virtual PP)", "activation_memory *= interleaved_schedule_memory_penalty"),
    ("non-interleaved discount min(1, microbatches/PP)", "activation_memory *= min(1, num_microbatches / args.pipeline_model_parallel_size)"),
    ("output layer + CE loss inputs (PP 1)", "* (1 + (args.padded_vocab_size / args.hidden_size))"),
]


# ----------------------------------------------------------------------------------------------
# Cases
# ----------------------------------------------------------------------------------------------

def model(layers, hidden, ffn, heads, groups, vocab, experts=None, topk=None, seq=4096):
    m = {
        "num_layers": layers,
        "hidden_size": hidden,
        "ffn_hidden_size": ffn,
        "num_attention_heads": heads,
        "num_query_groups": groups,
        "group_query_attention": groups < heads,
        "kv_channels": hidden // heads,
        "seq_length": seq,
        "swiglu": True,
        "normalization": "RMSNorm",
        "untie_embeddings_and_output_weights": True,
        "vocab_size": vocab,  # unpadded; padded_vocab_size is derived below
    }
    if experts is not None:
        m.update(num_experts=experts, moe_router_topk=topk, moe_ffn_hidden_size=ffn, moe_layer_freq=1)
    return m


def parallel(tp, pp, dp, ep=1, vp=None, dist_opt=True, micro=1):
    return {
        "tensor_model_parallel_size": tp,
        "pipeline_model_parallel_size": pp,
        "data_parallel_size": dp,
        "world_size": tp * pp * dp,  # context parallel 1
        "expert_model_parallel_size": ep,
        "expert_tensor_parallel_size": tp,  # validate_args: None -> tensor_model_parallel_size
        "virtual_pipeline_model_parallel_size": vp,
        "use_distributed_optimizer": dist_opt,
        "micro_batch_size": micro,
        # validate_args turns sequence parallelism off when TP is 1
        "sequence_parallel": tp > 1,
        "recompute_granularity": "selective",
    }


CASES = [
    ("skywork-moe-146b", model(52, 4608, 12288, 36, 36, 65532, experts=16, topk=2), parallel(4, 12, 32, ep=4)),
    ("mixtral-8x7b", model(32, 4096, 14336, 32, 8, 32000, experts=8, topk=2), parallel(2, 2, 8, ep=1)),
    ("llama2-7b", model(32, 4096, 11008, 32, 32, 32000), parallel(2, 2, 8)),
    ("llama3-8b", model(32, 4096, 14336, 32, 8, 128256, seq=8192), parallel(1, 1, 8)),
    ("llama2-7b-interleaved", model(32, 4096, 11008, 32, 32, 32000), parallel(2, 4, 4, vp=2, dist_opt=False)),
]
BATCH_SIZE = 8
NUM_MICROBATCHES = 64


def git(root, *a):
    return subprocess.run(["git", "-C", root, *a], check=True, capture_output=True, text=True).stdout.strip()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkout", help="path of a Megatron-LM checkout (kept outside this repository)")
    p.add_argument("--commit", help="commit hash, if the checkout is not a git work tree")
    p.add_argument("--commit-date", help="commit date, if the checkout is not a git work tree")
    a = p.parse_args()
    root = os.path.abspath(a.checkout)
    commit = a.commit or git(root, "rev-parse", "HEAD")
    commit_date = a.commit_date or git(root, "log", "-1", "--format=%cI", commit)
    if not a.commit:
        dirty = git(root, "status", "--porcelain", "--", TRAINING, MEMORY, VOCAB_PADDING)
        if dirty:
            sys.exit(f"checkout has local changes: {dirty}")

    printed = io.StringIO()

    def print_rank_0(message, rank=None):
        print(message, file=printed)

    loader = Loader(root, stubs={"print_rank_0": print_rank_0})
    tpath, mpath = os.path.join(root, TRAINING), os.path.join(root, MEMORY)
    loader.load("num_floating_point_operations", tpath)
    for fn in ("compute_weight_and_optimizer_memory", "compute_activation_memory",
               "compute_activation_memory_without_sp", "report_theoretical_memory"):
        loader.load(fn, mpath)
    loader.load("vocab_size_with_padding", os.path.join(root, VOCAB_PADDING))
    ns = loader.ns
    flops_fn = ns["num_floating_point_operations"]
    nodes = {n: loader.function_node(p_, n) for n, p_ in [
        ("num_floating_point_operations", tpath),
        ("compute_weight_and_optimizer_memory", mpath),
        ("compute_activation_memory", mpath)]}

    defaults = declared_defaults(root)
    # every attribute any of the functions can read (static scan), so each Namespace is complete
    read_static = set()
    for fn_name, path in [("num_floating_point_operations", tpath), ("compute_weight_and_optimizer_memory", mpath),
                          ("compute_activation_memory", mpath), ("compute_activation_memory_without_sp", mpath),
                          ("report_theoretical_memory", mpath)]:
        for n in ast.walk(loader.function_node(path, fn_name)):
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "args":
                read_static.add(n.attr)
            if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "getattr" and \
                    isinstance(n.args[0], ast.Name) and n.args[0].id == "args":
                read_static.add(n.args[1].value)
    # is_hybrid_model reads hybrid_layer_pattern (already in the scan via the flops function)

    cases = []
    used_defaults = {}
    for name, m, par in CASES:
        vocab = m.pop("vocab_size")
        set_by_case = dict(m)
        set_by_case.update(par)
        pad_args = argparse.Namespace(make_vocab_size_divisible_by=defaults["make_vocab_size_divisible_by"][0],
                                      tensor_model_parallel_size=par["tensor_model_parallel_size"], rank=0)
        set_by_case["padded_vocab_size"] = ns["vocab_size_with_padding"](vocab, pad_args, logging_enabled=False)
        args = {}
        for attr in sorted(read_static):
            if attr in set_by_case:
                args[attr] = set_by_case[attr]
            elif attr in defaults:
                args[attr] = defaults[attr][0]
                used_defaults[attr] = {"value": defaults[attr][0], "declared_at": defaults[attr][1]}
            else:
                sys.exit(f"no value and no declared default for args.{attr}")
        extra = sorted(set(set_by_case) - set(args))
        assert not extra, f"case sets attributes no function reads: {extra}"

        executed = set()
        files = {tpath, mpath}
        with trace_lines(files, executed):
            fa = namespace(args)
            flops = flops_fn(fa, BATCH_SIZE)
        flops_reads = reads_of(fa)

        # Breakdown by ablation of Megatron's own function (every term is additive):
        sq = BATCH_SIZE * args["seq_length"] ** 2
        no_core = flops_fn(namespace(args), BATCH_SIZE, seqlen_squared_sum_in_batch=0)
        no_logit = flops_fn(namespace({**args, "padded_vocab_size": 0}), BATCH_SIZE)
        no_mlp = flops_fn(namespace({**args, "ffn_hidden_size": 0,
                                     "moe_ffn_hidden_size": 0 if args["num_experts"] else None}), BATCH_SIZE)
        only_proj = flops_fn(namespace({**args, "ffn_hidden_size": 0, "padded_vocab_size": 0,
                                        "moe_ffn_hidden_size": 0 if args["num_experts"] else None}),
                             BATCH_SIZE, seqlen_squared_sum_in_batch=0)
        core, logit, mlp = flops - no_core, flops - no_logit, flops - no_mlp
        tokens = BATCH_SIZE * args["seq_length"]
        L = args["num_layers"]
        q_proj = args["kv_channels"] * args["num_attention_heads"]
        # core = 3 (fwd+bwd) * 2 (FMA) * 2 (QK^T and AV) * ratio * q_proj * L * sum(s^2)
        attention_ratio = core / (3 * 2 * 2 * q_proj * L * sq)
        breakdown = {
            "how": "ablations of num_floating_point_operations itself: core_attention = f - f(seqlen_squared_sum_in_batch=0); "
                   "logits = f - f(padded_vocab_size=0); mlp = f - f(ffn_hidden_size=0, moe_ffn_hidden_size=0); "
                   "attention_projections = f(all three removed). Totals are 3x forward (fwd + wgrad + dgrad).",
            "mlp": mlp,
            "attention_projections": only_proj,
            "core_attention": core,
            "logits": logit,
            "sum_minus_flops": (mlp + only_proj + core + logit) - flops,
            "per_token_per_layer_training": {
                "mlp": mlp / tokens / L,
                "attention_projections": only_proj / tokens / L,
                "core_attention": core / tokens / L,
            },
            "per_token_logits_training": logit / tokens,
        }

        # Memory: the functions read and *mutate* args (num_query_groups), so each gets a fresh copy.
        out_w, out_a = io.StringIO(), io.StringIO()
        with trace_lines(files, executed):
            wa = namespace(args)
            with contextlib.redirect_stdout(out_w):
                weight = ns["compute_weight_and_optimizer_memory"](wa, verbose=True)
            aa = namespace(args)
            with contextlib.redirect_stdout(out_a):
                act = ns["compute_activation_memory"](aa, NUM_MICROBATCHES, verbose=True)
        act_no_sp = ns["compute_activation_memory_without_sp"](namespace(args), NUM_MICROBATCHES)
        weight_no_vocab = ns["compute_weight_and_optimizer_memory"](namespace({**args, "padded_vocab_size": 0}))
        printed.seek(0)
        printed.truncate()
        out_r = io.StringIO()
        with contextlib.redirect_stdout(out_r):
            w_mb, a_mb, t_mb = ns["report_theoretical_memory"](namespace(args), num_microbatches=NUM_MICROBATCHES)
        chosen = printed.getvalue().strip()

        cases.append({
            "name": name,
            "vocab_size": vocab,
            "args": args,
            "set_by_case": sorted(set_by_case),
            "batch_size": BATCH_SIZE,
            "num_microbatches": NUM_MICROBATCHES,
            "flops": flops,
            "attention_ratio": attention_ratio,
            "flops_branches": branch_labels(loader, tpath, nodes["num_floating_point_operations"], FLOPS_BRANCHES, executed),
            "flops_breakdown": breakdown,
            "weight_and_optimizer_bytes": weight,
            "activation_bytes": act,
            "activation_bytes_without_sp": act_no_sp,
            "embedding_and_output_layer_weight_bytes": weight - weight_no_vocab,
            "weight_branches": branch_labels(loader, mpath, nodes["compute_weight_and_optimizer_memory"], WEIGHT_BRANCHES, executed),
            "activation_branches": branch_labels(loader, mpath, nodes["compute_activation_memory"], ACTIVATION_BRANCHES, executed),
            "weight_verbose": out_w.getvalue().strip().split("\n"),
            "activation_verbose": out_a.getvalue().strip().split("\n"),
            "report_theoretical_memory": {
                "activation_function_chosen": chosen,
                "weight_and_optimizer_MiB": w_mb,
                "activation_MiB": a_mb,
                "total_MiB": t_mb,
                "printed": out_r.getvalue().strip(),
            },
            "attributes_read": {
                "num_floating_point_operations": flops_reads,
                "compute_weight_and_optimizer_memory": reads_of(wa),
                "compute_activation_memory": reads_of(aa),
            },
        })

    how = (
        "Megatron-LM was not imported. scripts/megatron-reference.py parsed the checkout's "
        f"{TRAINING} and {MEMORY} with ast, took the top-level functions num_floating_point_operations, "
        "compute_weight_and_optimizer_memory, compute_activation_memory, compute_activation_memory_without_sp and "
        "report_theoretical_memory, followed every global name they use to its definition in the checkout "
        "(through from-import chains) and exec'd those definitions, compiled under their original file names and "
        "line numbers, into one namespace: "
        + ", ".join(f"{k} <- {v}" for k, v in sorted(loader.origin.items()))
        + ". print_rank_0 (needs torch.distributed) was replaced by a print into a buffer, used only to see which "
        "activation function report_theoretical_memory chose. Each function was called on a fresh argparse.Namespace "
        "holding every attribute any of these functions reads (static scan of args.X and getattr(args, ...)): the "
        "case's values (listed in set_by_case) and, for the rest, the defaults declared in the same checkout "
        "(see defaults). padded_vocab_size comes from Megatron's own vocab_size_with_padding (multiple of "
        "make_vocab_size_divisible_by 128 x tensor_model_parallel_size). world_size = TP x PP x DP (context parallel 1), "
        "expert_tensor_parallel_size = TP (what validate_args sets when it is None), sequence_parallel = (TP > 1) "
        "(validate_args turns it off at TP 1). flops = num_floating_point_operations(args, batch_size) with the "
        "default BSHD token counts (batch x seq tokens, batch x seq^2 for core attention). "
        "weight_and_optimizer_bytes = compute_weight_and_optimizer_memory(args, verbose=True), "
        "activation_bytes = compute_activation_memory(args, num_microbatches, verbose=True) (the sequence-parallel, "
        "selective-recompute formula; activation_bytes_without_sp is compute_activation_memory_without_sp); "
        "report_theoretical_memory shows which of the two Megatron itself would print, in MiB. "
        "Branches were recorded with sys.settrace over the functions' lines; attributes_read with a Namespace "
        "subclass logging attribute reads. compute_weight_and_optimizer_memory DOES handle MoE and expert "
        "parallelism at this commit: routed-expert parameters (num_experts x 3/2 x 2 x hidden x moe_ffn_hidden_size per "
        "MoE layer) are divided by expert_tensor_parallel_size x expert_model_parallel_size and charged at "
        "6 + 12/expert_data_parallel_size bytes (expert_data_parallel_size = world_size // (ETP x EP x PP)); "
        "attention and dense MLP by TP; norms and the router (hidden x num_experts + num_experts bias when "
        "add_bias_linear) are replicated. compute_activation_memory ignores MoE entirely: it reads ffn_hidden_size "
        "(not moe_ffn_hidden_size, num_experts or moe_router_topk), and ignores GQA, SwiGLU, expert parallelism "
        "and the recompute setting; its per-layer term is s*b*h*(18 + 4*ffn/h) bytes. add_bias_linear is left at its "
        "Megatron default True (the Llama/Mixtral recipes pass --disable-bias-linear); at this commit it only adds "
        "num_experts router-bias parameters per MoE layer. The functions mutate args (num_query_groups := "
        "num_attention_heads when group_query_attention is False), so every call got its own copy; args records the "
        "values passed in."
    )
    out = {
        "source": {"repo": "NVIDIA/Megatron-LM", "commit": commit, "commit_date": commit_date,
                   "files": [TRAINING, MEMORY]},
        "how": how,
        "helper_sources": dict(sorted(loader.origin.items())),
        "attention_ratio_convention": "causal: core attention counted as 0.5 of the s x s score matrix "
                                      "(standard_self_attn_core_term = 3 * 2 * query_projection_size / 2 * 2)",
        "defaults": dict(sorted(used_defaults.items())),
        "cases": cases,
    }
    json.dump(out, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
