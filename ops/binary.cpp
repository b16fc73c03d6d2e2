// Binary elementwise ops with NumPy broadcasting: out = a (op) b.
// Backward: d(a+b) = (g, g); d(a-b) = (g, -g); d(a*b) = (g*b, g*a); d(a/b) = (g/b, -g*a/b^2),
// each summed over the dims its input was broadcast along (sum_to).
#include "autograd/graph.hpp"
#include "cuda/kernels.hpp"
#include "ops/elementwise.hpp"
#include "ops/reduce.hpp"
#include "ops/registry.hpp"
#include "tensor/strided_loop.hpp"

namespace dssm {
namespace {

const char* binary_name(BinaryOp op) {
  constexpr const char* names[] = {"add", "sub", "mul", "div"};
  return names[static_cast<int>(op)];
}

void cpu_binary(BinaryOp op, const Tensor& out, const Tensor& a, const Tensor& b) {
  dispatch_floating(out.dtype(), binary_name(op), [&]<typename T>() {
    using C = compute_t<T>;
    dispatch_binary(op, [&]<BinaryOp kOp>() {
      const T* pa = a.data<T>();
      const T* pb = b.data<T>();
      T* po = out.data<T>();
      if (a.shape() == out.shape() && b.shape() == out.shape() && a.is_contiguous() &&
          b.is_contiguous()) {
        const int64_t n = out.numel();
#pragma omp parallel for simd if (n > 32768)
        for (int64_t i = 0; i < n; ++i) {
          po[i] = static_cast<T>(math::binary_forward<kOp, C>(static_cast<C>(pa[i]), pb[i]));
        }
        return;
      }
      const Strides sa = broadcast_strides(a.shape(), a.strides(), out.shape());
      const Strides sb = broadcast_strides(b.shape(), b.strides(), out.shape());
      for_each_row<3>(out.shape(), {out.strides(), sa, sb}, [&](const RowView<3>& row) {
        for (int64_t j = 0; j < row.length; ++j) {
          const C va = static_cast<C>(pa[row.row_offset[1] + j * row.inner_stride[1]]);
          const C vb = static_cast<C>(pb[row.row_offset[2] + j * row.inner_stride[2]]);
          po[row.row_offset[0] + j] = static_cast<T>(math::binary_forward<kOp, C>(va, vb));
        }
      });
    });
  });
}

}  // namespace

Tensor binary(BinaryOp op, const Tensor& a, const Tensor& b) {
  const char* name = binary_name(op);
  DSSM_CHECK(a.dtype() == b.dtype(), name, "dtype mismatch: {} vs {}", describe(a), describe(b));
  DSSM_CHECK(a.device() == b.device(), name, "device mismatch: {} vs {}", describe(a), describe(b));
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), name);
  Tensor out = Tensor::empty(shape, a.dtype(), a.device());
  if (out.numel() > 0) {
    if (out.is_cuda()) {
      cuda::binary(op, out, a, b);
    } else {
      cpu_binary(op, out, a, b);
    }
  }
  const bool a_grad = a.defined() && a.requires_grad(), b_grad = b.requires_grad();
  record(name, {a, b}, {out},
         [op, a = b_grad ? a.detach() : Tensor(), b = (a_grad || b_grad) ? b.detach() : Tensor(),
          out = op == BinaryOp::div ? out.detach() : Tensor(), a_shape = a.shape(),
          b_shape = b.shape()](const BackwardArgs& args) {
           const Tensor& g = args.grad();
           Tensor ga, gb;
           switch (op) {
             case BinaryOp::add:
               ga = g, gb = g;
               break;
             case BinaryOp::sub:
               ga = g;
               if (args.needs(1)) gb = neg(g);
               break;
             case BinaryOp::mul:
               if (args.needs(0)) ga = mul(g, b);
               if (args.needs(1)) gb = mul(g, a);
               break;
             case BinaryOp::div:
               if (args.needs(0)) ga = div(g, b);
               if (args.needs(1)) gb = neg(div(mul(g, out), b));
               break;
           }
           return std::vector<Tensor>{args.needs(0) ? sum_to(ga, a_shape) : Tensor(),
                                      args.needs(1) ? sum_to(gb, b_shape) : Tensor()};
         });
  return out;
}

Tensor add(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::add, a, b);
}
Tensor sub(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::sub, a, b);
}
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::mul, a, b);
}
Tensor div(const Tensor& a, const Tensor& b) {
  return binary(BinaryOp::div, a, b);
}

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < grad.dim(); ++d) {
    if (d < lead || (shape[d - lead] == 1 && grad.size(d) != 1)) dims.push_back(d);
  }
  return sum(grad, dims, true).reshape(shape);
}

namespace {

// Each binary op is checked with both operands broadcast: a [3, 1, 4] against b [2, 4].
GradcheckCase binary_case(const char* name, BinaryOp op) {
  return {.name = name,
          .make_inputs =
              [op](Generator& g) {
                Tensor b = random_normal(g, {2, 4});
                if (op == BinaryOp::div) b = add_scalar(abs(b), 0.5);  // keep away from 0
                return std::vector<Tensor>{random_normal(g, {3, 1, 4}), b};
              },
          .run = [op](const std::vector<Tensor>& in) { return binary(op, in[0], in[1]); }};
}

const OpRegistration kAdd{binary_case("add", BinaryOp::add)};
const OpRegistration kSub{binary_case("sub", BinaryOp::sub)};
const OpRegistration kMul{binary_case("mul", BinaryOp::mul)};
const OpRegistration kDiv{binary_case("div", BinaryOp::div)};

}  // namespace
}  // namespace dssm
