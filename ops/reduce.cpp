// Reductions. Every reduction is done as "rows": the reduced dims are moved last and the input
// made contiguous, so the kernel reduces each row of a [outer, inner] matrix.
// Backward: sum spreads g over the reduced dims (expand); mean also divides by their size;
// max sends g to the argmax of each row.
#include <algorithm>
#include <limits>

#include "autograd/graph.hpp"
#include "cuda/kernels.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/registry.hpp"

namespace dssm {
namespace {

struct RowLayout {
  Tensor rows;       // [outer, inner], contiguous
  Shape kept_shape;  // the output shape with keepdim=true
  Shape out_shape;   // the output shape as requested
};

RowLayout to_rows(const Tensor& x, std::vector<int64_t> dims, bool keepdim, const char* op) {
  for (int64_t& d : dims) d = wrap_dim(d, x.dim(), op);
  std::sort(dims.begin(), dims.end());
  DSSM_CHECK(std::adjacent_find(dims.begin(), dims.end()) == dims.end(), op, "dim repeated");
  std::vector<int64_t> order;
  RowLayout layout;
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < x.dim(); ++d) {
    const bool reduced = std::binary_search(dims.begin(), dims.end(), d);
    layout.kept_shape.push_back(reduced ? 1 : x.size(d));
    if (!reduced) {
      order.push_back(d);
      layout.out_shape.push_back(x.size(d));
      outer *= x.size(d);
    }
  }
  for (int64_t d : dims) order.push_back(d), inner *= x.size(d);
  if (keepdim) layout.out_shape = layout.kept_shape;
  // Detached: the reduction's own backward handles the permutation.
  layout.rows = x.detach().permute(order).contiguous().reshape({outer, inner});
  return layout;
}

void cpu_reduce_rows(ReduceOp op, const Tensor& out, const Tensor& indices, const Tensor& rows) {
  dispatch_floating(rows.dtype(), "reduce", [&]<typename T>() {
    using C = compute_t<T>;
    const int64_t outer = rows.size(0), inner = rows.size(1);
    const T* in = rows.data<T>();
    T* o = out.data<T>();
    int64_t* idx = indices.defined() ? indices.data<int64_t>() : nullptr;
#pragma omp parallel for if (outer * inner > 32768)
    for (int64_t r = 0; r < outer; ++r) {
      const T* row = in + r * inner;
      if (op == ReduceOp::sum) {
        C total = 0;
#pragma omp simd reduction(+ : total)
        for (int64_t j = 0; j < inner; ++j) total += static_cast<C>(row[j]);
        o[r] = static_cast<T>(total);
      } else {
        C best = -std::numeric_limits<C>::infinity();
        int64_t at = 0;
        for (int64_t j = 0; j < inner; ++j) {
          const C v = static_cast<C>(row[j]);
          if (v > best || (j == 0)) best = v, at = j;
        }
        o[r] = static_cast<T>(best);
        if (idx) idx[r] = at;
      }
    }
  });
}

// The inverse of max's row reduction: a [outer, inner] tensor of zeros with g[r] at indices[r].
Tensor scatter_rows(const Tensor& g, const Tensor& indices, int64_t inner) {
  const int64_t outer = indices.numel();
  Tensor out = Tensor::zeros({outer, inner}, g.dtype(), g.device());
  const Tensor values = g.contiguous();
  if (out.is_cuda()) {
    cuda::scatter_rows(out, values, indices);
    return out;
  }
  dispatch_floating(g.dtype(), "max backward", [&]<typename T>() {
    const T* v = values.data<T>();
    const int64_t* idx = indices.data<int64_t>();
    T* o = out.data<T>();
    for (int64_t r = 0; r < outer; ++r) o[r * inner + idx[r]] = v[r];
  });
  return out;
}

// Runs the row kernel; `indices` is filled for max.
Tensor reduce_rows(ReduceOp op, const RowLayout& layout, const Tensor& indices) {
  Tensor out = Tensor::empty({layout.rows.size(0)}, layout.rows.dtype(), layout.rows.device());
  if (out.is_cuda()) {
    cuda::reduce_rows(op, out, indices, layout.rows);
  } else {
    cpu_reduce_rows(op, out, indices, layout.rows);
  }
  return out.reshape(layout.out_shape);
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  DSSM_CHECK(is_floating(x.dtype()), "sum", "expected a floating tensor, got {}", describe(x));
  const RowLayout layout = to_rows(x, dims, keepdim, "sum");
  Tensor out = reduce_rows(ReduceOp::sum, layout, Tensor());
  record("sum", {x}, {out},
         [kept = layout.kept_shape, shape = x.shape()](const BackwardArgs& args) {
           return std::vector<Tensor>{args.grad().reshape(kept).expand(shape)};
         });
  return out;
}

Tensor sum(const Tensor& x) {
  std::vector<int64_t> all(static_cast<size_t>(x.dim()));
  for (int64_t d = 0; d < x.dim(); ++d) all[static_cast<size_t>(d)] = d;
  return sum(x, all, false);
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  const Tensor total = sum(x, dims, keepdim);
  const int64_t count = total.numel() == 0 ? 0 : x.numel() / total.numel();
  return mul_scalar(total, 1.0 / static_cast<double>(std::max<int64_t>(count, 1)));
}

Tensor mean(const Tensor& x) {
  return mul_scalar(sum(x), 1.0 / std::max<int64_t>(x.numel(), 1));
}

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  DSSM_CHECK(is_floating(x.dtype()), "max", "expected a floating tensor, got {}", describe(x));
  DSSM_CHECK(x.numel() > 0, "max", "cannot reduce an empty tensor {}", describe(x));
  const int64_t d = wrap_dim(dim, x.dim(), "max");
  const RowLayout layout = to_rows(x, {d}, keepdim, "max");
  const Tensor indices = Tensor::empty({layout.rows.size(0)}, DType::i64, x.device());
  Tensor out = reduce_rows(ReduceOp::max, layout, indices);
  record("max", {x}, {out},
         [indices, d, kept = layout.kept_shape, shape = x.shape()](const BackwardArgs& args) {
           // Rows were [all dims but d, d]; scatter there, then move dim d back into place.
           Shape row_shape;
           std::vector<int64_t> back(shape.size());
           for (int64_t i = 0, k = 0; i < static_cast<int64_t>(shape.size()); ++i) {
             if (i != d) row_shape.push_back(shape[i]), back[i] = k++;
           }
           row_shape.push_back(shape[d]);
           back[d] = static_cast<int64_t>(shape.size()) - 1;
           const Tensor rows = scatter_rows(args.grad(), indices, shape[d]);
           return std::vector<Tensor>{rows.reshape(row_shape).permute(back).contiguous()};
         });
  return out;
}

Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  const int64_t d = wrap_dim(dim, x.dim(), "argmax");
  const RowLayout layout = to_rows(x, {d}, keepdim, "argmax");
  const Tensor indices = Tensor::empty({layout.rows.size(0)}, DType::i64, x.device());
  reduce_rows(ReduceOp::max, layout, indices);
  return indices.reshape(layout.out_shape);
}

namespace {

const OpRegistration kSumAll{{.name = "sum",
                              .make_inputs =
                                  [](Generator& g) {
                                    return std::vector<Tensor>{random_normal(g, {3, 4, 2})};
                                  },
                              .run = [](const std::vector<Tensor>& in) { return sum(in[0]); }}};
const OpRegistration kSumDims{{.name = "sum_dims",
                               .make_inputs =
                                   [](Generator& g) {
                                     return std::vector<Tensor>{random_normal(g, {3, 4, 2})};
                                   },
                               .run =
                                   [](const std::vector<Tensor>& in) {
                                     return sum(in[0], {0, 2}, false);
                                   }}};
const OpRegistration kMeanKeepdim{
    {.name = "mean_keepdim",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {3, 4, 2})};
         },
     .run = [](const std::vector<Tensor>& in) { return mean(in[0], {1}, true); }}};
const OpRegistration kMax{
    {.name = "max",
     .make_inputs =
         [](Generator& g) {
           return std::vector<Tensor>{random_normal(g, {3, 5, 2})};
         },
     .run = [](const std::vector<Tensor>& in) { return max(in[0], 1, false); }}};

}  // namespace
}  // namespace dssm
