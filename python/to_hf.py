#!/usr/bin/env python3
"""The way back from a skymoe Megatron kit: a Megatron-Core checkpoint of the trained model ->
Hugging Face Mixtral-layout safetensors, which `skymoe import megatron --hf OUT --kit KIT` turns
into a skymoe model again (with the kit's gating logit normalization restored).

    python to_hf.py --load KIT/checkpoints --out trained-hf            # a torch_dist checkpoint
    python to_hf.py --state-dict model.pt --out trained-hf             # a saved {name: tensor} dict

A torch_dist checkpoint is read with Megatron-LM's tools/checkpoint/dist_checkpoint_io.py (from
$MEGATRON_LM), which gathers every tensor to its full shape whatever TP/PP/EP wrote it; this holds
the whole model in CPU memory. Megatron-LM's convert.py has no Hugging Face saver for GPT models,
hence this script.

The names are Megatron-Core's GPTModel state dict (megatron/core at the kit's commit), in any of
the forms a checkpoint carries: one tensor per layer (`decoder.layers.<i>.<name>`) or the layers
stacked on a first axis (`decoder.layers.<name>`, torch_dist for homogeneous layers), experts as
`mlp.experts.experts.linear_fc1.weight` with an expert axis (torch_dist), SequentialMLP's
`mlp.experts.local_experts.<e>.linear_fc1.weight` or TEGroupedMLP's `mlp.experts.linear_fc1.weight<e>`.
The inverse of Megatron-LM's tools/checkpoint/loader_mixtral_hf.py: linear_qkv holds, per query
group, the group's query heads then its key head then its value head; linear_fc1 is [w1; w3].
Only torch is needed (no safetensors package: the format is written here).
"""
import argparse
import json
import os
import re
import shutil
import struct
import sys
from collections import OrderedDict

import torch

KIT = os.path.dirname(os.path.abspath(__file__))
MAX_SHARD_BYTES = 5 * 10**9
SAFETENSORS_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16"}
TORCH_DTYPE = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


class ConversionError(ValueError):
    """The checkpoint does not hold the model the kit describes (names the tensor or field)."""


def load_kit(kit_dir):
    with open(os.path.join(kit_dir, "skymoe_kit.json"), encoding="utf-8") as f:
        return json.load(f)


def layer_tensors(state, num_layers):
    """{layer: {name within the layer: tensor}} and the other tensors, from either key form."""
    layers = {i: {} for i in range(num_layers)}
    rest = {}
    for key, t in state.items():
        m = re.match(r"^decoder\.layers\.(\d+)\.(.+)$", key)
        if m:
            i = int(m.group(1))
            if i >= num_layers:
                raise ConversionError(f"'{key}': layer {i}, the model has {num_layers}")
            layers[i][m.group(2)] = t
        elif key.startswith("decoder.layers."):
            if t.shape[0] != num_layers:
                raise ConversionError(f"'{key}' has shape {tuple(t.shape)}: expected the {num_layers} layers stacked on the first axis")
            for i in range(num_layers):
                layers[i][key[len("decoder.layers."):]] = t[i]
        else:
            rest[key] = t
    return layers, rest


def expert_weights(layer, num_experts, which):
    """[E, out, in] of linear_fc1 or linear_fc2 from the layer's tensors, in any of the expert forms."""
    stacked = layer.get(f"mlp.experts.experts.{which}.weight")
    if stacked is not None:
        if stacked.shape[0] != num_experts:
            raise ConversionError(f"mlp.experts.experts.{which}.weight has {stacked.shape[0]} experts, the model {num_experts}")
        return [stacked[e] for e in range(num_experts)]
    out = []
    for e in range(num_experts):
        t = layer.get(f"mlp.experts.local_experts.{e}.{which}.weight")
        if t is None:
            t = layer.get(f"mlp.experts.{which}.weight{e}")
        if t is None:
            raise ConversionError(f"expert {e}'s {which} is missing (looked for mlp.experts.experts.{which}.weight, mlp.experts.local_experts.{e}.{which}.weight, mlp.experts.{which}.weight{e})")
        out.append(t)
    return out


