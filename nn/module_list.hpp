// ModuleList: numbered children ("0", "1", ...), so that parameter names read
// "layers.3.retention.q_proj.weight" as in PyTorch checkpoints.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "nn/module.hpp"

namespace dssm::nn {

template <typename M>
class ModuleList : public Module {
 public:
  M& push_back(std::shared_ptr<M> module) {
    items_.push_back(register_module(std::to_string(items_.size()), std::move(module)));
    return *items_.back();
  }
  size_t size() const { return items_.size(); }
  bool empty() const { return items_.empty(); }
  M& operator[](size_t i) const { return *items_.at(i); }

 private:
  std::vector<std::shared_ptr<M>> items_;
};

}  // namespace dssm::nn
