// Causal attention on cuDNN's fused flash-attention engines (cuda/kernels_attention.hpp), written
// against the cuDNN 9 backend (graph) API of cudnn_graph.h. Plain C++: no kernels of our own.
//
// The math, per batch element and head (Vaswani et al. 2017, "Attention Is All You Need", Eq. 1):
//   S = scale Q K^T,   S_ij = -inf where j > i + (S_len - T)   (causal),
//   P = softmax over each row of S,   O = P V.
// The fusion (Dao et al. 2022, "FlashAttention"): a kernel never writes the T x S matrices S or P
// to memory. It walks over blocks of keys, keeping per query row the running maximum m and the
// running sum l of exp(S_ij - m); when a block raises the maximum to m', the sum and the partial
// output so far are rescaled by exp(m - m') (the "online softmax"), so one pass gives O exactly.
// Per row it keeps the logsumexp L = m + log l: the "stats", f32 [B, H, T, 1].
// Backward recomputes P = exp(S - L) block by block from Q, K and L instead of storing it:
//   dV = P^T dO,  dP = dO V^T,  D_i = sum_c dO_ic O_ic  (= sum_j P_ij dP_ij),
//   dS = scale P * (dP - D),  dQ = dS K,  dK = dS^T Q.
//
// cuDNN does not take "attention" as one call here: we describe these formulas as a graph of its
// generic operations (matmul, pointwise, reduction, reshape) on tensor descriptors, with every
// intermediate marked virtual (never materialised), laid out the way NVIDIA's cudnn-frontend
// lays out its SDPA graphs, and cuDNN's heuristics match the graph to a fused engine. Building a
// plan (graph -> heuristics -> engine config -> execution plan) takes milliseconds to seconds (some
// engines compile at run time), so plans are built once per configuration and cached.
#include "cuda/kernels_attention.hpp"

#if DSSM_WITH_CUDNN

#include <cudnn_graph.h>
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "cuda/backend.hpp"
#include "cuda/stream.hpp"
#include "tensor/error.hpp"

namespace dssm::cuda {
namespace {

constexpr const char* kOp = "causal_attention";
using Dims = std::vector<int64_t>;
using Handle = cudnnBackendDescriptor_t;

// ---- errors and descriptors ---------------------------------------------------------------------

// cuDNN's name for the status and its last detailed message (e.g. which check an engine failed).
std::string cudnn_message(cudnnStatus_t status) {
  std::array<char, 1024> detail{};
  cudnnGetLastErrorString(detail.data(), detail.size());
  return detail[0] ? fmt::format("{} ({})", cudnnGetErrorString(status), detail.data())
                   : std::string(cudnnGetErrorString(status));
}

void check_cudnn(cudnnStatus_t status, std::string_view call) {
  if (status != CUDNN_STATUS_SUCCESS) fail(kOp, "{} failed: {}", call, cudnn_message(status));
}

// One backend descriptor, destroyed with its owner; `label` names it in error messages.
class Descriptor {
 public:
  Descriptor(cudnnBackendDescriptorType_t type, std::string label) : label_(std::move(label)) {
    check_cudnn(cudnnBackendCreateDescriptor(type, &handle_),
                "cudnnBackendCreateDescriptor(" + label_ + ")");
  }
  Descriptor(Descriptor&& other) noexcept
      : handle_(std::exchange(other.handle_, nullptr)), label_(std::move(other.label_)) {}
  Descriptor(const Descriptor&) = delete;
  Descriptor& operator=(const Descriptor&) = delete;
  Descriptor& operator=(Descriptor&&) = delete;
  ~Descriptor() {
    if (handle_) cudnnBackendDestroyDescriptor(handle_);
  }

  Handle get() const { return handle_; }
  const std::string& label() const { return label_; }

  Descriptor& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, int64_t count,
                  const void* values) {
    check_cudnn(
        cudnnBackendSetAttribute(handle_, name, type, count, values),
        fmt::format("cudnnBackendSetAttribute({}, attribute {})", label_, static_cast<int>(name)));
    return *this;
  }
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnDataType_t value) {
    return set(name, CUDNN_TYPE_DATA_TYPE, 1, &value);
  }
  Descriptor& set(cudnnBackendAttributeName_t name, const Dims& values) {
    return set(name, CUDNN_TYPE_INT64, static_cast<int64_t>(values.size()), values.data());
  }
  Descriptor& set(cudnnBackendAttributeName_t name, Handle value) {
    return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &value);
  }
  Descriptor& set(cudnnBackendAttributeName_t name, cudnnHandle_t value) {
    return set(name, CUDNN_TYPE_HANDLE, 1, &value);
  }

  cudnnStatus_t try_finalize() { return cudnnBackendFinalize(handle_); }
  void finalize() { check_cudnn(try_finalize(), "cudnnBackendFinalize(" + label_ + ")"); }

 private:
  Handle handle_ = nullptr;
  std::string label_;
};

