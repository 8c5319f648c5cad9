// Matmul of a few float32 rows by compact (bfloat16 or int8) weights, on CPU
// (zoo.layers.packed: the sampler's decode steps).
//
// ZooSmallMatmul(x, w, scale) -> y
//   x:     float32 [M, K]  (a decode step's rows: M is small, a few to a few dozen)
//   w:     bfloat16 or int8 [P, K, 16]: the [K, N] weights in panels of 16 output columns,
//          panel p holding columns 16p .. 16p + 15 (N padded with zero columns to 16 P)
//   scale: float32 [16 P] for int8 weights (y[:, n] is multiplied by scale[n]), [0] for
//          bfloat16
//   y:     float32 [M, 16 P] = x @ (w * scale)
//
// A decode step is bound by memory traffic: every weight is read once per step for a handful
// of rows. The kernel streams the weights in their compact form (2 or 1 bytes each, no
// dequantized copy is ever written), widens them to float32 in registers and accumulates in
// float32. Each panel is contiguous, so a pass over kPanels panels reads kPanels sequential
// streams; panels are split over the CPU device's thread pool, and a task covers up to kRows
// rows per pass (the rows stay in L1, the panels of a pass in L2). With AVX-512 the inner
// loop is written with intrinsics; elsewhere a portable loop.

#include <algorithm>
#include <cstdint>
#include <cstring>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "tensorflow/core/framework/op.h"
#include "tensorflow/core/framework/op_kernel.h"
#include "tensorflow/core/framework/shape_inference.h"

namespace zoo {
namespace {

using tensorflow::OpKernel;
using tensorflow::OpKernelConstruction;
using tensorflow::OpKernelContext;
using tensorflow::Tensor;
using tensorflow::TensorShape;
using tensorflow::shape_inference::DimensionHandle;
using tensorflow::shape_inference::InferenceContext;
using tensorflow::shape_inference::ShapeHandle;

constexpr int kRows = 4;    // rows per pass over a group of panels
constexpr int kPanels = 4;  // panels of 16 columns computed together
constexpr int kLanes = 16;

inline float Widen(uint16_t bits) {  // bfloat16 -> float32: the upper 16 bits
  const uint32_t wide = static_cast<uint32_t>(bits) << 16;
  float out;
  std::memcpy(&out, &wide, sizeof(out));
  return out;
}
inline float Widen(int8_t value) { return static_cast<float>(value); }

#if defined(__AVX512F__)
inline __m512 Load16(const uint16_t* p) {
  const __m256i half = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}
inline __m512 Load16(const int8_t* p) {
  const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
}
#endif

// y[m0 : m0 + rows, 16 p0 : 16 (p0 + panels)] with rows <= kRows, panels <= kPanels.
template <typename W>
void Pass(const float* x, const W* w, const float* scale, float* y, int64_t K, int64_t N,
          int64_t m0, int rows, int64_t p0, int panels) {
  const W* wp[kPanels];
  for (int p = 0; p < kPanels; ++p) wp[p] = w + (p0 + std::min(p, panels - 1)) * K * kLanes;
#if defined(__AVX512F__)
  __m512 acc[kRows][kPanels];
  for (int r = 0; r < kRows; ++r)
    for (int p = 0; p < kPanels; ++p) acc[r][p] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 wv[kPanels];
    for (int p = 0; p < kPanels; ++p) wv[p] = Load16(wp[p] + k * kLanes);
    for (int r = 0; r < kRows; ++r) {
      if (r >= rows) break;
      const __m512 xv = _mm512_set1_ps(x[(m0 + r) * K + k]);
      for (int p = 0; p < kPanels; ++p) acc[r][p] = _mm512_fmadd_ps(xv, wv[p], acc[r][p]);
    }
  }
  for (int r = 0; r < rows; ++r)
    for (int p = 0; p < panels; ++p) {
      __m512 out = acc[r][p];
      if (scale != nullptr) out = _mm512_mul_ps(out, _mm512_loadu_ps(scale + (p0 + p) * kLanes));
      _mm512_storeu_ps(y + (m0 + r) * N + (p0 + p) * kLanes, out);
    }
#else
  float acc[kRows][kPanels][kLanes] = {};
  for (int64_t k = 0; k < K; ++k)
    for (int r = 0; r < rows; ++r) {
      const float xk = x[(m0 + r) * K + k];
      for (int p = 0; p < panels; ++p)
        for (int l = 0; l < kLanes; ++l) acc[r][p][l] += xk * Widen(wp[p][k * kLanes + l]);
    }
  for (int r = 0; r < rows; ++r)
    for (int p = 0; p < panels; ++p)
      for (int l = 0; l < kLanes; ++l) {
        const float s = scale != nullptr ? scale[(p0 + p) * kLanes + l] : 1.0f;
        y[(m0 + r) * N + (p0 + p) * kLanes + l] = acc[r][p][l] * s;
      }
#endif
}

template <typename W>
void Panels(const float* x, const W* w, const float* scale, float* y, int64_t M, int64_t K,
            int64_t P, int64_t begin, int64_t end) {
  const int64_t N = P * kLanes;
  for (int64_t p0 = begin * kPanels; p0 < std::min(end * kPanels, P); p0 += kPanels) {
    const int panels = static_cast<int>(std::min<int64_t>(kPanels, P - p0));
    for (int64_t m0 = 0; m0 < M; m0 += kRows) {
      const int rows = static_cast<int>(std::min<int64_t>(kRows, M - m0));
      Pass(x, w, scale, y, K, N, m0, rows, p0, panels);
    }
  }
}

template <typename W>
class SmallMatmulOp : public OpKernel {
 public:
  explicit SmallMatmulOp(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const Tensor& w = context->input(1);
    const Tensor& scale = context->input(2);
    OP_REQUIRES(context, x.dims() == 2 && w.dims() == 3 && w.dim_size(2) == kLanes,
                tensorflow::errors::InvalidArgument(
                    "ZooSmallMatmul: x must be [M, K] and w [P, K, 16], got ",
                    x.shape().DebugString(), " and ", w.shape().DebugString()));
    const int64_t M = x.dim_size(0), K = x.dim_size(1), P = w.dim_size(0);
    OP_REQUIRES(context, w.dim_size(1) == K,
                tensorflow::errors::InvalidArgument(
                    "ZooSmallMatmul: x [M, K] and w [P, K, 16] disagree on K: ",
                    x.shape().DebugString(), " and ", w.shape().DebugString()));
    const bool scaled = scale.NumElements() > 0;
    OP_REQUIRES(context, !scaled || (scale.dims() == 1 && scale.dim_size(0) == P * kLanes),
                tensorflow::errors::InvalidArgument(
                    "ZooSmallMatmul: scale must be [16 P] or empty, got ",
                    scale.shape().DebugString()));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({M, P * kLanes}), &y));
    if (y->NumElements() == 0) return;
    const float* xp = x.flat<float>().data();
    const W* wp = reinterpret_cast<const W*>(w.tensor_data().data());
    const float* sp = scaled ? scale.flat<float>().data() : nullptr;
    float* yp = y->flat<float>().data();
    const int64_t groups = (P + kPanels - 1) / kPanels;
    const int64_t cost = kPanels * kLanes * K * (M + static_cast<int64_t>(sizeof(W)));
    auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
    workers->ParallelFor(groups, cost, [&](int64_t begin, int64_t end) {
      Panels(xp, wp, sp, yp, M, K, P, begin, end);
    });
  }
};