def pick(d, names, what):
    for n in names:
        if n in d:
            return d[n]
    raise ConversionError(f"{what}: none of {', '.join(names)} in the checkpoint")


def to_hf(state, cfg, vocab_size):
    """Mixtral names -> tensors, from a Megatron GPTModel state dict (bare keys) and the Mixtral config."""
    L, H = cfg["num_hidden_layers"], cfg["hidden_size"]
    heads, groups = cfg["num_attention_heads"], cfg.get("num_key_value_heads") or cfg["num_attention_heads"]
    E, F = cfg["num_local_experts"], cfg["intermediate_size"]
    D = H // heads
    qpg = heads // groups
    layers, rest = layer_tensors(state, L)
    out = OrderedDict()
    emb = pick(rest, ["embedding.word_embeddings.weight"], "the embedding")
    if emb.shape[0] < vocab_size:
        raise ConversionError(f"the embedding has {emb.shape[0]} rows, vocab_size is {vocab_size}")
    out["model.embed_tokens.weight"] = emb[:vocab_size]  # Megatron pads the vocabulary
    for i in range(L):
        ly, p = layers[i], f"model.layers.{i}."
        qkv = pick(ly, ["self_attention.linear_qkv.weight"], f"layer {i} linear_qkv")
        if tuple(qkv.shape) != ((heads + 2 * groups) * D, H):
            raise ConversionError(f"layer {i} linear_qkv has shape {tuple(qkv.shape)}, expected {((heads + 2 * groups) * D, H)}")
        g = qkv.reshape(groups, (qpg + 2) * D, H)
        out[p + "self_attn.q_proj.weight"] = g[:, : qpg * D].reshape(heads * D, H)
        out[p + "self_attn.k_proj.weight"] = g[:, qpg * D : (qpg + 1) * D].reshape(groups * D, H)
        out[p + "self_attn.v_proj.weight"] = g[:, (qpg + 1) * D :].reshape(groups * D, H)
        out[p + "self_attn.o_proj.weight"] = pick(ly, ["self_attention.linear_proj.weight"], f"layer {i} linear_proj")
        out[p + "input_layernorm.weight"] = pick(ly, ["self_attention.linear_qkv.layer_norm_weight", "input_layernorm.weight"], f"layer {i} input norm")
        out[p + "post_attention_layernorm.weight"] = pick(ly, ["pre_mlp_layernorm.weight"], f"layer {i} pre-MLP norm")
        out[p + "block_sparse_moe.gate.weight"] = pick(ly, ["mlp.router.weight"], f"layer {i} router")
        for e, (fc1, fc2) in enumerate(zip(expert_weights(ly, E, "linear_fc1"), expert_weights(ly, E, "linear_fc2"))):
            if tuple(fc1.shape) != (2 * F, H):
                raise ConversionError(f"layer {i} expert {e} linear_fc1 has shape {tuple(fc1.shape)}, expected {(2 * F, H)} ([w1; w3])")
            q = p + f"block_sparse_moe.experts.{e}."
            out[q + "w1.weight"] = fc1[:F]
            out[q + "w3.weight"] = fc1[F:]
            out[q + "w2.weight"] = fc2
    out["model.norm.weight"] = pick(rest, ["decoder.final_layernorm.weight", "decoder.final_norm.weight"], "the final norm")
    out["lm_head.weight"] = pick(rest, ["output_layer.weight"], "the output layer")[:vocab_size]
    return out


