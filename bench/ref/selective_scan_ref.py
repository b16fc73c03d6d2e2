"""Reference timing for bench/ssm_bench.cpp: the same selective scan (gate z, delta bias,
softplus, D skip) and causal conv1d (width 4, bias, silu) written plainly in PyTorch, forward and
forward + backward by PyTorch's autograd. The scan is a Python loop over time vectorised over
(batch, channels, N): autograd keeps every step's state, the memory the fused kernels avoid.

    python bench/ref/selective_scan_ref.py [--device cuda] [--dtype bf16] [--batch 8]
                                           [--length 2048] [--channels 2048] [--state 16]

Prints the same columns as ssm_bench (bytes floor at 3.0 TB/s on CUDA) plus PyTorch's peak memory.
"""
import argparse
import time

import torch
import torch.nn.functional as F


def selective_scan(u, delta, A, B, C, D, z, delta_bias):
    """u, delta, z: [b, d, L]; A: [d, n]; B, C: [b, n, L]; D, delta_bias: [d]. States in f32."""
    dt = F.softplus(delta.float() + delta_bias.float()[:, None])  # [b, d, L]
    u32, A32 = u.float(), A.float()
    h = u32.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for t in range(u.shape[2]):
        dA = torch.exp(dt[:, :, t, None] * A32)
        h = dA * h + (dt[:, :, t] * u32[:, :, t])[:, :, None] * B[:, None, :, t].float()
        ys.append(torch.einsum("bdn,bn->bd", h, C[:, :, t].float()))
    y = torch.stack(ys, dim=2) + D.float()[:, None] * u32
    return (y * F.silu(z.float())).to(u.dtype)


def causal_conv1d(x, weight, bias):
    width = weight.shape[1]
    y = F.conv1d(x, weight[:, None, :], bias, padding=width - 1, groups=x.shape[1])
    return F.silu(y[..., : x.shape[2]])


def median_seconds(fn, iters, device):
    times = []
    for it in range(-1, iters):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        if it >= 0:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--length", type=int, default=None)
    p.add_argument("--channels", type=int, default=None)
    p.add_argument("--state", type=int, default=16)
    p.add_argument("--iters", type=int, default=None)
    a = p.parse_args()
    gpu = a.device == "cuda"
    dtype = {"bf16": torch.bfloat16, "f32": torch.float32}[a.dtype or ("bf16" if gpu else "f32")]
    b, L = a.batch or (8 if gpu else 1), a.length or (2048 if gpu else 512)
    d, n, iters = a.channels or (2048 if gpu else 256), a.state, a.iters or (5 if gpu else 3)
    elem, tokens = torch.tensor([], dtype=dtype).element_size(), b * L
    torch.manual_seed(5)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape) * scale).to(dtype).to(a.device)

    u, delta, z, dy = randn(b, d, L), randn(b, d, L, scale=0.5), randn(b, d, L), randn(b, d, L)
    B, C = randn(b, n, L), randn(b, n, L)
    A = (torch.rand(d, n) * -15.0 - 1.0).to(dtype).to(a.device)
    D = torch.ones(d, dtype=dtype, device=a.device)
    bias = (torch.randn(d) - 4.0).to(dtype).to(a.device)
    weight, conv_bias = randn(d, 4, scale=0.5), randn(d)

    def leaf(t, grad):
        return t.detach().requires_grad_(grad)

    def scan(grad):
        with torch.set_grad_enabled(grad):
            y = selective_scan(leaf(u, grad), leaf(delta, grad), A, leaf(B, grad), leaf(C, grad),
                               D, leaf(z, grad), bias)
            if grad:
                y.backward(dy)

    def conv(grad):
        with torch.set_grad_enabled(grad):
            y = causal_conv1d(leaf(u, grad), leaf(weight, grad), leaf(conv_bias, grad))
            if grad:
                y.backward(dy)

    print(f"PyTorch reference: batch {b}, length {L}, channels {d}, N {n}, {dtype} on {a.device}")
    print(f"{'':<28} {'ms':>10} {'floor ms':>10} {'of floor':>10} {'MB moved':>10} {'GB/s':>12} "
          f"{'peak MB':>10}")
    scan_fwd = tokens * (4 * d * elem + 2 * n * elem)
    scan_bwd = tokens * (7 * d * elem + 2 * n * elem + 2 * n * 4)
    conv_fwd, conv_bwd = tokens * 2 * d * elem, tokens * 3 * d * elem
    for name, fn, grad, nbytes in [
        ("selective_scan forward", scan, False, scan_fwd),
        ("selective_scan fwd+bwd", scan, True, scan_fwd + scan_bwd),
        ("causal_conv1d forward", conv, False, conv_fwd),
        ("causal_conv1d fwd+bwd", conv, True, conv_fwd + conv_bwd),
    ]:
        if gpu:
            torch.cuda.reset_peak_memory_stats()
        s = median_seconds(lambda: fn(grad), iters, a.device)
        floor = nbytes / 3.0e12
        floor_text = f"{floor * 1e3:10.3f} {s / floor:9.1f}x" if gpu else f"{'-':>10} {'-':>10}"
        peak = torch.cuda.max_memory_allocated() / 1e6 if gpu else float("nan")
        print(f"{name:<28} {s * 1e3:10.3f} {floor_text} {nbytes / 1e6:10.1f} "
              f"{nbytes / s / 1e9:12.1f} {peak:10.0f}")


if __name__ == "__main__":
    main()
