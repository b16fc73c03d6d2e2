// Joining, cutting and indexing: concat, stack, split, chunk, index_select, where, masked_fill.
//   concat backward:        input k gets g.narrow(dim, offset_k, size_k)
//   index_select backward:  dx[.., index[i], ..] += g[.., i, ..]   (index-add)
//   where backward:         da = where(cond, g, 0), db = where(cond, 0, g), summed to shape
#include <cstring>

#include "autograd/graph.hpp"
#include "cuda/kernels_nn.hpp"
#include "ops/elementwise.hpp"
#include "ops/registry.hpp"
#include "ops/shape.hpp"
#include "tensor/strided_loop.hpp"

namespace dssm {

Tensor concat(const std::vector<Tensor>& tensors, int64_t dim) {
  DSSM_CHECK(!tensors.empty(), "concat", "expected at least one tensor, got none");
  const Tensor& first = tensors[0];
  const int64_t d = wrap_dim(dim, first.dim(), "concat");
  Shape shape = first.shape();
  shape[d] = 0;
  std::vector<int64_t> sizes;
  for (size_t k = 0; k < tensors.size(); ++k) {
    const Tensor& t = tensors[k];
    DSSM_CHECK(t.dtype() == first.dtype() && t.device() == first.device(), "concat",
               "tensor {} is {}, expected the dtype and device of tensor 0 ({})", k, describe(t),
               describe(first));
    bool same = t.dim() == first.dim();
    for (int64_t i = 0; same && i < t.dim(); ++i) same = i == d || t.size(i) == first.size(i);
    DSSM_CHECK(same, "concat", "tensor {} has shape {}, expected {} except along dim {}", k,
               shape_str(t.shape()), shape_str(first.shape()), d);
    sizes.push_back(t.size(d));
    shape[d] += t.size(d);
  }
  Tensor out = Tensor::empty(shape, first.dtype(), first.device());
  for (size_t k = 0, offset = 0; k < tensors.size(); offset += sizes[k], ++k) {
    out.narrow(d, static_cast<int64_t>(offset), sizes[k]).copy_from(tensors[k].detach());
  }
  record("concat", tensors, {out}, [d, sizes](const BackwardArgs& args) {
    std::vector<Tensor> grads;
    int64_t offset = 0;
    for (size_t k = 0; k < sizes.size(); offset += sizes[k], ++k) {
      grads.push_back(args.needs(k) ? args.grad().narrow(d, offset, sizes[k]) : Tensor());
    }
    return grads;
  });
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, int64_t dim) {
  DSSM_CHECK(!tensors.empty(), "stack", "expected at least one tensor, got none");
  std::vector<Tensor> unsqueezed;
  for (size_t k = 0; k < tensors.size(); ++k) {
    DSSM_CHECK(tensors[k].shape() == tensors[0].shape(), "stack",
               "tensor {} has shape {}, expected the shape of tensor 0, {}", k,
               shape_str(tensors[k].shape()), shape_str(tensors[0].shape()));
    unsqueezed.push_back(tensors[k].unsqueeze(dim));
  }
  return concat(unsqueezed, dim);
}

std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    DSSM_CHECK(s >= 0, "split", "negative size in {}", shape_str(sizes));
    total += s;
  }
  DSSM_CHECK(total == x.size(d), "split", "sizes {} add up to {}, expected {} (dim {} of {})",
             shape_str(sizes), total, x.size(d), d, describe(x));
  std::vector<Tensor> parts;
  int64_t offset = 0;
  for (int64_t s : sizes) parts.push_back(x.narrow(d, offset, s)), offset += s;
  return parts;
}

std::vector<Tensor> chunk(const Tensor& x, int64_t n, int64_t dim) {
  DSSM_CHECK(n > 0, "chunk", "expected a positive number of chunks, got {}", n);
  const int64_t d = wrap_dim(dim, x.dim(), "chunk");
  const int64_t size = x.size(d), step = (size + n - 1) / n;
  if (size == 0) return {x};
  std::vector<int64_t> sizes;
  for (int64_t left = size; left > 0; left -= step) sizes.push_back(std::min(step, left));
  return split(x, sizes, d);
}

// ---- indices ------------------------------------------------------------------------------

IndexScan scan_indices(const Tensor& index, int64_t size, std::optional<int64_t> ignore) {
  const Tensor idx = index.detach().contiguous();
  if (idx.is_cuda()) return cuda::scan_indices(idx, size, ignore.has_value(), ignore.value_or(0));
  IndexScan scan;
  dispatch_index(idx.dtype(), "scan_indices", [&]<typename I>() {
    const I* p = idx.data<I>();
    for (int64_t i = 0; i < idx.numel(); ++i) {
      const int64_t v = p[i];
      if (ignore && v == *ignore) {
        ++scan.ignored;
      } else if ((v < 0 || v >= size) && scan.first_bad < 0) {
        scan.first_bad = i, scan.bad_value = v;
      }
    }
  });
  return scan;
}