def tensor_bytes(t):
    t = t.contiguous().cpu()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors):
    header, offset = OrderedDict(), 0
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        header[name] = {"dtype": SAFETENSORS_DTYPE[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for t in tensors.values():
            f.write(tensor_bytes(t))


def write_checkpoint(out_dir, tensors):
    """model.safetensors, or 5 GB shards with model.safetensors.index.json (as Hugging Face)."""
    shards, cur, size = [], OrderedDict(), 0
    for name, t in tensors.items():
        n = t.numel() * t.element_size()
        if cur and size + n > MAX_SHARD_BYTES:
            shards.append(cur)
            cur, size = OrderedDict(), 0
        cur[name] = t
        size += n
    shards.append(cur)
    if len(shards) == 1:
        write_safetensors(os.path.join(out_dir, "model.safetensors"), shards[0])
        return
    weight_map, total = {}, 0
    for k, shard in enumerate(shards):
        file = f"model-{k + 1:05d}-of-{len(shards):05d}.safetensors"
        write_safetensors(os.path.join(out_dir, file), shard)
        for name, t in shard.items():
            weight_map[name] = file
            total += t.numel() * t.element_size()
    with open(os.path.join(out_dir, "model.safetensors.index.json"), "w", encoding="utf-8") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def load_megatron(load_dir):
    """Full tensors of a torch_dist checkpoint, through Megatron-LM's own reader."""
    megatron = os.environ.get("MEGATRON_LM")
    if not megatron or not os.path.isfile(os.path.join(megatron, "tools", "checkpoint", "dist_checkpoint_io.py")):
        sys.exit(f"to_hf.py: set MEGATRON_LM to a Megatron-LM checkout with tools/checkpoint/dist_checkpoint_io.py (got {megatron!r})")
    sys.path[:0] = [os.path.join(megatron, "tools", "checkpoint"), megatron]
    from dist_checkpoint_io import load_dist_checkpoint_full  # noqa: E402

    state, _common, _prefix, backend, iteration = load_dist_checkpoint_full(load_dir)
    print(f"to_hf.py: read {len(state)} tensors ({backend}, iteration {iteration}) from {load_dir}")
    return state


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--load", help="a Megatron torch_dist checkpoint directory (the run's --save; its latest iteration, or an iter_NNNNNNN directory)")
    src.add_argument("--state-dict", help="a torch.save'd {name: tensor} of Megatron GPTModel names")
    ap.add_argument("--out", required=True, help="the Hugging Face directory to write (must not exist)")
    ap.add_argument("--kit", default=KIT, help="the kit directory (default: the one this script is in)")
    ap.add_argument("--tokenizer", help="tokenizer directory to copy (default: the kit's hf/, when it has one)")
    a = ap.parse_args(argv)
    kit = load_kit(a.kit)
    cfg = kit["mixtral_config"]
    if os.path.exists(a.out):
        sys.exit(f"to_hf.py: {a.out} exists; give a new --out")
    state = torch.load(a.state_dict, map_location="cpu") if a.state_dict else load_megatron(a.load)
    tensors = to_hf(state, cfg, kit["model"]["vocab_size"])
    tmp = a.out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    write_checkpoint(tmp, tensors)
    dtype = tensors["model.embed_tokens.weight"].dtype
    with open(os.path.join(tmp, "config.json"), "w", encoding="utf-8") as f:
        json.dump({**cfg, "vocab_size": kit["model"]["vocab_size"], "torch_dtype": TORCH_DTYPE[dtype]}, f, indent=2)
    tok = a.tokenizer or (os.path.join(a.kit, kit["hf"]["dir"]) if kit.get("hf") else None)
    if tok:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model", "generation_config.json"):
            if os.path.exists(os.path.join(tok, name)):
                shutil.copyfile(os.path.join(tok, name), os.path.join(tmp, name))
    os.rename(tmp, a.out)
    print(f"to_hf.py: wrote {len(tensors)} tensors ({TORCH_DTYPE[dtype]}) to {a.out}; next: skymoe import megatron --hf {a.out} --kit {a.kit} --out MODEL")


if __name__ == "__main__":
    main()
