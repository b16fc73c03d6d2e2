// The backward pass: Kahn's algorithm over the recorded nodes, from the roots to the leaves.
//
// 1. Count, for every node reachable from the roots, how many edges point at it.
// 2. Start from the roots' nodes. A node runs once every node that feeds it a gradient has run;
//    the gradients arriving for the same output are summed (a tensor used twice gets both).
// 3. Running a node calls its backward function, checks each returned gradient's shape, passes
//    them along its edges, and (unless retain_graph) frees the closure and the tensors it saved.
// An accumulator node adds its gradient into the leaf's .grad.
#include <unordered_map>

#include "autograd/grad_mode.hpp"
#include "autograd/graph.hpp"
#include "ops/elementwise.hpp"
#include "tensor/error.hpp"

namespace dssm {
namespace {

void accumulate(Tensor& slot, const Tensor& grad) {
  slot = slot.defined() ? add(slot, grad) : grad;
}

std::vector<Tensor> run_accumulator(Node& node, const std::vector<Tensor>& grads) {
  auto leaf = node.leaf.lock();
  if (!leaf || !grads[0].defined()) return {};
  Tensor leaf_tensor(leaf);
  Tensor grad = grads[0];
  if (grad.dtype() != leaf_tensor.dtype()) grad = grad.to(leaf_tensor.dtype());
  const Tensor previous = leaf_tensor.grad();
  // A fresh tensor either way: .grad never aliases a tensor of the graph.
  leaf_tensor.set_grad(previous.defined() ? add(previous, grad) : grad.clone());
  return {};
}

}  // namespace

void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grad_roots,
                  bool retain_graph) {
  NoGradGuard no_grad;  // backward functions compute plain tensors, recording nothing

  // 1. Dependencies: how many edges lead into each node.
  std::unordered_map<Node*, int> dependencies;
  std::unordered_map<Node*, std::shared_ptr<Node>> owner;
  std::vector<Node*> stack;
  auto visit = [&](const std::shared_ptr<Node>& node) {
    if (owner.emplace(node.get(), node).second) stack.push_back(node.get());
  };
  for (const Tensor& root : roots) {
    const auto& meta = root.impl().autograd;
    if (!meta) continue;
    visit(meta->grad_fn ? meta->grad_fn : nullptr);
  }
  owner.erase(nullptr);
  std::erase(stack, nullptr);
  while (!stack.empty()) {
    Node* node = stack.back();
    stack.pop_back();
    for (const Edge& edge : node->next) {
      if (!edge.node) continue;
      ++dependencies[edge.node.get()];
      visit(edge.node);
    }
  }

  // 2. Seed the roots' gradient buffers.
  std::unordered_map<Node*, std::vector<Tensor>> buffers;
  auto buffer_of = [&](Node* node) -> std::vector<Tensor>& {
    auto& buffer = buffers[node];
    if (buffer.empty()) buffer.resize(node->outputs.size());
    return buffer;
  };
  std::vector<Node*> ready;
  for (size_t i = 0; i < roots.size(); ++i) {
    const auto& meta = roots[i].impl().autograd;
    if (!meta) continue;
    if (!meta->grad_fn) {  // a leaf as root: its gradient is the seed itself
      Tensor leaf = roots[i];
      leaf.set_grad(leaf.grad().defined() ? add(leaf.grad(), grad_roots[i]) : grad_roots[i]);
      continue;
    }
    accumulate(buffer_of(meta->grad_fn.get())[meta->output_slot], grad_roots[i]);
  }
  for (auto& [node, _] : buffers) {
    if (dependencies[node] == 0) ready.push_back(node);
  }

  // 3. Run nodes whose every consumer has already sent its gradient.
  while (!ready.empty()) {
    Node* node = ready.back();
    ready.pop_back();
    std::vector<Tensor> grads = std::move(buffer_of(node));
    buffers.erase(node);
    DSSM_CHECK(!node->released, "backward",
               "the graph through '{}' was already freed by an earlier backward(); pass "
               "retain_graph=true to the first backward to run it twice",
               node->name);
    for (size_t i = 0; i < grads.size(); ++i) {
      if (!grads[i].defined()) {
        const OutputInfo& out = node->outputs[i];
        grads[i] = Tensor::zeros(out.shape, out.dtype, out.device);
      }
    }
    std::vector<Tensor> input_grads;
    if (node->is_accumulator) {
      input_grads = run_accumulator(*node, grads);
    } else {
      std::vector<bool> needs(node->next.size());
      for (size_t i = 0; i < needs.size(); ++i) needs[i] = node->next[i].node != nullptr;
      input_grads = node->backward(BackwardArgs{grads, needs});
      DSSM_CHECK(input_grads.size() == node->next.size(), "backward",
                 "'{}' returned {} gradients for {} inputs", node->name, input_grads.size(),
                 node->next.size());
    }
    if (!retain_graph) {
      node->backward = nullptr;
      node->released = !node->is_accumulator;
    }
    for (size_t i = 0; i < input_grads.size(); ++i) {
      const Edge& edge = node->next[i];
      if (!edge.node) continue;
      if (input_grads[i].defined()) {
        DSSM_CHECK(input_grads[i].shape() == node->input_shapes[i], "backward",
                   "'{}' returned a gradient of shape {} for input {} of shape {}", node->name,
                   shape_str(input_grads[i].shape()), i, shape_str(node->input_shapes[i]));
        accumulate(buffer_of(edge.node.get())[edge.slot], input_grads[i]);
      }
      if (--dependencies[edge.node.get()] == 0) {
        buffer_of(edge.node.get());
        ready.push_back(edge.node.get());
      }
    }
  }
}

}  // namespace dssm
