"""Reference timing for bench/train_bench.cpp --device cuda: the five 350M-class models (DenseRetNet,
RetNet, DenseMamba, Mamba, LLaMA; configs/*-350m.json and *-360m.json) written plainly in PyTorch
(the math of models/retnet.cpp, models/mamba_mixer.cpp and models/llama.cpp), one training step as
train/trainer.cpp takes it: bf16 autocast forward + backward, global-norm clipping at 1.0, fused AdamW (f32 weights
and state, betas 0.9/0.98, weight decay 0.01 without norms, biases, embeddings, A_log, D).

    python bench/ref/train_ref.py [--models densretnet,retnet,densemamba,mamba,llama] [--batch 4] [--seq-len 2048]
                                  [--steps 50] [--warmup 5] [--compile] [--check]

Prints the same columns as train_bench (MFU: 6 x GEMM weights per token against 790 TFLOP/s)
plus PyTorch's peak memory. The selective scan runs in chunks of 32 steps in log space (the
states of a chunk at once; |dt A| summed over 32 steps stays far below f32's exp range at these
initialisations), each Mamba layer under activation checkpointing: a plain-PyTorch
DenseMamba keeps every layer's [B, L, d_inner, N] states otherwise, beyond any GPU's memory.
--check compares the chunked scan with a step-by-step loop at a small size first.
"""
import argparse
import math
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from retention_ref import chunk_constants, retention_chunkwise  # noqa: E402


def rms_norm(x, weight, eps=1e-6):
    x32 = x.float()
    y = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return (y * weight.float()).to(x.dtype)


class RMSNorm(nn.Module):
    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        return rms_norm(x, self.weight, self.eps)


