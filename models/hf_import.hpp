// Import of Hugging Face transformers checkpoints (a directory written by save_pretrained:
// config.json + model.safetensors, or model.safetensors.index.json + shards) of
//   MambaForCausalLM  -> our "mamba"
//   LlamaForCausalLM  -> our "llama"
// through the name map of docs/checkpoints.md. Two conversions beyond renaming:
//   - Mamba's conv1d.weight is [di, 1, K] in PyTorch's Conv1d layout, ours [di, K];
//   - LLaMA's q_proj and k_proj rows are permuted per head: transformers rotates the halves of a
//     head (channel j with j + d_head/2, "rotate_half"), our rotary op rotates adjacent pairs
//     (2i, 2i+1). Our row 2i is HF row i and our row 2i+1 is HF row i + d_head/2 (the inverse of
//     the permutation in transformers' convert_llama_weights_to_hf.py); since q and k get the
//     same permutation, the attention scores q·k are unchanged. The angles are LLaMA's,
//     rope_theta^(-2i/d_head) (our LlamaConfig::rope_theta; top-level "rope_theta" of
//     transformers 4 or "rope_parameters" of transformers 5).
// Weights are converted to f32. Unsupported variants (biases in Mamba's projections, grouped
// KV heads, rope scaling, ...) are errors that name the config key.
#pragma once

#include <map>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "models/language_model.hpp"

namespace dssm::models {

// Our config for a transformers config.json (by its "model_type": "mamba" or "llama").
nlohmann::json config_from_hf(const nlohmann::json& hf_config);

// Renames (and reshapes / permutes) transformers' tensors to ours; every tensor of `hf` must be
// known. A tied LM head absent from the file is filled in from the embedding.
std::map<std::string, Tensor> state_from_hf(const nlohmann::json& hf_config,
                                            const std::map<std::string, Tensor>& hf);

// The whole import: reads `dir`, builds our model and loads the converted weights.
std::unique_ptr<LanguageModel> import_hf(const std::string& dir);

}  // namespace dssm::models
