"""PyTorch DDP baseline for tests/bench/vs_pytorch.sh: the model of docs/spec.md section 1 written
the way a PyTorch user writes it (nn.Linear layers, a loop over experts with index_add_, as in
Mixtral's reference code), trained by DistributedDataParallel over gloo with
find_unused_parameters=True (an expert may get no tokens) and torch.optim.AdamW.

usage: ddp_moe.py --ranks 2 --threads 1 --micro-batch 8 --steps 30 --warmup 5 [shape flags]
Prints one JSON line: tokens/s over the timed steps (all ranks' tokens), step ms, final loss.
"""
import argparse
import json
import math
import os
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F


class RMSNorm(nn.Module):
    def __init__(self, d, eps=1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads, self.dh = heads, d // heads
        self.wq = nn.Linear(d, d, bias=False)
        self.wk = nn.Linear(d, d, bias=False)
        self.wv = nn.Linear(d, d, bias=False)
        self.wo = nn.Linear(d, d, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, d = x.shape
        q, k, v = (w(x).view(b, t, self.heads, self.dh).transpose(1, 2)
                   for w in (self.wq, self.wk, self.wv))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        s = (q @ k.transpose(-2, -1)) / math.sqrt(self.dh)
        s = s.masked_fill(mask, float("-inf"))
        o = torch.softmax(s, dim=-1) @ v
        return self.wo(o.transpose(1, 2).reshape(b, t, d))


class SwiGLU(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.w1 = nn.Linear(d, hidden, bias=False)
        self.w3 = nn.Linear(d, hidden, bias=False)
        self.w2 = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class MoE(nn.Module):
    def __init__(self, d, experts, top_k, hidden, shared, alpha):
        super().__init__()
        self.router = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(SwiGLU(d, hidden) for _ in range(experts))
        self.shared = SwiGLU(d, shared * hidden) if shared > 0 else None
        self.top_k, self.alpha = top_k, alpha

    def forward(self, x):
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        p = torch.softmax(self.router(x).float(), dim=-1)
        gate, idx = p.topk(self.top_k, dim=-1)
        gate = gate / gate.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            tok, slot = (idx == e).nonzero(as_tuple=True)
            if tok.numel():
                out.index_add_(0, tok, expert(x[tok]) * gate[tok, slot, None])
        if self.shared is not None:
            out = out + self.shared(x)
        n = len(self.experts)
        f = torch.bincount(idx.flatten(), minlength=n).float() / idx.numel()
        aux = self.alpha * n * (f * p.mean(0)).sum()
        return out.view(shape), aux


class Block(nn.Module):
    def __init__(self, a, dense):
        super().__init__()
        self.attn_norm, self.ffn_norm = RMSNorm(a.model_dim), RMSNorm(a.model_dim)
        self.attn = Attention(a.model_dim, a.heads)
        self.ffn = (SwiGLU(a.model_dim, a.ffn_dim) if dense else
                    MoE(a.model_dim, a.experts, a.top_k, a.expert_ffn_dim, a.shared_experts, 0.01))
        self.dense = dense

    def forward(self, x, cos, sin, mask):
        h = x + self.attn(self.attn_norm(x), cos, sin, mask)
        if self.dense:
            return h + self.ffn(self.ffn_norm(h)), 0.0
        y, aux = self.ffn(self.ffn_norm(h))
        return h + y, aux


class Model(nn.Module):
    def __init__(self, a):
        super().__init__()
        self.embed = nn.Embedding(256, a.model_dim)
        dense = a.dense_layers if a.experts > 0 else a.layers
        self.blocks = nn.ModuleList(Block(a, l < dense) for l in range(a.layers))
        self.final_norm = RMSNorm(a.model_dim)
        for name, w in self.named_parameters():
            if w.dim() == 2:
                std = 0.02 / math.sqrt(2 * a.layers) if name.endswith(("wo.weight", "w2.weight")) else 0.02
                nn.init.normal_(w, 0.0, std)
        dh, t = a.model_dim // a.heads, a.seq_len
        inv = 10000.0 ** (-torch.arange(0, dh // 2).float() * 2 / dh)
        ang = torch.arange(t).float()[:, None] * inv[None, :]
        # Plain attributes, not buffers: DDP would broadcast buffers every step (gloo has no bool).
        self.cos = torch.cat((ang.cos(), ang.cos()), -1)
        self.sin = torch.cat((ang.sin(), ang.sin()), -1)
        self.mask = torch.ones(t, t, dtype=torch.bool).triu(1)

    def forward(self, tok, target):
        x = self.embed(tok)
        aux = 0.0
        for blk in self.blocks:
            x, a = blk(x, self.cos, self.sin, self.mask)
            aux = aux + a
        logits = self.final_norm(x) @ self.embed.weight.t()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1)) + aux


def worker(rank, a):
    torch.set_num_threads(a.threads)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(a.port))
    dist.init_process_group("gloo", rank=rank, world_size=a.ranks)
    torch.manual_seed(1234)
    model = Model(a)
    ddp = nn.parallel.DistributedDataParallel(model, find_unused_parameters=a.experts > 0)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-4, betas=(0.9, 0.95), weight_decay=0.1)
    gen = torch.Generator().manual_seed(rank)
    times, loss = [], 0.0
    for step in range(a.warmup + a.steps):
        seq = torch.randint(0, 256, (a.micro_batch, a.seq_len + 1), generator=gen)
        dist.barrier()
        t0 = time.perf_counter()
        l = ddp(seq[:, :-1], seq[:, 1:])
        opt.zero_grad(set_to_none=True)
        l.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss = l.item()
        dist.barrier()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    if rank == 0:
        ms = 1000 * sum(times) / len(times)
        tokens = a.ranks * a.micro_batch * a.seq_len
        print(json.dumps({"bench": "pytorch_ddp", "torch": torch.__version__, "ranks": a.ranks,
                          "threads": a.threads, "micro_batch": a.micro_batch,
                          "experts": a.experts, "step_ms": round(ms, 1),
                          "tokens_per_s": round(tokens / (ms / 1000)), "loss": round(loss, 4)}),
              flush=True)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    for name, default in (("ranks", 2), ("threads", 1), ("micro_batch", 8), ("steps", 30),
                          ("warmup", 5), ("port", 29517), ("layers", 4), ("model_dim", 256),
                          ("heads", 4), ("ffn_dim", 688), ("experts", 8), ("top_k", 2),
                          ("shared_experts", 1), ("dense_layers", 1), ("expert_ffn_dim", 256),
                          ("seq_len", 128)):
        p.add_argument("--" + name.replace("_", "-"), type=int, default=default)
    a = p.parse_args()
    mp.spawn(worker, args=(a,), nprocs=a.ranks, join=True)


if __name__ == "__main__":
    main()
