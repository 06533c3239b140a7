# The training benchmark's PyTorch peer (spawned by bench/train.ts; never used by skymoe itself).
#
# The `small` Skywork-MoE model written the way PyTorch users write a Mixtral-style model: RMSNorm,
# RoPE (rotate-half), causal attention (F.scaled_dot_product_attention when this torch has it, else
# the explicit masked softmax of torch < 2.0), a router Linear with gating logit normalization,
# softmax, top-k and renormalization, a per-expert loop with index_select / index_add_ over
# SwiGLU experts made of nn.Linear, lm_head, cross-entropy plus the Skywork aux loss
# (sum_j (1/E - mean_i p_ij)^2, alpha 0.01 per layer), and torch.optim.AdamW. fp32, dropless.
#
# Threads: the caller sets OMP_NUM_THREADS / OPENBLAS_NUM_THREADS / MKL_NUM_THREADS, and
# torch.set_num_threads is called here too. Prints one JSON line with the step times in seconds.
import argparse
import json
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rope_tables(seq, dim, theta):
    inv = theta ** (-torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    ang = torch.outer(torch.arange(seq, dtype=torch.float32), inv)
    return ang.cos(), ang.sin()


def apply_rope(x, cos, sin):  # x (B, H, T, D)
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


class Attention(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.heads = c.heads
        self.q_proj = nn.Linear(c.hidden, c.hidden, bias=False)
        self.k_proj = nn.Linear(c.hidden, c.hidden, bias=False)
        self.v_proj = nn.Linear(c.hidden, c.hidden, bias=False)
        self.o_proj = nn.Linear(c.hidden, c.hidden, bias=False)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        H, D = self.heads, C // self.heads
        q = apply_rope(self.q_proj(x).view(B, T, H, D).transpose(1, 2), cos, sin)
        k = apply_rope(self.k_proj(x).view(B, T, H, D).transpose(1, 2), cos, sin)
        v = self.v_proj(x).view(B, T, H, D).transpose(1, 2)
        if hasattr(F, 'scaled_dot_product_attention'):
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(D))
            mask = torch.ones(T, T, dtype=torch.bool).tril()
            att = att.masked_fill(~mask, float('-inf')).softmax(dim=-1)
            y = att @ v
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


class Expert(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.w1 = nn.Linear(c.hidden, c.ffn, bias=False)
        self.w3 = nn.Linear(c.hidden, c.ffn, bias=False)
        self.w2 = nn.Linear(c.ffn, c.hidden, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MoE(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.top_k = c.top_k
        self.gate = nn.Linear(c.hidden, c.experts, bias=False)
        self.experts = nn.ModuleList(Expert(c) for _ in range(c.experts))

    def forward(self, x):  # x (N, C)
        logits = self.gate(x)
        logits = logits / logits.std(dim=-1, keepdim=True)  # gating logit normalization, lambda 1
        p = logits.softmax(dim=-1)
        w, idx = p.topk(self.top_k, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.where(idx == e)
            if tok.numel() == 0:
                continue
            out = expert(x.index_select(0, tok)) * w[tok, slot].unsqueeze(-1)
            y.index_add_(0, tok, out)
        aux = ((1.0 / len(self.experts) - p.mean(dim=0)) ** 2).sum()
        return y, aux


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.input_layernorm = RMSNorm(c.hidden, c.eps)
        self.self_attn = Attention(c)
        self.post_attention_layernorm = RMSNorm(c.hidden, c.eps)
        self.block_sparse_moe = MoE(c)

    def forward(self, x, cos, sin):
        B, T, C = x.shape
        h = x + self.self_attn(self.input_layernorm(x), cos, sin)
        y, aux = self.block_sparse_moe(self.post_attention_layernorm(h).view(B * T, C))
        return h + y.view(B, T, C), aux


class Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c.vocab, c.hidden)
        self.layers = nn.ModuleList(Block(c) for _ in range(c.layers))
        self.norm = RMSNorm(c.hidden, c.eps)
        self.lm_head = nn.Linear(c.hidden, c.vocab, bias=False)
        cos, sin = rope_tables(c.seq, c.hidden // c.heads, 10000.0)
        self.register_buffer('cos', cos, persistent=False)
        self.register_buffer('sin', sin, persistent=False)
        for p in self.parameters():
            if p.dim() >= 2:
                nn.init.normal_(p, std=0.02)

    def forward(self, ids, targets, aux_alpha):
        x = self.embed_tokens(ids)
        aux_total = 0.0
        for layer in self.layers:
            x, aux = layer(x, self.cos, self.sin)
            aux_total = aux_total + aux_alpha * aux
        logits = self.lm_head(self.norm(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1)) + aux_total


def main():
    ap = argparse.ArgumentParser()
    for name, default in [('threads', 2), ('batch', 8), ('seq', 512), ('vocab', 8192), ('hidden', 512), ('layers', 8),
                          ('heads', 8), ('experts', 8), ('top_k', 2), ('ffn', 1024), ('warmup', 2), ('steps', 5)]:
        ap.add_argument(f'--{name.replace("_", "-")}', dest=name, type=int, default=default)
    ap.add_argument('--eps', type=float, default=1e-6)
    c = ap.parse_args()
    torch.set_num_threads(c.threads)
    torch.manual_seed(0)
    model = Model(c)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{'params': decay, 'weight_decay': 0.1}, {'params': no_decay, 'weight_decay': 0.0}],
                            lr=3e-4, betas=(0.9, 0.95), eps=1e-8)
    gen = torch.Generator().manual_seed(1)
    times = []
    for step in range(c.warmup + c.steps):
        tokens = torch.randint(0, c.vocab, (c.batch, c.seq + 1), generator=gen)
        t0 = time.perf_counter()
        loss = model(tokens[:, :-1], tokens[:, 1:], 0.01)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step >= c.warmup:
            times.append(time.perf_counter() - t0)
    print(json.dumps({'torch': torch.__version__, 'threads': torch.get_num_threads(), 'step_s': times, 'loss': loss.item()}))


if __name__ == '__main__':
    main()