int64_t get_int64(const Descriptor& d, cudnnBackendAttributeName_t name) {
  int64_t value = 0, count = 0;
  check_cudnn(
      cudnnBackendGetAttribute(d.get(), name, CUDNN_TYPE_INT64, 1, &count, &value),
      fmt::format("cudnnBackendGetAttribute({}, attribute {})", d.label(), static_cast<int>(name)));
  return value;
}

// One cuDNN handle per device, on densessm's stream, made on first use.
cudnnHandle_t cudnn_handle() {
  constexpr int kMaxDevices = 16;
  static std::array<cudnnHandle_t, kMaxDevices> handles{};
  static std::array<std::once_flag, kMaxDevices> created;
  int device = -1;
  DSSM_CHECK(cudaGetDevice(&device) == cudaSuccess && device >= 0 && device < kMaxDevices, kOp,
             "no usable current CUDA device (got {})", device);
  std::call_once(created[device], [&] {
    check_cudnn(cudnnCreate(&handles[device]), "cudnnCreate");
    check_cudnn(cudnnSetStream(handles[device], current_stream()), "cudnnSetStream");
  });
  return handles[device];
}

// ---- graphs -------------------------------------------------------------------------------------

// The uids by which execution binds memory (or a host scalar) to a graph's non-virtual tensors.
enum Uid : int64_t {
  kQ = 1,
  kK,
  kV,
  kO,
  kStats,
  kScale,
  kMaskValue,  // what masked scores become: the lowest float
  kKeyCount,   // S and T, to shift the causal diagonal when S > T
  kQueryCount,
  kGradOut,
  kGradQ,
  kGradK,
  kGradV,
  kRowDot,    // backward's D = rowsum(dO * O), f32 [B, H, T, 1]
  kGradQSum,  // backward's f32 accumulator of dQ
  kOne,
  kFirstVirtual = 100,
};

Dims packed_strides(const Dims& dims) {
  Dims strides(dims.size(), 1);
  for (size_t i = dims.size() - 1; i > 0; --i) strides[i - 1] = strides[i] * dims[i];
  return strides;
}

Dims swap_last_two(Dims v) {
  std::swap(v[2], v[3]);
  return v;
}

// One pointwise node: y = mode(x[, b][, t]); `t` is binary select's condition.
struct Pointwise {
  cudnnPointwiseMode_t mode;
  Handle x = nullptr, b = nullptr, t = nullptr, y = nullptr;
  cudnnDataType_t precision = CUDNN_DATA_FLOAT;  // what the node computes in
  int64_t axis = -1;                             // GEN_INDEX only
  const char* label = "pointwise";
};

// An execution plan and every descriptor it was made from (kept alive as long as the plan).
struct Plan {
  std::vector<Descriptor> descriptors;
  Descriptor execution_plan;
  int64_t workspace_bytes = 0;
};

// The operations of one graph and the tensor descriptors they connect.
class Graph {
 public:
  explicit Graph(std::string name) : name_(std::move(name)) {}

  // A tensor bound to memory at execution, by `uid`.
  Handle bound(int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides,
               const char* label) {
    return tensor(uid, type, dims, strides, false, false, label);
  }
  // A scalar passed by value (a host pointer at execution), broadcast against 4-D tensors.
  Handle scalar(int64_t uid, cudnnDataType_t type, const char* label) {
    return tensor(uid, type, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true, label);
  }
  // An intermediate the fused kernel keeps in registers: never in memory, packed or `strides`.
  Handle temp(cudnnDataType_t type, const Dims& dims, const char* label) {
    return temp(type, dims, packed_strides(dims), label);
  }
  Handle temp(cudnnDataType_t type, const Dims& dims, const Dims& strides, const char* label) {
    return tensor(next_virtual_uid_++, type, dims, strides, true, false, label);
  }

