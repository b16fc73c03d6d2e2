// Module: a named tree of parameters, like torch.nn.Module. A module registers its parameters
// and child modules under names; the full name of a parameter is its path through the tree
// ("layers.3.mixer.in_proj.weight"), which is also its name in a checkpoint.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace dssm::nn {

struct NamedParameter {
  std::string name;
  Tensor tensor;
  bool weight_decay;  // false for norms' weights, biases, embeddings, Mamba's A_log and D, ...
};

class Module {
 public:
  virtual ~Module() = default;
  Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter of this module and its children, depth first in registration order.
  std::vector<NamedParameter> named_parameters() const;
  std::vector<Tensor> parameters() const;
  int64_t num_parameters() const;

  // name -> tensor (detached) for every parameter.
  std::map<std::string, Tensor> state_dict() const;
  // Copies values into the parameters (converting dtype/device as needed). Throws naming every
  // missing, unexpected or mis-shaped tensor (all at once) unless strict is false, in which case
  // only the mis-shaped ones throw.
  void load_state_dict(const std::map<std::string, Tensor>& state, bool strict = true);

  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

  // Moves (or converts) every parameter in place: handles held elsewhere see the new data.
  void to(Device device);
  void to(DType dtype);
  void zero_grad();

  const std::vector<std::pair<std::string, std::shared_ptr<Module>>>& children() const {
    return children_;
  }

 protected:
  // Registers a leaf tensor as a parameter (requires_grad is set) and returns it.
  Tensor register_parameter(const std::string& name, Tensor tensor, bool weight_decay = true);
  template <typename M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

 private:
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void collect(const std::string& prefix, std::vector<NamedParameter>& out) const;

  std::vector<NamedParameter> parameters_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
  bool training_ = true;
};

}  // namespace dssm::nn
