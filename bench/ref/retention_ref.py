"""Reference timing for bench/retention_bench.cpp: the same chunkwise retention math (with the
decay-row normalisation) written plainly in PyTorch, forward + backward by PyTorch's autograd.

    python bench/ref/retention_ref.py [--device cuda] [--dtype bf16] [--chunk 64,128,256,512]
                                      [--batch 8] [--length 2048] [--heads 2] [--dk 384] [--dv 1536]

Prints the same columns as retention_bench (floors: 790 TFLOP/s, 3.0 TB/s) plus PyTorch's peak
memory. A check against the parallel form runs first at a small size.
"""
import argparse
import math
import time

import torch


def gammas(heads):
    return [1.0 - 2.0 ** (-5 - h) for h in range(heads)]


def chunk_constants(heads, length, chunk, dtype, device):
    """M_j (row-scaled intra mask), Λ_j (row-scaled query decay), Γ, gamma^C, as in
    ops/retention_chunkwise.cpp; computed in float64."""
    chunks = (length + chunk - 1) // chunk
    log_g = torch.tensor([math.log(g) for g in gammas(heads)], dtype=torch.float64)[:, None]
    n = torch.arange(chunks * chunk, dtype=torch.float64)
    row_scale = (-torch.expm1((n + 1) * log_g) / (1 - log_g.exp())).rsqrt()  # [H, Lp]
    i = torch.arange(chunk, dtype=torch.float64)
    diff = i[:, None] - i[None, :]
    intra = torch.where(diff >= 0, torch.exp(diff.clamp(min=0) * log_g[:, :, None]), 0.0)
    intra = row_scale.view(heads, chunks, chunk, 1) * intra[:, None]  # [H, J, C, C]
    q_decay = row_scale.view(heads, chunks, chunk) * torch.exp((i + 1) * log_g)[:, None]
    k_decay = torch.exp((chunk - 1 - i) * log_g)  # [H, C]
    chunk_decay = torch.exp(chunk * log_g)  # [H, 1]
    to = dict(dtype=dtype, device=device)
    return (intra.to(**to), q_decay[..., None].to(**to), k_decay[:, None, :, None].to(**to),
            chunk_decay.view(heads, 1, 1).to(**to))


def retention_chunkwise(q, k, v, chunk, constants):
    B, H, L, dk = q.shape
    dv = v.shape[-1]
    C = min(chunk, L)
    J = (L + C - 1) // C
    pad = J * C - L
    if pad:
        q, k, v = (torch.nn.functional.pad(x, (0, 0, 0, pad)) for x in (q, k, v))
    intra, q_decay, k_decay, chunk_decay = constants
    q5, k5, v5 = (x.reshape(B, H, J, C, -1) for x in (q, k, v))
    scores = (q5 @ k5.transpose(-1, -2)) * intra
    updates = (k5 * k_decay).transpose(-1, -2) @ v5  # [B, H, J, dk, dv]
    states, state = [], torch.zeros(B, H, dk, dv, dtype=q.dtype, device=q.device)
    for j in range(J):  # P_j: the state before chunk j
        states.append(state)
        state = chunk_decay * state + updates[:, :, j]
    states = torch.stack(states, dim=2)
    out = scores @ v5 + (q5 * q_decay) @ states
    return out.reshape(B, H, J * C, dv)[:, :, :L]


def retention_parallel(q, k, v):
    H, L = q.shape[1], q.shape[2]
    log_g = torch.tensor([math.log(g) for g in gammas(H)], dtype=torch.float64)[:, None, None]
    n = torch.arange(L, dtype=torch.float64)
    diff = n[:, None] - n[None, :]
    mask = torch.where(diff >= 0, torch.exp(diff.clamp(min=0) * log_g), 0.0)
    mask = mask / mask.sum(-1, keepdim=True).sqrt()
    return ((q @ k.transpose(-1, -2)) * mask.to(q)) @ v


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--chunk", default="64,128,256,512")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--heads", type=int, default=2)
    p.add_argument("--dk", type=int, default=384)
    p.add_argument("--dv", type=int, default=1536)
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    device = torch.device(a.device)
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[a.dtype]
    torch.backends.cuda.matmul.allow_tf32 = False

    # The chunkwise code above equals the parallel form (float64, ragged last chunk).
    x = [torch.randn(2, 3, 37, d, dtype=torch.float64) for d in (8, 8, 5)]
    err = (retention_chunkwise(*x, 16, chunk_constants(3, 37, 16, torch.float64, "cpu"))
           - retention_parallel(*x)).abs().max().item()
    assert err < 1e-10, err

    B, H, L, dk, dv = a.batch, a.heads, a.length, a.dk, a.dv
    elem = torch.finfo(dtype).bits // 8
    bytes_floor = B * H * L * (6 * dk + 5 * dv) * elem
    print(f"PyTorch chunkwise retention, forward + backward: batch {B}, length {L}, heads {H}, "
          f"dk {dk}, dv {dv}, {a.dtype} on {device}")
    print(f"{'chunk':>6} {'fwd ms':>10} {'fwd+bwd ms':>10} {'floor ms':>10} {'of floor':>10} "
          f"{'TFLOP/s':>12} {'GB/s':>10}  peak GiB")
    g = torch.Generator(device=device).manual_seed(7)
    q, k, v, grad = (torch.randn(B, H, L, d, generator=g, device=device, dtype=dtype)
                     for d in (dk, dk, dv, dv))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for chunk in map(int, a.chunk.split(",")):
        C = min(chunk, L)
        Lp = (L + C - 1) // C * C
        flops = B * H * (2 * Lp * C * (dk + dv) + 4 * Lp * dk * dv        # forward
                         + 4 * Lp * C * (dk + dv) + 8 * Lp * dk * dv)     # backward
        floor = max(flops / 790e12, bytes_floor / 3.0e12)
        constants = chunk_constants(H, L, C, dtype, device)
        fwd_total = total = 0.0
        for it in range(-1, a.iters):
            qg, kg, vg = (t.detach().requires_grad_() for t in (q, k, v))
            if it == 0 and device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            sync()
            start = time.perf_counter()
            out = retention_chunkwise(qg, kg, vg, C, constants)
            sync()
            fwd = time.perf_counter() - start
            out.backward(grad)
            sync()
            if it >= 0:
                fwd_total += fwd
                total += time.perf_counter() - start
        fwd_total /= a.iters
        total /= a.iters
        peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else 0.0
        print(f"{chunk:>6} {fwd_total * 1e3:>10.3f} {total * 1e3:>10.3f} {floor * 1e3:>10.3f} "
              f"{100 * floor / total:>9.1f}% {flops / total / 1e12:>12.3f} "
              f"{bytes_floor / total / 1e9:>10.1f}  {peak:.2f}")


if __name__ == "__main__":
    main()