  // c = a @ b over the last two dims, batched over the first two, f32 accumulation.
  void matmul(Handle a, Handle b, Handle c, const char* label) {
    Descriptor settings(CUDNN_BACKEND_MATMUL_DESCRIPTOR, label);
    settings.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_DATA_FLOAT).finalize();
    Descriptor op(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR, label);
    op.set(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
        .set(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
        .set(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
        .set(CUDNN_ATTR_OPERATION_MATMUL_DESC, settings.get());
    keep(std::move(settings));
    add_operation(std::move(op));
  }

  void pointwise(const Pointwise& p) {
    Descriptor settings(CUDNN_BACKEND_POINTWISE_DESCRIPTOR, p.label);
    settings.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, 1, &p.mode)
        .set(CUDNN_ATTR_POINTWISE_MATH_PREC, p.precision);
    if (p.axis >= 0) settings.set(CUDNN_ATTR_POINTWISE_AXIS, Dims{p.axis});
    settings.finalize();
    Descriptor op(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR, p.label);
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, settings.get())
        .set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, p.x)
        .set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, p.y);
    if (p.b) op.set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, p.b);
    if (p.t) op.set(CUDNN_ATTR_OPERATION_POINTWISE_TDESC, p.t);
    keep(std::move(settings));
    add_operation(std::move(op));
  }

  // y = the sum or maximum of x over the dims where y has size 1.
  void reduction(cudnnReduceTensorOp_t reduce, Handle x, Handle y, const char* label) {
    Descriptor settings(CUDNN_BACKEND_REDUCTION_DESCRIPTOR, label);
    settings.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, 1, &reduce)
        .set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_DATA_FLOAT)
        .finalize();
    Descriptor op(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR, label);
    op.set(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
        .set(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
        .set(CUDNN_ATTR_OPERATION_REDUCTION_DESC, settings.get());
    keep(std::move(settings));
    add_operation(std::move(op));
  }

  // y = x read with y's dims and strides (a transpose when they swap).
  void reshape(Handle x, Handle y, const char* label) {
    Descriptor op(CUDNN_BACKEND_OPERATION_RESHAPE_DESCRIPTOR, label);
    op.set(CUDNN_ATTR_OPERATION_RESHAPE_XDESC, x).set(CUDNN_ATTR_OPERATION_RESHAPE_YDESC, y);
    add_operation(std::move(op));
  }

  // Finalises the graph and makes an execution plan from the first engine configuration that
  // cuDNN's heuristics offer (mode A, then the fallback list) and that finalises; throws with
  // cuDNN's reasons when there is none.
  std::unique_ptr<Plan> build(cudnnHandle_t handle) && {
    Descriptor graph(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR, name_);
    graph
        .set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR,
             static_cast<int64_t>(operations_.size()), operations_.data())
        .set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, handle)
        .finalize();
    std::string reasons;
    for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
      for (Descriptor& config : engine_configs(graph, mode, reasons)) {
        Descriptor plan(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR, name_ + " plan");
        plan.set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, handle)
            .set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, config.get());
        const cudnnStatus_t status = plan.try_finalize();
        if (status != CUDNN_STATUS_SUCCESS) {
          reasons += fmt::format("; an engine: {}", cudnn_message(status));
          continue;
        }
        const int64_t workspace = get_int64(plan, CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE);
        keep(std::move(graph));
        keep(std::move(config));
        return std::make_unique<Plan>(Plan{std::move(descriptors_), std::move(plan), workspace});
      }
    }
    fail(kOp, "cuDNN has no engine for the {} graph{}", name_,
         reasons.empty() ? " (its heuristics offered none)" : reasons);
  }

 private:
  Handle tensor(int64_t uid, cudnnDataType_t type, const Dims& dims, const Dims& strides,
                bool is_virtual, bool by_value, const char* label) {
    Descriptor d(CUDNN_BACKEND_TENSOR_DESCRIPTOR, label);
    d.set(CUDNN_ATTR_TENSOR_DATA_TYPE, type)
        .set(CUDNN_ATTR_TENSOR_DIMENSIONS, dims)
        .set(CUDNN_ATTR_TENSOR_STRIDES, strides)
        .set(CUDNN_ATTR_TENSOR_UNIQUE_ID, Dims{uid})
        .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, Dims{16})
        .set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, 1, &is_virtual)
        .set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, 1, &by_value)
        .finalize();
    return keep(std::move(d));
  }

  // The configurations heuristics `mode` suggests, best first (none, with the reason appended to
  // `reasons`, when it cannot handle the graph). The heuristics descriptor is kept with the graph.
  std::vector<Descriptor> engine_configs(const Descriptor& graph, cudnnBackendHeurMode_t mode,
                                         std::string& reasons) {
    Descriptor heuristics(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR, "heuristics");
    heuristics.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph.get())
        .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, 1, &mode);
    if (const cudnnStatus_t status = heuristics.try_finalize(); status != CUDNN_STATUS_SUCCESS) {
      reasons +=
          fmt::format("; heuristics mode {}: {}", static_cast<int>(mode), cudnn_message(status));
      return {};
    }
    int64_t count = 0;
    check_cudnn(cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                         CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
                "cudnnBackendGetAttribute(heuristics, result count)");
    std::vector<Descriptor> configs;
    std::vector<Handle> handles;
    for (int64_t i = 0; i < count; ++i) {
      configs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR, "engine config");
      handles.push_back(configs.back().get());
    }
    int64_t returned = 0;
    check_cudnn(
        cudnnBackendGetAttribute(heuristics.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                 CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &returned, handles.data()),
        "cudnnBackendGetAttribute(heuristics, results)");
    while (static_cast<int64_t>(configs.size()) > returned) configs.pop_back();
    keep(std::move(heuristics));
    return configs;
  }

  Handle keep(Descriptor d) {
    descriptors_.push_back(std::move(d));
    return descriptors_.back().get();
  }
  void add_operation(Descriptor op) {
    op.finalize();
    operations_.push_back(keep(std::move(op)));
  }

  std::string name_;
  std::vector<Descriptor> descriptors_;
  std::vector<Handle> operations_;
  int64_t next_virtual_uid_ = kFirstVirtual;
};

