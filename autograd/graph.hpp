// The autograd graph. During forward, each differentiable op that sees an input requiring a
// gradient records one Node: a backward function (a closure holding the tensors it saved) and one
// Edge per input pointing at the Node that produced that input. backward() walks these nodes in
// reverse topological order. Leaves that require grad get an accumulator node that adds into .grad.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "tensor/tensor.hpp"

namespace dssm {

struct Node;

// Where an input's gradient goes: output `slot` of `node` (null when it needs no gradient).
struct Edge {
  std::shared_ptr<Node> node;
  int slot = 0;
};

// What a backward function is given: one gradient per output of its op (already materialised,
// zeros where no gradient flowed) and which inputs want a gradient (skip the others).
struct BackwardArgs {
  const std::vector<Tensor>& grad_outputs;
  const std::vector<bool>& needs_input_grad;
  const Tensor& grad(size_t output = 0) const { return grad_outputs[output]; }
  bool needs(size_t input) const { return needs_input_grad[input]; }
};

// Returns one gradient per input, in input order; undefined tensors for inputs that need none.
using BackwardFn = std::function<std::vector<Tensor>(const BackwardArgs&)>;

struct OutputInfo {
  Shape shape;
  DType dtype;
  Device device;
};

struct Node {
  std::string name;                 // the op, for error messages: "matmul", "accumulate_grad"
  std::vector<Edge> next;           // one per input
  std::vector<Shape> input_shapes;  // to check every gradient a backward function returns
  std::vector<OutputInfo> outputs;  // to materialise zero gradients of unused outputs
  BackwardFn backward;              // released (set empty) once it has run
  bool released = false;
  bool is_accumulator = false;      // a leaf's gradient sink: adds into `leaf`'s .grad
  std::weak_ptr<TensorImpl> leaf;
};

struct AutogradMeta {
  bool requires_grad = false;
  Tensor grad;
  std::shared_ptr<Node> grad_fn;  // the node that produced this tensor (null for leaves)
  int output_slot = 0;
  std::shared_ptr<Node> accumulator;  // a leaf's gradient sink, made on first use
};

// Records `outputs` as produced from `inputs` by op `name` with the given backward, if gradient
// mode is on and any input requires a gradient. Call after computing the outputs. Tensors that
// the backward function needs must be captured detached (t.detach()) to avoid reference cycles.
void record(const char* name, const std::vector<Tensor>& inputs,
            const std::vector<Tensor>& outputs, BackwardFn backward);

// True if gradient mode is on and any of these tensors requires a gradient.
bool any_requires_grad(const std::vector<Tensor>& tensors);

// Runs backward from `roots` (each seeded with the matching gradient).
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots,
                  bool retain_graph);

}  // namespace dssm
