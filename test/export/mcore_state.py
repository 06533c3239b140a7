#!/usr/bin/env python3
"""A Megatron-Core GPTModel state dict of a Hugging Face Mixtral checkpoint, for the to_hf.py test
(test/export/megatron-to-hf.test.ts):

    python3 mcore_state.py HF_DIR FORM OUT.pt [MEGATRON_LM]

FORM is the key form a checkpoint can carry (to_hf.py reads all three):
- stacked:   torch_dist of homogeneous layers (TransformerBlock.sharded_state_dict without
             non_homogeneous_layers): decoder.layers.<name> with the layers on the first axis, the
             experts as mlp.experts.experts.linear_fc1.weight [L, E, 2F, H] (SequentialMLP's and
             TEGroupedMLP's sharded form), Transformer Engine's norm inside linear_qkv;
- per-layer: decoder.layers.<i>.<name>, SequentialMLP's local_experts.<e>, the local implementation's input_layernorm;
- grouped:   decoder.layers.<i>.<name>, TEGroupedMLP's linear_fc1.weight<e>.
The vocabulary is padded to a multiple of 128 by repeating the last row, as convert.py's saver does.

The layer tensors come from the layout loader_mixtral_hf.py writes (linear_qkv = per query group its
query heads, then its key head, then its value head; linear_fc1 = [w1; w3]). With MEGATRON_LM
given, Megatron-LM's own loader_mixtral_hf.set_layer_state also fills stand-in modules from the same
weights and every tensor must equal this script's: the mapping is Megatron's, not a guess of it.
"""
import json
import os
import struct
import sys
import types

import torch

DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        dt = DTYPES[e["dtype"]]
        raw = torch.frombuffer(bytearray(data[b:end]), dtype=torch.int16 if dt == torch.bfloat16 else dt)
        out[name] = (raw.view(torch.bfloat16) if dt == torch.bfloat16 else raw).reshape(e["shape"]).clone()
    return out


def megatron_layer(hf, cfg, i):
    """Layer i's Megatron tensors from the Mixtral names, as loader_mixtral_hf.py lays them out."""
    H, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    G = cfg.get("num_key_value_heads") or heads
    D, qpg = H // heads, heads // G
    p = f"model.layers.{i}."
    q, k, v = (hf[p + f"self_attn.{n}_proj.weight"] for n in "qkv")
    out = {
        "qkv": torch.cat([q.reshape(G, qpg * D, -1), k.reshape(G, D, -1), v.reshape(G, D, -1)], dim=1).reshape(-1, H),
        "proj": hf[p + "self_attn.o_proj.weight"],
        "input_norm": hf[p + "input_layernorm.weight"],
        "pre_mlp_norm": hf[p + "post_attention_layernorm.weight"],
        "router": hf[p + "block_sparse_moe.gate.weight"],
        "fc1": [torch.cat([hf[p + f"block_sparse_moe.experts.{e}.w1.weight"], hf[p + f"block_sparse_moe.experts.{e}.w3.weight"]], dim=0) for e in range(cfg["num_local_experts"])],
        "fc2": [hf[p + f"block_sparse_moe.experts.{e}.w2.weight"] for e in range(cfg["num_local_experts"])],
    }
    return out