// The shapes and strides a plan is made for.
struct Layout {
  int device = 0;
  int64_t batch = 0, heads = 0, queries = 0, keys = 0, head_dim = 0;
  Dims q_strides, k_strides, v_strides;

  Dims q_dims() const { return {batch, heads, queries, head_dim}; }
  Dims kv_dims() const { return {batch, heads, keys, head_dim}; }
  Dims scores() const { return {batch, heads, queries, keys}; }
  Dims rows() const { return {batch, heads, queries, 1}; }
  // [B, H, T, d] read from a [B, T, H, d] buffer.
  Dims out_strides() const { return {queries * heads * head_dim, head_dim, heads * head_dim, 1}; }
  // S > T: the diagonal of the causal mask shifts right by S - T.
  bool shifted() const { return keys != queries; }
};

constexpr cudnnDataType_t kIo = CUDNN_DATA_BFLOAT16, kF32 = CUDNN_DATA_FLOAT;

// masked_ij = scores_ij where key j is visible to query i (j <= i + S - T), the lowest float
// elsewhere: index generators along the rows and columns, a comparison and a select, as
// cudnn-frontend builds its (bottom-right aligned) causal mask.
Handle causal_mask(Graph& g, Handle scores, const Layout& l) {
  Handle row = g.temp(CUDNN_DATA_INT32, l.scores(), "row index");
  g.pointwise({.mode = CUDNN_POINTWISE_GEN_INDEX,
               .x = scores,
               .y = row,
               .precision = CUDNN_DATA_INT32,
               .axis = 2,
               .label = "gen row index"});
  if (l.shifted()) {  // row + S - T, as two integer nodes
    const Handle plus_keys = g.temp(CUDNN_DATA_INT32, l.scores(), "row + S");
    g.pointwise({.mode = CUDNN_POINTWISE_ADD,
                 .x = row,
                 .b = g.scalar(kKeyCount, CUDNN_DATA_INT32, "S"),
                 .y = plus_keys,
                 .precision = CUDNN_DATA_INT32,
                 .label = "row + S"});
    row = g.temp(CUDNN_DATA_INT32, l.scores(), "row + S - T");
    g.pointwise({.mode = CUDNN_POINTWISE_SUB,
                 .x = plus_keys,
                 .b = g.scalar(kQueryCount, CUDNN_DATA_INT32, "T"),
                 .y = row,
                 .precision = CUDNN_DATA_INT32,
                 .label = "row + S - T"});
  }
  const Handle column = g.temp(CUDNN_DATA_INT32, l.scores(), "column index");
  g.pointwise({.mode = CUDNN_POINTWISE_GEN_INDEX,
               .x = scores,
               .y = column,
               .precision = CUDNN_DATA_INT32,
               .axis = 3,
               .label = "gen column index"});
  const Handle visible = g.temp(CUDNN_DATA_BOOLEAN, l.scores(), "visible");
  g.pointwise({.mode = CUDNN_POINTWISE_CMP_GE,
               .x = row,
               .b = column,
               .y = visible,
               .precision = CUDNN_DATA_BOOLEAN,
               .label = "row >= column"});
  const Handle masked = g.temp(kF32, l.scores(), "masked scores");
  g.pointwise({.mode = CUDNN_POINTWISE_BINARY_SELECT,
               .x = scores,
               .b = g.scalar(kMaskValue, kF32, "mask value"),
               .t = visible,
               .y = masked,
               .label = "select visible"});
  return masked;
}