absl::Status ShapeFn(InferenceContext* c) {
  ShapeHandle x, w;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &w));
  DimensionHandle k, lanes, n;
  TF_RETURN_IF_ERROR(c->Merge(c->Dim(x, 1), c->Dim(w, 1), &k));
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(w, 2), zoo::kLanes, &lanes));
  TF_RETURN_IF_ERROR(c->Multiply(c->Dim(w, 0), zoo::kLanes, &n));
  c->set_output(0, c->Matrix(c->Dim(x, 0), n));
  return absl::OkStatus();
}

}  // namespace
}  // namespace zoo

REGISTER_OP("ZooSmallMatmul")
    .Input("x: float")
    .Input("w: T")
    .Input("scale: float")
    .Output("y: float")
    .Attr("T: {bfloat16, int8}")
    .SetShapeFn(zoo::ShapeFn)
    .Doc(R"doc(
y = x @ (w * scale) for a few float32 rows x [M, K] and compact weights in panels of 16
columns, w [P, K, 16] (bfloat16, or int8 with a float32 scale [16 P] per output column; scale
is empty for bfloat16), accumulated in float32: y [M, 16 P].
)doc");

REGISTER_KERNEL_BUILDER(
    Name("ZooSmallMatmul").Device(tensorflow::DEVICE_CPU).TypeConstraint<tensorflow::bfloat16>("T"),
    zoo::SmallMatmulOp<uint16_t>);
REGISTER_KERNEL_BUILDER(
    Name("ZooSmallMatmul").Device(tensorflow::DEVICE_CPU).TypeConstraint<int8_t>("T"),
    zoo::SmallMatmulOp<int8_t>);