std::string position_str(const Shape& shape, int64_t flat) {
  Shape index(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    index[d] = flat % shape[d];
    flat /= shape[d];
  }
  return shape_str(index);
}

namespace {

// x viewed as [outer, size, inner]: out[o, i, :] = x[o, index[i], :].
void cpu_index_select(const Tensor& out, const Tensor& x, const Tensor& index, int64_t outer,
                      int64_t inner) {
  const int64_t n = index.numel(), size = x.numel() / (outer * inner);
  const size_t row_bytes = static_cast<size_t>(inner) * dtype_size(x.dtype());
  const auto* src = static_cast<const char*>(x.raw_data());
  auto* dst = static_cast<char*>(out.raw_data());
  dispatch_index(index.dtype(), "index_select", [&]<typename I>() {
    const I* idx = index.data<I>();
#pragma omp parallel for collapse(2) if (outer * n * inner > 32768)
    for (int64_t o = 0; o < outer; ++o) {
      for (int64_t i = 0; i < n; ++i) {
        std::memcpy(dst + (o * n + i) * row_bytes, src + (o * size + idx[i]) * row_bytes,
                    row_bytes);
      }
    }
  });
}

// grad_x[o, index[i], j] += g[o, i, j]. Race-free: each thread owns whole (o, j) columns and
// walks every i for them.
void cpu_index_add(const Tensor& grad_x, const Tensor& g, const Tensor& index, int64_t outer,
                   int64_t inner) {
  const int64_t n = index.numel(), size = grad_x.numel() / (outer * inner);
  dispatch_floating(g.dtype(), "index_select backward", [&]<typename T>() {
    using C = compute_t<T>;
    const T* pg = g.data<T>();
    C* acc = grad_x.data<C>();
    dispatch_index(index.dtype(), "index_select", [&]<typename I>() {
      const I* idx = index.data<I>();
#pragma omp parallel for collapse(2) if (outer * n * inner > 32768)
      for (int64_t o = 0; o < outer; ++o) {
        for (int64_t j = 0; j < inner; ++j) {
          for (int64_t i = 0; i < n; ++i) {
            acc[(o * size + idx[i]) * inner + j] += static_cast<C>(pg[(o * n + i) * inner + j]);
          }
        }
      }
    });
  });
}

Tensor index_add(const Tensor& g_in, const Tensor& index, const Shape& x_shape, int64_t dim) {
  const Tensor g = g_in.contiguous();
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= x_shape[d];
  for (int64_t d = dim + 1; d < static_cast<int64_t>(x_shape.size()); ++d) inner *= x_shape[d];
  Tensor acc = Tensor::zeros(x_shape, compute_dtype(g.dtype()), g.device());
  if (g.numel() > 0) {
    if (g.is_cuda()) {
      cuda::index_add(acc, g, index, outer, inner);
    } else {
      cpu_index_add(acc, g, index, outer, inner);
    }
  }
  return acc.to(g.dtype());
}

}  // namespace

Tensor index_select(const Tensor& x_in, int64_t dim, const Tensor& index_in) {
  DSSM_CHECK(
      index_in.dim() == 1 && (index_in.dtype() == DType::i32 || index_in.dtype() == DType::i64),
      "index_select", "expected a 1-D i32 or i64 index, got {}", describe(index_in));
  DSSM_CHECK(index_in.device() == x_in.device(), "index_select",
             "device mismatch: x {} vs index {}", describe(x_in), describe(index_in));
  const int64_t d = wrap_dim(dim, x_in.dim(), "index_select");
  const IndexScan scan = scan_indices(index_in, x_in.size(d));
  DSSM_CHECK(scan.first_bad < 0, "index_select", "index[{}] = {} is outside [0, {}) (dim {} of {})",
             scan.first_bad, scan.bad_value, x_in.size(d), d, describe(x_in));
  const Tensor x = x_in.detach().contiguous(), index = index_in.contiguous();
  Shape shape = x.shape();
  shape[d] = index.numel();
  Tensor out = Tensor::empty(shape, x.dtype(), x.device());
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < d; ++i) outer *= shape[i];
  for (int64_t i = d + 1; i < x.dim(); ++i) inner *= shape[i];
  if (out.numel() > 0) {
    if (x.is_cuda()) {
      cuda::index_select(out, x, index, outer, inner);
    } else {
      cpu_index_select(out, x, index, outer, inner);
    }
  }
  record("index_select", {x_in}, {out}, [index, d, x_shape = x.shape()](const BackwardArgs& args) {
    return std::vector<Tensor>{index_add(args.grad(), index, x_shape, d)};
  });
  return out;
}

// ---- where / masked_fill ------------------------------------------------------------------