// scale * (Q @ K^T), f32, then masked: K is bound as K^T (dims and strides of its last two dims
// swapped, no copy).
Handle masked_scores(Graph& g, Handle q, Handle kt, Handle scale, const Layout& l) {
  const Handle s = g.temp(kF32, l.scores(), "Q K^T");
  g.matmul(q, kt, s, "Q @ K^T");
  const Handle scaled = g.temp(kF32, l.scores(), "scaled scores");
  g.pointwise({.mode = CUDNN_POINTWISE_MUL, .x = s, .b = scale, .y = scaled, .label = "scale"});
  return causal_mask(g, scaled, l);
}

// P = softmax(masked) in bf16 (the second matmul's operand) and stats = max + log(sum exp(.-max)).
Handle softmax_with_stats(Graph& g, Handle masked, Handle stats, const Layout& l) {
  const Handle max = g.temp(kF32, l.rows(), "row max");
  g.reduction(CUDNN_REDUCE_TENSOR_MAX, masked, max, "row max");
  const Handle centered = g.temp(kF32, l.scores(), "scores - max");
  g.pointwise(
      {.mode = CUDNN_POINTWISE_SUB, .x = masked, .b = max, .y = centered, .label = "sub max"});
  const Handle exps = g.temp(kF32, l.scores(), "exp");
  g.pointwise({.mode = CUDNN_POINTWISE_EXP, .x = centered, .y = exps, .label = "exp"});
  const Handle sum = g.temp(kF32, l.rows(), "row sum");
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, exps, sum, "row sum");
  const Handle log_sum = g.temp(kF32, l.rows(), "log sum");
  g.pointwise({.mode = CUDNN_POINTWISE_LOG, .x = sum, .y = log_sum, .label = "log sum"});
  g.pointwise({.mode = CUDNN_POINTWISE_ADD, .x = max, .b = log_sum, .y = stats, .label = "stats"});
  const Handle p = g.temp(kIo, l.scores(), "P");
  g.pointwise({.mode = CUDNN_POINTWISE_DIV, .x = exps, .b = sum, .y = p, .label = "normalise"});
  return p;
}

Graph forward_graph(const Layout& l) {
  Graph g("attention forward");
  const Handle q = g.bound(kQ, kIo, l.q_dims(), l.q_strides, "Q");
  const Handle kt = g.bound(kK, kIo, swap_last_two(l.kv_dims()), swap_last_two(l.k_strides), "K^T");
  const Handle v = g.bound(kV, kIo, l.kv_dims(), l.v_strides, "V");
  const Handle out = g.bound(kO, kIo, l.q_dims(), l.out_strides(), "O");
  const Handle stats = g.bound(kStats, kF32, l.rows(), packed_strides(l.rows()), "stats");
  const Handle scale = g.scalar(kScale, kF32, "scale");
  const Handle p = softmax_with_stats(g, masked_scores(g, q, kt, scale, l), stats, l);
  g.matmul(p, v, out, "P @ V");
  return g;
}

// The bound tensors of the backward graph.
struct BackwardTensors {
  Handle q, kt, vt, out, grad_out, stats, dq, dk, dv, row_dot, dq_sum, scale;
};

BackwardTensors bind_backward(Graph& g, const Layout& l) {
  const Dims q_dims = l.q_dims(), kt_dims = swap_last_two(l.kv_dims());
  return {
      .q = g.bound(kQ, kIo, q_dims, l.q_strides, "Q"),
      .kt = g.bound(kK, kIo, kt_dims, swap_last_two(l.k_strides), "K^T"),
      .vt = g.bound(kV, kIo, kt_dims, swap_last_two(l.v_strides), "V^T"),
      .out = g.bound(kO, kIo, q_dims, l.out_strides(), "O"),
      .grad_out = g.bound(kGradOut, kIo, q_dims, l.out_strides(), "dO"),
      .stats = g.bound(kStats, kF32, l.rows(), packed_strides(l.rows()), "stats"),
      .dq = g.bound(kGradQ, kIo, q_dims, packed_strides(q_dims), "dQ"),
      .dk = g.bound(kGradK, kIo, l.kv_dims(), packed_strides(l.kv_dims()), "dK"),
      .dv = g.bound(kGradV, kIo, l.kv_dims(), packed_strides(l.kv_dims()), "dV"),
      .row_dot = g.bound(kRowDot, kF32, l.rows(), packed_strides(l.rows()), "D"),
      .dq_sum = g.bound(kGradQSum, kF32, q_dims, packed_strides(q_dims), "dQ f32"),
      .scale = g.scalar(kScale, kF32, "scale"),
  };
}