class GateMLP(nn.Module):
    """silu(W2 silu(W1 x)): the dense connection's select (hidden width in / 32)."""

    def __init__(self, d_in, d_out):
        super().__init__()
        self.w1 = nn.Linear(d_in, max(1, d_in // 32), bias=False)
        self.w2 = nn.Linear(max(1, d_in // 32), d_out, bias=False)

    def forward(self, x):
        return F.silu(self.w2(F.silu(self.w1(x))))


def rotary(x, heads):
    """Rotation of adjacent channel pairs per head, angles 1/10000^linspace(0, 1, dk/2)."""
    B, L, D = x.shape
    dk = D // heads
    angle = 1.0 / 10000 ** torch.linspace(0, 1, dk // 2, device=x.device)
    theta = torch.arange(L, device=x.device)[:, None] * angle[None, :]  # [L, dk/2]
    sin, cos = theta.sin().repeat_interleave(2, -1), theta.cos().repeat_interleave(2, -1)
    xh = x.view(B, L, heads, dk)
    pairs = xh.view(B, L, heads, dk // 2, 2)
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), -1).view(B, L, heads, dk)
    return (xh * cos[:, None].to(x.dtype) + rotated * sin[:, None].to(x.dtype)).view(B, L, D)


def retention_constants(c, length, h):
    """The chunkwise form's decay tables for config c, in the dtype the retention runs in."""
    return chunk_constants(c["n_heads"], length, min(c.get("chunk_size", 256), length),
                           torch.bfloat16 if torch.is_autocast_enabled() else h.dtype, h.device)


class DenseRetNetBlock(nn.Module):
    def __init__(self, layer, c):
        super().__init__()
        d, dqk, dv, self.heads, self.m = c["d_model"], c["qk_dim"], c["v_dim"], c["n_heads"], c["dense_m"]
        self.norm = RMSNorm(d)
        self.q_proj = nn.Linear(d, dqk, bias=False)
        self.k_proj = nn.Linear(d, dqk, bias=False)
        self.to_hidden = nn.Linear(d, 2 * dv, bias=False)
        self.out_proj = nn.Linear(dv, d, bias=False)
        self.dense = layer > 0 and self.m > 0
        if self.dense:
            self.gate_k, self.gate_v = GateMLP(d, dqk), GateMLP(d, dv)
            self.norm_k, self.norm_v = RMSNorm(dqk), RMSNorm(dv)
        self.group_norm = RMSNorm(dv // self.heads)
        self.chunk = c.get("chunk_size", 256)

    def forward(self, h, previous_k, previous_v, constants):
        x = self.norm(h)
        q = F.silu(self.q_proj(x))
        k = F.silu(self.k_proj(x)) * (self.q_proj.out_features // self.heads) ** -0.5
        v, g = F.silu(self.to_hidden(x)).chunk(2, -1)
        k_fused, v_fused = k, v
        if self.dense:  # k' = RMSNorm(k + sum_i silu(MLP_k(x)) k^{l-i}), likewise v
            gk, gv = self.gate_k(x), self.gate_v(x)
            k_fused = self.norm_k(k + sum(gk * p for p in previous_k))
            v_fused = self.norm_v(v + sum(gv * p for p in previous_v))
        B, L, _ = q.shape
        split = lambda t: t.view(B, L, self.heads, -1).transpose(1, 2)  # noqa: E731
        o = retention_chunkwise(split(rotary(q, self.heads)), split(rotary(k_fused, self.heads)),
                                split(v_fused), self.chunk, constants)
        o = self.group_norm(o.transpose(1, 2)).reshape(B, L, -1)
        return h + self.out_proj(o * g), k, v


class DenseRetNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["d_model"])
        self.layers = nn.ModuleList(DenseRetNetBlock(l, c) for l in range(c["n_layers"]))
        self.norm = RMSNorm(c["d_model"])
        self.lm_head = nn.Linear(c["d_model"], c["vocab_size"], bias=False)

    def forward(self, ids):
        h = self.embed_tokens(ids)
        c = self.c
        constants = retention_constants(c, ids.shape[1], h)
        ks, vs = [], []
        for layer in self.layers:
            h, k, v = layer(h, ks[-c["dense_m"]:][::-1], vs[-c["dense_m"]:][::-1], constants)
            ks.append(k)
            vs.append(v)
        return self.lm_head(self.norm(h))


class SwiGLU(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.gate_proj = nn.Linear(d, hidden, bias=False)
        self.up_proj = nn.Linear(d, hidden, bias=False)
        self.down_proj = nn.Linear(hidden, d, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class RetNetBlock(nn.Module):
    """RetNet Eq. 8-9: Y = MSR(LN(X)) + X, X' = FFN(LN(Y)) + Y, MSR gated by swish(X W_G)."""

    def __init__(self, c):
        super().__init__()
        d, dqk, dv, self.heads = c["d_model"], c["qk_dim"], c["v_dim"], c["n_heads"]
        self.retention_norm, self.ffn_norm = RMSNorm(d), RMSNorm(d)
        self.q_proj, self.k_proj = nn.Linear(d, dqk, bias=False), nn.Linear(d, dqk, bias=False)
        self.v_proj, self.g_proj = nn.Linear(d, dv, bias=False), nn.Linear(d, dv, bias=False)
        self.out_proj = nn.Linear(dv, d, bias=False)
        self.ffn = SwiGLU(d, c["ffn_dim"])
        self.group_norm = RMSNorm(dv // self.heads)
        self.chunk = c.get("chunk_size", 256)

    def forward(self, h, constants):
        x = self.retention_norm(h)
        B, L, _ = x.shape
        split = lambda t: t.view(B, L, self.heads, -1).transpose(1, 2)  # noqa: E731
        q, k = self.q_proj(x), self.k_proj(x) * (self.q_proj.out_features // self.heads) ** -0.5
        o = retention_chunkwise(split(rotary(q, self.heads)), split(rotary(k, self.heads)),
                                split(self.v_proj(x)), self.chunk, constants)
        o = self.group_norm(o.transpose(1, 2)).reshape(B, L, -1)
        h = h + self.out_proj(F.silu(self.g_proj(x)) * o)
        return h + self.ffn(self.ffn_norm(h))


class RetNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["d_model"])
        self.layers = nn.ModuleList(RetNetBlock(c) for _ in range(c["n_layers"]))
        self.norm = RMSNorm(c["d_model"])
        self.lm_head = nn.Linear(c["d_model"], c["vocab_size"], bias=False)

    def forward(self, ids):
        h = self.embed_tokens(ids)
        constants = retention_constants(self.c, ids.shape[1], h)
        for layer in self.layers:
            h = layer(h, constants)
        return self.lm_head(self.norm(h))


def rotate_half(x, theta):
    """LLaMA's rotary embedding (pairs i and i + d/2), angles theta^(-2i/d)."""
    T, d = x.shape[-2], x.shape[-1]
    angle = 1.0 / theta ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d)
    phase = torch.arange(T, device=x.device, dtype=torch.float32)[:, None] * angle[None, :]
    cos, sin = phase.cos().repeat(1, 2).to(x.dtype), phase.sin().repeat(1, 2).to(x.dtype)
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return x * cos + torch.cat((-x2, x1), -1) * sin


class LlamaBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, self.heads, self.theta = c["d_model"], c["n_heads"], c.get("rope_theta", 10000.0)
        self.attention_norm, self.ffn_norm = RMSNorm(d), RMSNorm(d)
        self.q_proj, self.k_proj = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.v_proj, self.o_proj = nn.Linear(d, d, bias=False), nn.Linear(d, d, bias=False)
        self.ffn = SwiGLU(d, c["ffn_dim"])

    def forward(self, h):
        x = self.attention_norm(h)
        B, L, D = x.shape
        split = lambda t: t.view(B, L, self.heads, -1).transpose(1, 2)  # noqa: E731
        q = rotate_half(split(self.q_proj(x)), self.theta)
        k = rotate_half(split(self.k_proj(x)), self.theta)
        o = F.scaled_dot_product_attention(q, k, split(self.v_proj(x)), is_causal=True)
        h = h + self.o_proj(o.transpose(1, 2).reshape(B, L, D))
        return h + self.ffn(self.ffn_norm(h))


class Llama(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["d_model"])
        self.layers = nn.ModuleList(LlamaBlock(c) for _ in range(c["n_layers"]))
        self.norm = RMSNorm(c["d_model"])
        self.lm_head = nn.Linear(c["d_model"], c["vocab_size"], bias=False)

    def forward(self, ids):
        h = self.embed_tokens(ids)
        for layer in self.layers:
            h = layer(h)
        return self.lm_head(self.norm(h))


def scan_readouts(x, dt, A, Bm, Cs, chunk=32):
    """h_t = exp(dt_t A) h_{t-1} + dt_t B_t x_t per channel; returns [C_t . h_t for each C in Cs].
    x, dt: [b, L, d]; A: [d, n]; Bm and each C: [b, L, n]. In f32, a chunk of states at a time:
    within a chunk h_t = e^{S_t} (h_0 + sum_{s<=t} e^{-S_s} u_s), S the running sum of dt A."""
    b, L, d = x.shape
    h = x.new_zeros(b, d, A.shape[1], dtype=torch.float32)
    outs = [[] for _ in Cs]
    for s in range(0, L, chunk):
        e = min(L, s + chunk)
        S = torch.cumsum(dt[:, s:e, :, None] * A, 1)  # [b, c, d, n]
        u = (dt[:, s:e] * x[:, s:e])[..., None] * Bm[:, s:e, None, :]
        hs = torch.exp(S) * (h[:, None] + torch.cumsum(torch.exp(-S) * u, 1))
        for C, out in zip(Cs, outs):
            out.append(torch.einsum("bcdn,bcn->bcd", hs, C[:, s:e]))
        h = hs[:, -1]
    return [torch.cat(o, 1) for o in outs]


def scan_loop(x, dt, A, Bm, C):
    h = x.new_zeros(x.shape[0], x.shape[2], A.shape[1])
    ys = []
    for t in range(x.shape[1]):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * x[:, t])[..., None] * Bm[:, t, None, :]
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, t]))
    return torch.stack(ys, 1)


class MambaMixer(nn.Module):
    def __init__(self, layer, c):
        super().__init__()
        d, N = c["d_model"], c.get("d_state", 16)
        di, R = c.get("expand", 2) * d, c.get("dt_rank", 0) or math.ceil(d / 16)
        self.di, self.N, self.R = di, N, R
        self.in_proj = nn.Linear(d, 2 * di, bias=False)
        self.conv1d = nn.Conv1d(di, di, c.get("d_conv", 4), groups=di, padding=c.get("d_conv", 4) - 1)
        self.x_proj = nn.Linear(di, R + 2 * N, bias=False)
        self.dt_proj = nn.Linear(R, di, bias=True)
        dt = torch.exp(torch.rand(di) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, N + 1, dtype=torch.float32)).repeat(di, 1))
        self.D = nn.Parameter(torch.ones(di))
        self.out_proj = nn.Linear(di, d, bias=False)
        self.m = min(layer, c.get("dense_m", 0)) if c["arch"] == "densemamba" else 0
        if self.m:
            self.gate = GateMLP(d, di)

    def forward(self, u_in, previous):
        """previous: the scan sources (x, dt, A, B) of layers l-1, l-2, ... Returns (out, source)."""
        L = u_in.shape[1]
        x, z = self.in_proj(u_in).chunk(2, -1)
        x = F.silu(self.conv1d(x.transpose(1, 2))[..., :L]).transpose(1, 2)
        dt_raw, Bm, C = self.x_proj(x).split([self.R, self.N, self.N], -1)
        dt = F.softplus(self.dt_proj(dt_raw).float())
        A = -torch.exp(self.A_log.float())
        source = (x.float(), dt, A, Bm.float())
        # y = C (h + sum_i gate * h^{l-i}) + D x: the read-outs of the shallower layers' states
        # by this layer's C (each of their scans re-run), as models/mamba_mixer.cpp computes them.
        Ch = scan_readouts(*source, [C.float()])[0]
        if self.m:
            g = self.gate(u_in).float()
            for p in previous[: self.m]:
                Ch = Ch + g * scan_readouts(*p, [C.float()])[0]
        y = (Ch + x.float() * self.D) * F.silu(z.float())
        return self.out_proj(y.to(x.dtype)), source


class DenseMamba(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["d_model"])
        self.norms = nn.ModuleList(RMSNorm(c["d_model"]) for _ in range(c["n_layers"]))
        self.mixers = nn.ModuleList(MambaMixer(l, c) for l in range(c["n_layers"]))
        self.norm = RMSNorm(c["d_model"])
        self.m = c.get("dense_m", 0) if c["arch"] == "densemamba" else 0

    def forward(self, ids):
        h = self.embed_tokens(ids)
        sources = []
        for norm, mixer in zip(self.norms, self.mixers):
            prev = sources[::-1]
            out, source = checkpoint(lambda hh, p=prev, n=norm, m=mixer: m(n(hh), p), h,
                                     use_reentrant=False)
            h = h + out
            sources = (sources + [source])[-self.m:] if self.m else []
        return self.norm(h) @ self.embed_tokens.weight.t()  # tied head, as mamba_ssm


def gemm_weights(model):
    params = dict(model.named_parameters())
    separate_head = any(n.startswith("lm_head.") for n in params)
    return sum(p.numel() for n, p in params.items() if not (separate_head and n.startswith("embed_tokens.")))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="densretnet,retnet,densemamba,mamba,llama")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--peak-tflops", type=float, default=790)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    device = "cuda"
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "configs")
    import json

    if args.check:
        g = torch.Generator().manual_seed(0)
        x, dt = torch.randn(2, 40, 8, generator=g), torch.rand(2, 40, 8, generator=g) * 0.1
        A, Bm, C = -torch.rand(8, 4, generator=g) * 4, torch.randn(2, 40, 4, generator=g), torch.randn(2, 40, 4, generator=g)
        err = (scan_readouts(x, dt, A, Bm, [C])[0] - scan_loop(x, dt, A, Bm, C)).abs().max().item()
        print(f"chunked scan vs loop: max abs error {err:.2e}")

    print(f"training step on cuda (bf16 autocast), batch {args.batch} x {args.seq_len} tokens, "
          f"{args.steps} steps after {args.warmup} warm-up")
    print(f"{'model':<36} {'params':>10} {'tokens/s':>12} {'ms/step':>10} {'MFU':>7} {'peak GiB':>10}")
    files = {"densretnet": "densretnet-350m.json", "retnet": "retnet-350m.json",
             "densemamba": "densemamba-360m.json", "mamba": "mamba-360m.json", "llama": "llama-350m.json"}
    classes = {"densretnet": DenseRetNet, "retnet": RetNet, "densemamba": DenseMamba, "mamba": DenseMamba,
               "llama": Llama}
    for name in args.models.split(","):
        c = json.load(open(os.path.join(root, files[name])))
        model = classes[name](c).to(device)
        decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and "embed" not in n]
        no_decay = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and "embed" not in n)]
        opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                 {"params": no_decay, "weight_decay": 0.0}],
                                lr=1e-4, betas=(0.9, 0.98), fused=True)
        forward = torch.compile(model) if args.compile else model

        def step():
            ids = torch.randint(0, c["vocab_size"], (args.batch, args.seq_len + 1), device=device)
            with torch.autocast("cuda", dtype=torch.bfloat16):
                logits = forward(ids[:, :-1])
            loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return loss

        for _ in range(args.warmup):
            step()
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        for _ in range(args.steps):
            step()
        torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        tps = args.batch * args.seq_len * args.steps / seconds
        mfu = tps * 6 * gemm_weights(model) / (args.peak_tflops * 1e12)
        params = sum(p.numel() for p in model.parameters())
        print(f"{'pytorch ' + name + (' (compiled)' if args.compile else ''):<36} {params / 1e6:>9.1f}M "
              f"{tps:>12.0f} {1e3 * seconds / args.steps:>10.1f} {100 * mfu:>6.1f}% "
              f"{torch.cuda.max_memory_allocated() / 2**30:>10.2f}", flush=True)
        del model, opt


if __name__ == "__main__":
    main()