def check_against_megatron(hf, cfg, layers, megatron):
    """Fill stand-in modules with Megatron-LM's loader_mixtral_hf.set_layer_state; compare."""
    sys.path[:0] = [megatron, os.path.join(megatron, "tools", "checkpoint")]
    for name in ("transformers", "tqdm", "psutil"):  # imported by the loader module, unused by set_layer_state
        try:
            __import__(name)
        except ImportError:
            m = types.ModuleType(name)
            m.tqdm = lambda x, *a, **k: x
            sys.modules[name] = m
    import loader_mixtral_hf as loader

    H, heads = cfg["hidden_size"], cfg["num_attention_heads"]
    G = cfg.get("num_key_value_heads") or heads
    E = cfg["num_local_experts"]

    def param(shape):
        return types.SimpleNamespace(weight=types.SimpleNamespace(data=torch.zeros(shape, dtype=hf["model.embed_tokens.weight"].dtype)))

    args = types.SimpleNamespace(tensor_model_parallel_size=1, num_attention_heads=heads, num_query_groups=G, group_query_attention=G != heads, kv_channels=H // heads, hidden_size=H, num_experts=E)
    hf_model = types.SimpleNamespace(model=types.SimpleNamespace(layers=[]))
    model = types.SimpleNamespace(decoder=types.SimpleNamespace(layers=[]))
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        w = lambda n: types.SimpleNamespace(weight=hf[p + n])  # noqa: E731
        hf_model.model.layers.append(types.SimpleNamespace(
            self_attn=types.SimpleNamespace(q_proj=w("self_attn.q_proj.weight"), k_proj=w("self_attn.k_proj.weight"), v_proj=w("self_attn.v_proj.weight"), o_proj=w("self_attn.o_proj.weight")),
            block_sparse_moe=types.SimpleNamespace(gate=w("block_sparse_moe.gate.weight"), experts=[types.SimpleNamespace(w1=w(f"block_sparse_moe.experts.{e}.w1.weight"), w2=w(f"block_sparse_moe.experts.{e}.w2.weight"), w3=w(f"block_sparse_moe.experts.{e}.w3.weight")) for e in range(E)]),
            input_layernorm=w("input_layernorm.weight"), post_attention_layernorm=w("post_attention_layernorm.weight")))
        lt = layers[i]
        qkv = param(lt["qkv"].shape)
        qkv.layer_norm_weight = types.SimpleNamespace(data=torch.zeros_like(lt["input_norm"]))
        model.decoder.layers.append(types.SimpleNamespace(
            self_attention=types.SimpleNamespace(linear_qkv=qkv, linear_proj=param(lt["proj"].shape)),
            pre_mlp_layernorm=param(lt["pre_mlp_norm"].shape),
            mlp=types.SimpleNamespace(router=param(lt["router"].shape), experts=types.SimpleNamespace(local_experts=[types.SimpleNamespace(linear_fc1=param(lt["fc1"][e].shape), linear_fc2=param(lt["fc2"][e].shape)) for e in range(E)]))))
        loader.set_layer_state(args, model, hf_model, i)
        ml = model.decoder.layers[i]
        got = {
            "qkv": ml.self_attention.linear_qkv.weight.data, "proj": ml.self_attention.linear_proj.weight.data,
            "input_norm": ml.self_attention.linear_qkv.layer_norm_weight.data, "pre_mlp_norm": ml.pre_mlp_layernorm.weight.data,
            "router": ml.mlp.router.weight.data,
        }
        for k, t in got.items():
            assert torch.equal(t, lt[k]), f"layer {i} {k}: this script's layout differs from Megatron-LM's loader_mixtral_hf"
        for e in range(E):
            assert torch.equal(ml.mlp.experts.local_experts[e].linear_fc1.weight.data, lt["fc1"][e]), f"layer {i} expert {e} fc1"
            assert torch.equal(ml.mlp.experts.local_experts[e].linear_fc2.weight.data, lt["fc2"][e]), f"layer {i} expert {e} fc2"
    print("mcore_state.py: every layer tensor equals what Megatron-LM's loader_mixtral_hf.set_layer_state writes")


def main():
    hf_dir, form, out = sys.argv[1:4]
    megatron = sys.argv[4] if len(sys.argv) > 4 else None
    cfg = json.load(open(os.path.join(hf_dir, "config.json"), encoding="utf-8"))
    hf = read_safetensors(os.path.join(hf_dir, "model.safetensors"))
    L, E = cfg["num_hidden_layers"], cfg["num_local_experts"]
    layers = [megatron_layer(hf, cfg, i) for i in range(L)]
    if megatron:
        check_against_megatron(hf, cfg, layers, megatron)

    def padded(t):
        rows = -(-t.shape[0] // 128) * 128
        return torch.cat([t, t[-1:].expand(rows - t.shape[0], -1)]) if rows > t.shape[0] else t

    sd = {
        "embedding.word_embeddings.weight": padded(hf["model.embed_tokens.weight"]),
        "decoder.final_layernorm.weight": hf["model.norm.weight"],
        "output_layer.weight": padded(hf["lm_head.weight"]),
    }
    if form == "stacked":
        stack = lambda k: torch.stack([layers[i][k] for i in range(L)])  # noqa: E731
        sd.update({
            "decoder.layers.self_attention.linear_qkv.weight": stack("qkv"),
            "decoder.layers.self_attention.linear_qkv.layer_norm_weight": stack("input_norm"),
            "decoder.layers.self_attention.linear_proj.weight": stack("proj"),
            "decoder.layers.pre_mlp_layernorm.weight": stack("pre_mlp_norm"),
            "decoder.layers.mlp.router.weight": stack("router"),
            "decoder.layers.mlp.experts.experts.linear_fc1.weight": torch.stack([torch.stack(layers[i]["fc1"]) for i in range(L)]),
            "decoder.layers.mlp.experts.experts.linear_fc2.weight": torch.stack([torch.stack(layers[i]["fc2"]) for i in range(L)]),
        })
    else:
        for i, lt in enumerate(layers):
            p = f"decoder.layers.{i}."
            sd[p + "self_attention.linear_qkv.weight"] = lt["qkv"]
            sd[p + "self_attention.linear_proj.weight"] = lt["proj"]
            sd[p + "pre_mlp_layernorm.weight"] = lt["pre_mlp_norm"]
            sd[p + "mlp.router.weight"] = lt["router"]
            if form == "per-layer":
                sd[p + "input_layernorm.weight"] = lt["input_norm"]
                for e in range(E):
                    sd[p + f"mlp.experts.local_experts.{e}.linear_fc1.weight"] = lt["fc1"][e]
                    sd[p + f"mlp.experts.local_experts.{e}.linear_fc2.weight"] = lt["fc2"][e]
            elif form == "grouped":
                sd[p + "self_attention.linear_qkv.layer_norm_weight"] = lt["input_norm"]
                for e in range(E):
                    sd[p + f"mlp.experts.linear_fc1.weight{e}"] = lt["fc1"][e]
                    sd[p + f"mlp.experts.linear_fc2.weight{e}"] = lt["fc2"][e]
            else:
                sys.exit(f"unknown form {form}")
    torch.save({k: v.contiguous() for k, v in sd.items()}, out)


if __name__ == "__main__":
    main()