// D = rowsum(dO * O) (times one: the slot of dropout's scale in cudnn-frontend's graph).
void add_row_dot(Graph& g, const BackwardTensors& t, const Layout& l) {
  const Handle product = g.temp(kF32, l.q_dims(), "dO * O");
  g.pointwise(
      {.mode = CUDNN_POINTWISE_MUL, .x = t.grad_out, .b = t.out, .y = product, .label = "dO * O"});
  const Handle sum = g.temp(kF32, l.rows(), "rowsum(dO * O)");
  g.reduction(CUDNN_REDUCE_TENSOR_ADD, product, sum, "rowsum(dO * O)");
  g.pointwise({.mode = CUDNN_POINTWISE_MUL,
               .x = sum,
               .b = g.scalar(kOne, kF32, "one"),
               .y = t.row_dot,
               .label = "D"});
}

// P^T or dS^T as the first operand of a matmul: bf16, read transposed.
Handle transposed(Graph& g, Handle x, const Layout& l, const char* label) {
  const Dims dims{l.batch, l.heads, l.keys, l.queries};
  const Handle xt =
      g.temp(kIo, dims, {l.heads * l.queries * l.keys, l.queries * l.keys, 1, l.keys}, label);
  g.reshape(x, xt, label);
  return xt;
}

Graph backward_graph(const Layout& l) {
  Graph g("attention backward");
  const BackwardTensors t = bind_backward(g, l);
  add_row_dot(g, t, l);
  // P = exp(masked scores - L), recomputed; dV = P^T dO.
  const Handle centered = g.temp(kF32, l.scores(), "scores - L");
  g.pointwise({.mode = CUDNN_POINTWISE_SUB,
               .x = masked_scores(g, t.q, t.kt, t.scale, l),
               .b = t.stats,
               .y = centered,
               .label = "sub stats"});
  const Handle p = g.temp(kF32, l.scores(), "P");
  g.pointwise({.mode = CUDNN_POINTWISE_EXP, .x = centered, .y = p, .label = "exp"});
  g.matmul(transposed(g, p, l, "P^T"), t.grad_out, t.dv, "P^T @ dO");
  // dS = scale * P * (dO V^T - D); dK = dS^T Q.
  const Handle dp = g.temp(kF32, l.scores(), "dP");
  g.matmul(t.grad_out, t.vt, dp, "dO @ V^T");
  const Handle dp_centered = g.temp(kF32, l.scores(), "dP - D");
  g.pointwise(
      {.mode = CUDNN_POINTWISE_SUB, .x = dp, .b = t.row_dot, .y = dp_centered, .label = "dP - D"});
  const Handle weighted = g.temp(kF32, l.scores(), "P * (dP - D)");
  g.pointwise({.mode = CUDNN_POINTWISE_MUL,
               .x = dp_centered,
               .b = p,
               .y = weighted,
               .label = "P * (dP - D)"});
  const Handle ds = g.temp(kF32, l.scores(), "dS");
  g.pointwise({.mode = CUDNN_POINTWISE_MUL, .x = weighted, .b = t.scale, .y = ds, .label = "dS"});
  g.matmul(transposed(g, ds, l, "dS^T"), t.q, t.dk, "dS^T @ Q");
  // dQ = dS K, accumulated in f32 (K^T read back as K), then rounded to bf16.
  const Handle k = g.temp(kF32, l.kv_dims(), l.k_strides, "K");
  g.reshape(t.kt, k, "K^T -> K");
  g.matmul(ds, k, t.dq_sum, "dS @ K");
  g.pointwise({.mode = CUDNN_POINTWISE_IDENTITY, .x = t.dq_sum, .y = t.dq, .label = "dQ"});
  return g;
}

// ---- plans and execution ------------------------------------------------------------------------

enum class Pass { forward, backward };

// Built once per (pass, device, shape, strides): the plan, or why cuDNN could not make one.
struct CachedPlan {
  std::unique_ptr<Plan> plan;
  std::string refusal;
};

const CachedPlan& cached_plan(Pass pass, const Layout& l) {
  std::vector<int64_t> key{
      static_cast<int64_t>(pass), l.device, l.batch, l.heads, l.queries, l.keys, l.head_dim};
  for (const Dims* strides : {&l.q_strides, &l.k_strides, &l.v_strides}) {
    key.insert(key.end(), strides->begin(), strides->end());
  }
  // Plans live until the process ends (never destroyed: they may outlive the CUDA context).
  static std::mutex mutex;
  static auto* cache = new std::map<std::vector<int64_t>, CachedPlan>();
  std::lock_guard lock(mutex);
  auto [entry, inserted] = cache->try_emplace(std::move(key));
  if (inserted) {
    try {
      Graph graph = pass == Pass::forward ? forward_graph(l) : backward_graph(l);
      entry->second.plan = std::move(graph).build(cudnn_handle());
    } catch (const Error& e) {
      entry->second.refusal = e.what();
    }
  }
  return entry->second;
}

