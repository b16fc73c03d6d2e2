"""Fixtures for tests/test_hf_import.cpp: tiny random MambaForCausalLM and LlamaForCausalLM
checkpoints written by transformers' save_pretrained, and the logits transformers computes for a
fixed prompt, so that our import (models/hf_import.cpp) can be checked against transformers itself.

    python bench/ref/make_hf_fixtures.py [--out tests/data]

Writes <out>/hf_mamba_tiny/ and <out>/hf_llama_tiny/, each with config.json, model.safetensors
and logits.json ({"prompt": [ids], "logits": [[V floats] per prompt token], versions}); about 100 to
150 KB each. Runs on the CPU in float32 (transformers' plain PyTorch paths: no mamba_ssm
kernels), so it needs torch and transformers only. After the random init every parameter gets
extra noise, so that norms (init 1), D (init 1) and swapped tensors would all show in the logits.
"""
import argparse
import json
import os

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, MambaConfig, MambaForCausalLM

PROMPT = [1, 17, 42, 200, 3, 99, 5, 128, 64, 7]


def perturb(model, scale=0.05):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * scale)


def save(model, out_dir):
    model.eval()
    model.save_pretrained(out_dir, safe_serialization=True)
    with torch.no_grad():
        logits = model(torch.tensor([PROMPT])).logits[0].float()
    with open(os.path.join(out_dir, "logits.json"), "w") as f:
        json.dump(
            {
                "prompt": PROMPT,
                "logits": [[float(f"{v:.8g}") for v in row] for row in logits.tolist()],
                "transformers": transformers.__version__,
                "torch": torch.__version__,
            },
            f,
        )
    sizes = {name: os.path.getsize(os.path.join(out_dir, name)) for name in os.listdir(out_dir)}
    print(out_dir, sizes)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "../../tests/data"))
    args = parser.parse_args()
    torch.manual_seed(0)

    mamba = MambaForCausalLM(
        MambaConfig(
            vocab_size=256,
            hidden_size=32,
            state_size=8,
            num_hidden_layers=2,
            expand=2,
            conv_kernel=4,
            time_step_rank="auto",
            use_bias=False,
            use_conv_bias=True,
            layer_norm_epsilon=1e-5,
            tie_word_embeddings=True,
        )
    )
    perturb(mamba)
    save(mamba, os.path.join(args.out, "hf_mamba_tiny"))

    llama = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=256,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            rope_theta=10000.0,
            tie_word_embeddings=False,
            attn_implementation="eager",
        )
    )
    perturb(llama)
    save(llama, os.path.join(args.out, "hf_llama_tiny"))


if __name__ == "__main__":
    main()
