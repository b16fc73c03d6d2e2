"""Reference timing for bench/attention_bench.cpp: causal softmax attention, forward and
forward + backward, through each of PyTorch's scaled_dot_product_attention back ends (cuDNN's fused
attention, FlashAttention, memory-efficient, and the plain "math" composition of two GEMMs and a
softmax) at LLaMA-350M's shapes, so that one run says which of them wins on this GPU.

    python bench/ref/attention_ref.py [--batch 4] [--heads 8] [--length 2048] [--head-dim 128]
                                      [--iters 20]

Each back end is checked against the math one on the same inputs first (bf16, max abs error).
"""
import argparse
import time

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
            "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


def timed(fn, iters):
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    torch.cuda.synchronize()
    return 1e3 * (time.perf_counter() - start) / iters


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--iters", type=int, default=20)
    a = p.parse_args()
    B, H, T, d = a.batch, a.heads, a.length, a.head_dim
    g = torch.Generator(device="cuda").manual_seed(3)
    q, k, v, dout = (torch.randn(B, H, T, d, generator=g, device="cuda", dtype=torch.bfloat16)
                     for _ in range(4))
    for t in (q, k, v):
        t.requires_grad_(True)
    # Causal attention FLOPs: two GEMMs of 2 B H T^2 d each, halved by the mask; backward 2.5x.
    fwd_flops = 2 * B * H * T * T * d
    print(f"causal attention, batch {B}, heads {H}, length {T}, head dim {d}, bf16, "
          f"torch {torch.__version__}")
    print(f"{'backend':>10} {'fwd ms':>8} {'fwd+bwd ms':>11} {'fwd TFLOP/s':>12} {'max err':>9}")
    with sdpa_kernel(SDPBackend.MATH):
        reference = F.scaled_dot_product_attention(q, k, v, is_causal=True).float()
    for name, backend in BACKENDS.items():
        try:
            with sdpa_kernel(backend):
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
                err = (out.float() - reference).abs().max().item()
                fwd = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True), a.iters)
                both = timed(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
                             .backward(dout), a.iters)
        except RuntimeError as e:  # a back end that does not support this GPU or shape
            print(f"{name:>10} unavailable: {str(e).splitlines()[0][:80]}")
            continue
        print(f"{name:>10} {fwd:>8.3f} {both:>11.3f} {fwd_flops / fwd / 1e9:>12.1f} {err:>9.2e}",
              flush=True)


if __name__ == "__main__":
    main()