const Plan& plan_for(Pass pass, const Layout& l) {
  const CachedPlan& cached = cached_plan(pass, l);
  if (!cached.plan) throw Error(cached.refusal);
  return *cached.plan;
}

// Memory (or host scalars) bound to a graph's uids for one execution.
class VariantPack {
 public:
  VariantPack& bind(int64_t uid, void* data) {
    uids_.push_back(uid);
    pointers_.push_back(data);
    return *this;
  }

  // Runs `plan` on densessm's stream with a workspace from the caching allocator (freed when
  // this returns: the allocator reuses it only for work queued after this on the same stream).
  void run(const Plan& plan, Device device) const {
    const int64_t words = (plan.workspace_bytes + 3) / 4;
    const Tensor workspace = Tensor::empty({std::max<int64_t>(words, 1)}, DType::f32, device);
    void* workspace_data = workspace.raw_data();
    Descriptor pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR, "variant pack");
    pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64,
             static_cast<int64_t>(uids_.size()), uids_.data())
        .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR,
             static_cast<int64_t>(pointers_.size()), pointers_.data())
        .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, 1, &workspace_data)
        .finalize();
    check_cudnn(cudnnBackendExecute(cudnn_handle(), plan.execution_plan.get(), pack.get()),
                "cudnnBackendExecute(" + plan.execution_plan.label() + ")");
  }

 private:
  std::vector<int64_t> uids_;
  std::vector<void*> pointers_;
};

// The host scalars every execution passes by value (alive until cudnnBackendExecute returns).
struct Scalars {
  float scale;
  float mask_value = std::numeric_limits<float>::lowest();
  int32_t keys, queries;
  float one = 1.0f;
};

Scalars scalars_of(const Layout& l, double scale) {
  return {.scale = static_cast<float>(scale),
          .keys = static_cast<int32_t>(l.keys),
          .queries = static_cast<int32_t>(l.queries)};
}

void bind_scalars(VariantPack& pack, Scalars& s, const Layout& l) {
  pack.bind(kScale, &s.scale).bind(kMaskValue, &s.mask_value);
  if (l.shifted()) pack.bind(kKeyCount, &s.keys).bind(kQueryCount, &s.queries);
}

// ---- checks -------------------------------------------------------------------------------------

// Last dim contiguous, other strides multiples of 8 elements (size-1 dims aside), 16-byte aligned.
bool cudnn_compatible(const Tensor& t) {
  bool compatible = t.strides()[3] == 1 && reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0;
  for (int64_t i = 0; i < 3; ++i) {
    compatible = compatible && (t.size(i) == 1 || t.strides()[i] % 8 == 0);
  }
  return compatible;
}

void check_operand(const Tensor& t, const Tensor& q, const char* name) {
  DSSM_CHECK(t.dtype() == DType::bf16 && t.is_cuda() && t.device() == q.device(), kOp,
             "expected {} in bf16 on {}, got {}", name, q.device().str(), describe(t));
  DSSM_CHECK(
      cudnn_compatible(t), kOp,
      "expected {} with a contiguous last dim, strides that are multiples of 8 and a 16-byte "
      "aligned start, got {} with strides {}",
      name, describe(t), shape_str(t.strides()));
}

Layout layout_of(const Tensor& q, const Tensor& k, const Tensor& v) {
  DSSM_CHECK(q.dim() == 4 && k.dim() == 4 && k.shape() == v.shape() && q.size(0) == k.size(0) &&
                 q.size(1) == k.size(1) && q.size(3) == k.size(3) && q.size(2) <= k.size(2),
             kOp, "expected q [B, H, T, d], k and v [B, H, S, d] with S >= T, got {}, {}, {}",
             describe(q), describe(k), describe(v));
  check_operand(q, q, "q");
  check_operand(k, q, "k");
  check_operand(v, q, "v");
  return {.device = q.device().index,
          .batch = q.size(0),
          .heads = q.size(1),
          .queries = q.size(2),
          .keys = k.size(2),
          .head_dim = q.size(3),
          .q_strides = q.strides(),
          .k_strides = k.strides(),
          .v_strides = v.strides()};
}

// Equal strides where they matter: a dim of size 1 is never stepped along.
bool same_strides(const Tensor& t, const Dims& strides) {
  for (size_t i = 0; i < strides.size(); ++i) {
    if (t.shape()[i] > 1 && t.strides()[i] != strides[i]) return false;
  }
  return true;
}