namespace {

void cpu_where(const Tensor& out, const Tensor& cond, const Tensor& a, const Tensor& b) {
  const Strides sc = broadcast_strides(cond.shape(), cond.strides(), out.shape());
  const Strides sa = broadcast_strides(a.shape(), a.strides(), out.shape());
  const Strides sb = broadcast_strides(b.shape(), b.strides(), out.shape());
  dispatch_all(out.dtype(), [&]<typename T>() {
    dispatch_all(cond.dtype(), [&]<typename K>() {
      const K* pc = cond.data<K>();
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      T* po = out.data<T>();
      for_each_row<4>(out.shape(), {out.strides(), sc, sa, sb}, [&](const RowView<4>& row) {
        for (int64_t j = 0; j < row.length; ++j) {
          const bool c = static_cast<float>(pc[row.row_offset[1] + j * row.inner_stride[1]]) != 0;
          po[row.row_offset[0] + j] = c ? pa[row.row_offset[2] + j * row.inner_stride[2]]
                                        : pb[row.row_offset[3] + j * row.inner_stride[3]];
        }
      });
    });
  });
}

}  // namespace

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  DSSM_CHECK(a.dtype() == b.dtype(), "where", "dtype mismatch: a {} vs b {}", describe(a),
             describe(b));
  DSSM_CHECK(a.device() == b.device() && cond.device() == a.device(), "where",
             "device mismatch: cond {}, a {}, b {}", describe(cond), describe(a), describe(b));
  const Shape shape =
      broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape(), "where"), "where");
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (out.numel() > 0) {
    if (out.is_cuda()) {
      cuda::where(out, cond, a, b);
    } else {
      cpu_where(out, cond, a, b);
    }
  }
  record(
      "where", {a, b}, {out},
      [cond = cond.detach(), a_shape = a.shape(), b_shape = b.shape()](const BackwardArgs& args) {
        const Tensor& g = args.grad();
        const Tensor zero = Tensor::zeros({}, g.dtype(), g.device());
        return std::vector<Tensor>{
            args.needs(0) ? sum_to(where(cond, g, zero), a_shape) : Tensor(),
            args.needs(1) ? sum_to(where(cond, zero, g), b_shape) : Tensor()};
      });
  return out;
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  const Shape shape = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
  DSSM_CHECK(shape == x.shape(), "masked_fill", "mask {} does not broadcast to the shape of x {}",
             describe(mask), describe(x));
  return where(mask, Tensor::full({}, value, x.dtype(), x.device()), x);
}

namespace {

Tensor random_mask(Generator& g, const Shape& shape) {  // i32, about half ones
  std::vector<int32_t> bits;
  for (double u : Tensor::rand(shape, g, DType::f64).to_vector<double>()) bits.push_back(u < 0.5);
  return Tensor::from_vector(bits, shape);
}

const OpRegistration kConcat{{.name = "concat",
                              .make_inputs =
                                  [](Generator& g) {
                                    return std::vector<Tensor>{random_normal(g, {2, 1, 3}),
                                                               random_normal(g, {2, 3, 3}),
                                                               random_normal(g, {2, 2, 3})};
                                  },
                              .run = [](const std::vector<Tensor>& in) { return concat(in, 1); }}};
const OpRegistration kStack{
    {.name = "stack",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {2, 3}), random_normal(g, {2, 3})};
         },
     .run = [](const std::vector<Tensor>& in) { return stack(in, 1); }}};
// The parts are recombined in another order, one squared, so each gets its own gradient.
const OpRegistration kSplit{{.name = "split",
                             .make_inputs =
                                 [](Generator& g) {
                                   return std::vector<Tensor>{random_normal(g, {3, 5})};
                                 },
                             .run =
                                 [](const std::vector<Tensor>& in) {
                                   const std::vector<Tensor> p = split(in[0], {2, 3}, 1);
                                   return concat({p[1] * p[1], p[0]}, 1);
                                 }}};
const OpRegistration kChunk{{.name = "chunk",
                             .make_inputs =
                                 [](Generator& g) {
                                   return std::vector<Tensor>{random_normal(g, {5, 2})};
                                 },
                             .run =
                                 [](const std::vector<Tensor>& in) {
                                   const std::vector<Tensor> p =
                                       chunk(in[0], 3, 0);  // sizes 2, 2, 1
                                   return concat({p[2], p[0] * p[1]}, 0);
                                 }}};
// Repeated indices: the backward must add both gradients into the same row.
const OpRegistration kIndexSelect{
    {.name = "index_select",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {3, 4, 2}),
                                      Tensor::from_vector<int64_t>({2, 0, 2, 3, 2}, {5})};
         },
     .run = [](const std::vector<Tensor>& in) { return index_select(in[0], 1, in[1]); }}};
const OpRegistration kWhere{
    {.name = "where",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_mask(g, {3, 1}), random_normal(g, {3, 4}),
                                      random_normal(g, {4})};
         },
     .run = [](const std::vector<Tensor>& in) { return where(in[0], in[1], in[2]); }}};
const OpRegistration kMaskedFill{
    {.name = "masked_fill",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {3, 4}), random_mask(g, {4})};
         },
     .run = [](const std::vector<Tensor>& in) { return masked_fill(in[0], in[1], -2.5); }}};

}  // namespace
}  // namespace dssm
