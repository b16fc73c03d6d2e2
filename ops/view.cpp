// Differentiable views: they share storage with their input (no copy) and their backward maps
// the gradient back to the input's shape. reshape copies only when the layout makes a view
// impossible (as in PyTorch); view() refuses instead.
#include <numeric>

#include "autograd/graph.hpp"
#include "ops/elementwise.hpp"
#include "ops/registry.hpp"

namespace dssm {
namespace {

// Resolves one -1 in a requested shape from the element count.
Shape infer_shape(const Shape& requested, int64_t numel, const char* op) {
  Shape shape = requested;
  int64_t known = 1, infer_at = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      DSSM_CHECK(infer_at < 0, op, "only one dimension can be -1 in {}", shape_str(requested));
      infer_at = static_cast<int64_t>(i);
    } else {
      DSSM_CHECK(shape[i] >= 0, op, "invalid size in {}", shape_str(requested));
      known *= shape[i];
    }
  }
  if (infer_at >= 0) {
    DSSM_CHECK(known > 0 && numel % known == 0, op, "cannot infer -1 in {} for {} elements",
               shape_str(requested), numel);
    shape[static_cast<size_t>(infer_at)] = numel / known;
  }
  DSSM_CHECK(numel_of(shape) == numel, op, "shape {} is invalid for input of {} elements",
             shape_str(requested), numel);
  return shape;
}