void check_output_layout(const Tensor& t, const Layout& l, const Tensor& q, const char* name) {
  DSSM_CHECK(t.shape() == q.shape() && t.dtype() == q.dtype() && t.device() == q.device() &&
                 same_strides(t, l.out_strides()) &&
                 reinterpret_cast<uintptr_t>(t.raw_data()) % 16 == 0,
             kOp,
             "expected {} as a [B, H, T, d] view of a [B, T, H, d] buffer (strides {}), got {} "
             "with strides {}",
             name, shape_str(l.out_strides()), describe(t), shape_str(t.strides()));
}

void check_packed(const Tensor& t, const Dims& dims, DType dtype, const Tensor& q,
                  const char* name) {
  DSSM_CHECK(
      t.shape() == dims && t.dtype() == dtype && t.device() == q.device() && t.is_contiguous(), kOp,
      "expected {} as a contiguous {}{} on {}, got {}", name, dtype_name(dtype), shape_str(dims),
      q.device().str(), describe(t));
}

}  // namespace

std::string flash_attention_refusal(const Tensor& q, const Tensor& k, const Tensor& v,
                                    bool backward) {
  require_device(q.device().index);
  const Layout l = layout_of(q, k, v);
  const std::string& forward_refusal = cached_plan(Pass::forward, l).refusal;
  if (!forward_refusal.empty() || !backward) return forward_refusal;
  return cached_plan(Pass::backward, l).refusal;
}

void flash_attention_forward(const Tensor& out, const Tensor& stats, const Tensor& q,
                             const Tensor& k, const Tensor& v, double scale) {
  require_device(q.device().index);
  const Layout l = layout_of(q, k, v);
  check_output_layout(out, l, q, "the output");
  check_packed(stats, l.rows(), DType::f32, q, "stats");
  const Plan& plan = plan_for(Pass::forward, l);
  Scalars scalars = scalars_of(l, scale);
  VariantPack pack;
  pack.bind(kQ, q.raw_data())
      .bind(kK, k.raw_data())
      .bind(kV, v.raw_data())
      .bind(kO, out.raw_data())
      .bind(kStats, stats.raw_data());
  bind_scalars(pack, scalars, l);
  pack.run(plan, q.device());
}

void flash_attention_backward(const Tensor& dq, const Tensor& dk, const Tensor& dv, const Tensor& q,
                              const Tensor& k, const Tensor& v, const Tensor& out,
                              const Tensor& grad_out, const Tensor& stats, double scale) {
  require_device(q.device().index);
  const Layout l = layout_of(q, k, v);
  check_output_layout(out, l, q, "the output");
  check_output_layout(grad_out, l, q, "the output gradient");
  check_packed(stats, l.rows(), DType::f32, q, "stats");
  check_packed(dq, l.q_dims(), DType::bf16, q, "dq");
  check_packed(dk, l.kv_dims(), DType::bf16, q, "dk");
  check_packed(dv, l.kv_dims(), DType::bf16, q, "dv");
  const Plan& plan = plan_for(Pass::backward, l);
  // Scratch the graph names: D, and dQ's f32 accumulator (zeroed: cuDNN before 9.6 adds into it).
  const Tensor row_dot = Tensor::empty(l.rows(), DType::f32, q.device());
  const Tensor dq_sum = Tensor::zeros(l.q_dims(), DType::f32, q.device());
  Scalars scalars = scalars_of(l, scale);
  VariantPack pack;
  pack.bind(kQ, q.raw_data())
      .bind(kK, k.raw_data())
      .bind(kV, v.raw_data())
      .bind(kO, out.raw_data())
      .bind(kGradOut, grad_out.raw_data())
      .bind(kStats, stats.raw_data())
      .bind(kGradQ, dq.raw_data())
      .bind(kGradK, dk.raw_data())
      .bind(kGradV, dv.raw_data())
      .bind(kRowDot, row_dot.raw_data())
      .bind(kGradQSum, dq_sum.raw_data())
      .bind(kOne, &scalars.one);
  bind_scalars(pack, scalars, l);
  pack.run(plan, q.device());
}

}  // namespace dssm::cuda

#else  // CUDA without cuDNN: the op always takes its composite path.

#include "tensor/error.hpp"

namespace dssm::cuda {

std::string flash_attention_refusal(const Tensor&, const Tensor&, const Tensor&, bool) {
  return "densessm was built without cuDNN (libcudnn was not found at configure time)";
}
void flash_attention_forward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                             const Tensor&, double) {
  fail("causal_attention", "densessm was built without cuDNN");
}
void flash_attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                              const Tensor&, double) {
  fail("causal_attention", "densessm was built without cuDNN");
}

}  // namespace dssm::cuda

#endif