// Strides for viewing `x` as `shape` without a copy, or empty if impossible. Groups of input
// dims that are contiguous with each other can be split or merged freely.
Strides view_strides(const Tensor& x, const Shape& shape) {
  if (x.is_contiguous()) return contiguous_strides(shape);
  Strides out(shape.size());
  const Shape& in = x.shape();
  const Strides& st = x.strides();
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = st.empty() ? 1 : st.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t d = static_cast<int64_t>(in.size()) - 1; d >= 0; --d) {
    tensor_numel *= in[d];
    // The end of a chunk of mutually contiguous input dims.
    if (d == 0 || (in[d - 1] != 1 && st[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        out[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return {};
      if (d > 0) {
        chunk_base_stride = st[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return {};
  return out;
}

Tensor make_view(const Tensor& x, const Shape& shape, const Strides& strides, int64_t offset,
                 const char* name, BackwardFn backward) {
  Tensor out = x.as_strided(shape, strides, offset);
  record(name, {x}, {out}, std::move(backward));
  return out;
}

}  // namespace

Tensor Tensor::view(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), "view");
  Strides strides = numel() == 0 ? contiguous_strides(shape) : view_strides(*this, shape);
  DSSM_CHECK(!strides.empty() || shape.empty(), "view",
             "cannot view {} with strides {} as {} without a copy; use reshape()", describe(*this),
             shape_str(this->strides()), shape_str(shape));
  return make_view(*this, shape, strides, offset(), "view",
                   [in_shape = this->shape()](const BackwardArgs& args) {
                     return std::vector<Tensor>{args.grad().reshape(in_shape)};
                   });
}

Tensor Tensor::reshape(const Shape& requested) const {
  const Shape shape = infer_shape(requested, numel(), "reshape");
  if (numel() == 0 || shape.empty() || !view_strides(*this, shape).empty()) return view(shape);
  return contiguous().view(shape);
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  DSSM_CHECK(static_cast<int64_t>(dims.size()) == dim(), "permute", "{} dims given for {}",
             dims.size(), describe(*this));
  Shape shape(dims.size());
  Strides strides(dims.size());
  std::vector<int64_t> inverse(dims.size(), -1);
  for (size_t i = 0; i < dims.size(); ++i) {
    const int64_t d = wrap_dim(dims[i], dim(), "permute");
    DSSM_CHECK(inverse[d] < 0, "permute", "dim {} repeated", d);
    inverse[d] = static_cast<int64_t>(i);
    shape[i] = this->shape()[d];
    strides[i] = this->strides()[d];
  }
  return make_view(*this, shape, strides, offset(), "permute", [inverse](const BackwardArgs& args) {
    return std::vector<Tensor>{args.grad().permute(inverse)};
  });
}

Tensor Tensor::transpose(int64_t dim0, int64_t dim1) const {
  std::vector<int64_t> order(static_cast<size_t>(dim()));
  std::iota(order.begin(), order.end(), 0);
  std::swap(order[wrap_dim(dim0, dim(), "transpose")], order[wrap_dim(dim1, dim(), "transpose")]);
  return permute(order);
}

Tensor Tensor::narrow(int64_t d, int64_t start, int64_t length) const {
  d = wrap_dim(d, dim(), "narrow");
  DSSM_CHECK(start >= 0 && length >= 0 && start + length <= size(d), "narrow",
             "range [{}, {}) outside dim {} of size {} in {}", start, start + length, d, size(d),
             describe(*this));
  Shape shape = this->shape();
  shape[d] = length;
  return make_view(*this, shape, strides(), offset() + start * strides()[d], "narrow",
                   [in_shape = this->shape(), d, start](const BackwardArgs& args) {
                     const Tensor& g = args.grad();
                     Tensor full = Tensor::zeros(in_shape, g.dtype(), g.device());
                     full.narrow(d, start, g.size(d)).copy_from(g);
                     return std::vector<Tensor>{full};
                   });
}

Tensor Tensor::select(int64_t d, int64_t index) const {
  d = wrap_dim(d, dim(), "select");
  DSSM_CHECK(index >= -size(d) && index < size(d), "select",
             "index {} out of range for dim {} of {}", index, d, describe(*this));
  if (index < 0) index += size(d);
  return narrow(d, index, 1).squeeze(d);
}

Tensor Tensor::expand(const Shape& target) const {
  DSSM_CHECK(target.size() >= shape().size(), "expand", "cannot expand {} to fewer dims {}",
             describe(*this), shape_str(target));
  const size_t lead = target.size() - shape().size();
  Shape shape(target.size());
  Strides strides(target.size(), 0);
  for (size_t i = 0; i < target.size(); ++i) {
    const int64_t have = i < lead ? 1 : this->shape()[i - lead];
    const int64_t want = target[i] == -1 ? have : target[i];
    DSSM_CHECK(have == want || have == 1, "expand", "cannot expand {} to {}", describe(*this),
               shape_str(target));
    shape[i] = want;
    if (i >= lead && have == want) strides[i] = this->strides()[i - lead];
  }
  return make_view(*this, shape, strides, offset(), "expand",
                   [in_shape = this->shape()](const BackwardArgs& args) {
                     return std::vector<Tensor>{sum_to(args.grad(), in_shape)};
                   });
}

Tensor Tensor::squeeze(int64_t d) const {
  d = wrap_dim(d, dim(), "squeeze");
  DSSM_CHECK(size(d) == 1, "squeeze", "dim {} has size {}, not 1, in {}", d, size(d),
             describe(*this));
  Shape shape = this->shape();
  Strides strides = this->strides();
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return make_view(*this, shape, strides, offset(), "squeeze",
                   [in_shape = this->shape()](const BackwardArgs& args) {
                     return std::vector<Tensor>{args.grad().reshape(in_shape)};
                   });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  d = wrap_dim(d, dim() + 1, "unsqueeze");
  Shape shape = this->shape();
  Strides strides = this->strides();
  const int64_t stride = d < dim() ? this->strides()[d] * this->shape()[d] : 1;
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  return make_view(*this, shape, strides, offset(), "unsqueeze",
                   [in_shape = this->shape()](const BackwardArgs& args) {
                     return std::vector<Tensor>{args.grad().reshape(in_shape)};
                   });
}

namespace {

GradcheckCase view_case(const char* name, Shape shape, std::function<Tensor(const Tensor&)> f) {
  return {
      .name = name,
      .make_inputs = [shape](Generator& g) { return std::vector<Tensor>{random_normal(g, shape)}; },
      .run = [f](const std::vector<Tensor>& in) { return f(in[0]); }};
}

// Each view is followed by a multiplication so the gradient reaching it is not uniform, and
// reshape is applied to a transposed (non-contiguous) input so that it must copy.
const OpRegistration kReshape{view_case("reshape", {3, 4}, [](const Tensor& x) {
  return x.transpose(0, 1).reshape({2, 6}) * x.reshape({2, 6});
})};
const OpRegistration kPermute{view_case("permute", {2, 3, 4}, [](const Tensor& x) {
  return x.permute({2, 0, 1}) * x.permute({2, 0, 1});
})};
const OpRegistration kNarrow{view_case("narrow", {4, 5}, [](const Tensor& x) {
  return x.narrow(1, 1, 3).narrow(0, 0, 3) * x.narrow(0, 1, 3).narrow(1, 0, 3);
})};
const OpRegistration kExpand{view_case("expand", {3, 1}, [](const Tensor& x) {
  return x.expand({2, 3, 4}) * x.expand({2, 3, 4});
})};
const OpRegistration kSqueeze{view_case("squeeze_unsqueeze", {3, 1, 2}, [](const Tensor& x) {
  return x.squeeze(1).unsqueeze(0) * x.squeeze(1);
})};

}  // namespace
}  // namespace dssm
