// Fused conv-shaped causal attention, forward pass, on CPU (zoo.attention.conv_shaped).
//
// ZooConvShapedAttention(q, k, v) -> out, all float32 [batch, heads, tokens, dim] with
// tokens = height * width in raster order; attr radius = kernel_size // 2 (zoo's `half`, a
// name TF reserves for float16). The query at (r, c) attends to exactly the keys
// ConvShapedAttention.allowed() admits, cut at the grid's borders:
//   rows r - radius .. r - 1, columns c - radius .. c + radius   (the rows above), and
//   row r, columns c - radius .. c                                 (its left and itself),
// out = softmax(q . k / sqrt(dim)) v over those keys, with a max-subtracted (stable) softmax.
//
// No gathered windows, no mask: every score computed is a score used (<= 61 for radius = 5).
// Work is split over batch * heads * grid rows on the CPU device's thread pool; within a
// query the loops run over contiguous head dimensions and are written to vectorise (built
// by zoo.attention.native with -O3 -march=native -fopenmp-simd -fassociative-math). Head
// dimensions 32, 64 and 128 (equal for keys and values) get compile-time specialisations whose
// weighted sums stay in registers.
//
// The gradient is not defined here: zoo wraps the op in tf.custom_gradient whose gradient is
// that of the pure-TensorFlow kernel.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

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

// exp(x) for x <= 0 (scores minus their maximum), written so that a loop over it vectorises:
// Cody-Waite reduction x = n ln2 + r and Cephes' degree-6 polynomial for exp(r) (relative
// error ~1e-7). Inputs below -87 give exp(-87) ~ 1.6e-38 instead of a denormal or 0: a weight
// that small is negligible next to the maximum's weight of 1.
inline float ExpNonPositive(float x) {
  x = std::max(x, -87.0f);
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);  // x / ln2, rounded
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;  // 2^n, n in [-126, 0]
  float scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return y * scale;
}

// The problem of one op call; pointers are to the first (batch, head) slice.
struct Problem {
  const float* q;
  const float* k;
  const float* v;
  float* out;
  int64_t height, width, radius;
  int64_t dim, value_dim;
  int64_t max_keys;  // the most keys a query sees
  float scale;       // 1 / sqrt(dim)
};

// Attention for the queries of grid rows [begin, end) of the flattened batch * heads * height
// rows. kDim > 0: dim == value_dim == kDim known at compile time; 0: read from the problem.
// `scratch` holds at least the largest number of keys a query sees plus value_dim floats.
template <int kDim>
void AttendRows(const Problem& p, int64_t begin, int64_t end, float* scratch) {
  const int64_t d = kDim > 0 ? kDim : p.dim;
  const int64_t dv = kDim > 0 ? kDim : p.value_dim;
  // The weighted sum of values accumulates in a local array when its length is known (kept in
  // registers across keys), else in scratch memory after the scores.
  float fixed_acc[kDim > 0 ? kDim : 1];
  float* __restrict acc = kDim > 0 ? fixed_acc : scratch + p.max_keys;
  float* __restrict scores = scratch;
  const int64_t h = p.height, w = p.width, radius = p.radius;
  const int64_t tokens = h * w;
  for (int64_t unit = begin; unit < end; ++unit) {
    const int64_t slice = unit / h;  // batch * heads + head
    const int64_t r = unit % h;
    const float* q = p.q + slice * tokens * d;
    const float* k = p.k + slice * tokens * d;
    const float* v = p.v + slice * tokens * dv;
    float* out = p.out + slice * tokens * dv;
    const int64_t first_row = std::max<int64_t>(0, r - radius);
    for (int64_t c = 0; c < w; ++c) {
      const float* qp = q + (r * w + c) * d;
      const int64_t c0 = std::max<int64_t>(0, c - radius);
      const int64_t c1_above = std::min<int64_t>(w - 1, c + radius);
      // Scores against the allowed keys, row by row (each row's keys are contiguous).
      int64_t n = 0;
      float top = -std::numeric_limits<float>::infinity();
      for (int64_t kr = first_row; kr <= r; ++kr) {
        const int64_t c1 = kr < r ? c1_above : c;
        for (int64_t kc = c0; kc <= c1; ++kc) {
          const float* kp = k + (kr * w + kc) * d;
          float s = 0.0f;
#pragma omp simd reduction(+ : s)
          for (int64_t i = 0; i < d; ++i) s += qp[i] * kp[i];
          s *= p.scale;
          scores[n++] = s;
          top = std::max(top, s);
        }
      }
      // Stable softmax weights (normalised at the end).
#pragma omp simd
      for (int64_t j = 0; j < n; ++j) scores[j] = ExpNonPositive(scores[j] - top);
      float total = 0.0f;
#pragma omp simd reduction(+ : total)
      for (int64_t j = 0; j < n; ++j) total += scores[j];
      // Weighted sum of the values, in the same key order.
      std::fill(acc, acc + dv, 0.0f);
      n = 0;
      for (int64_t kr = first_row; kr <= r; ++kr) {
        const int64_t c1 = kr < r ? c1_above : c;
        for (int64_t kc = c0; kc <= c1; ++kc) {
          const float* vp = v + (kr * w + kc) * dv;
          const float weight = scores[n++];
#pragma omp simd
          for (int64_t i = 0; i < dv; ++i) acc[i] += weight * vp[i];
        }
      }
      const float inv_total = 1.0f / total;
      float* op = out + (r * w + c) * dv;
#pragma omp simd
      for (int64_t i = 0; i < dv; ++i) op[i] = acc[i] * inv_total;
    }
  }
}

class ConvShapedAttentionOp : public OpKernel {
 public:
  explicit ConvShapedAttentionOp(OpKernelConstruction* context) : OpKernel(context) {
    OP_REQUIRES_OK(context, context->GetAttr("height", &height_));
    OP_REQUIRES_OK(context, context->GetAttr("width", &width_));
    OP_REQUIRES_OK(context, context->GetAttr("radius", &radius_));
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& q = context->input(0);
    const Tensor& k = context->input(1);
    const Tensor& v = context->input(2);
    for (const Tensor* t : {&q, &k, &v}) {
      OP_REQUIRES(context, t->dims() == 4,
                  tensorflow::errors::InvalidArgument(
                      "ZooConvShapedAttention: q, k and v must be [batch, heads, tokens, dim], "
                      "got shapes ", q.shape().DebugString(), ", ", k.shape().DebugString(),
                      ", ", v.shape().DebugString()));
    }
    OP_REQUIRES(context, k.shape() == q.shape(),
                tensorflow::errors::InvalidArgument(
                    "ZooConvShapedAttention: k must have q's shape ", q.shape().DebugString(),
                    ", got ", k.shape().DebugString()));
    for (int axis = 0; axis < 3; ++axis) {
      OP_REQUIRES(context, v.dim_size(axis) == q.dim_size(axis),
                  tensorflow::errors::InvalidArgument(
                      "ZooConvShapedAttention: v must match q in batch, heads and tokens; q ",
                      q.shape().DebugString(), ", v ", v.shape().DebugString()));
    }
    const int64_t tokens = q.dim_size(2);
    OP_REQUIRES(context, tokens == height_ * width_,
                tensorflow::errors::InvalidArgument(
                    "ZooConvShapedAttention: a ", height_, "x", width_, " grid needs ",
                    height_ * width_, " tokens, got ", tokens));
    OP_REQUIRES(context, q.dim_size(3) > 0,
                tensorflow::errors::InvalidArgument(
                    "ZooConvShapedAttention: the head dimension must be positive"));

    Tensor* out = nullptr;
    TensorShape out_shape({q.dim_size(0), q.dim_size(1), tokens, v.dim_size(3)});
    OP_REQUIRES_OK(context, context->allocate_output(0, out_shape, &out));
    if (out->NumElements() == 0) return;

    Problem p;
    p.q = q.flat<float>().data();
    p.k = k.flat<float>().data();
    p.v = v.flat<float>().data();
    p.out = out->flat<float>().data();
    p.height = height_;
    p.width = width_;
    p.radius = radius_;
    p.dim = q.dim_size(3);
    p.value_dim = v.dim_size(3);
    p.scale = 1.0f / std::sqrt(static_cast<float>(p.dim));

    // At most radius rows of 2 * radius + 1 keys above, and radius + 1 on the query's row.
    p.max_keys = radius_ * (2 * radius_ + 1) + radius_ + 1;
    const int64_t rows = q.dim_size(0) * q.dim_size(1) * height_;
    const int64_t cost_per_row = width_ * p.max_keys * (p.dim + p.value_dim) * 2;
    void (*attend)(const Problem&, int64_t, int64_t, float*) = &AttendRows<0>;
    if (p.dim == p.value_dim) {
      if (p.dim == 32) attend = &AttendRows<32>;
      if (p.dim == 64) attend = &AttendRows<64>;
      if (p.dim == 128) attend = &AttendRows<128>;
    }
    auto* workers = context->device()->tensorflow_cpu_worker_threads()->workers;
    workers->ParallelFor(rows, cost_per_row, [&](int64_t begin, int64_t end) {
      std::vector<float> scratch(p.max_keys + p.value_dim);
      attend(p, begin, end, scratch.data());
    });
  }

 private:
  int64_t height_, width_, radius_;
};

absl::Status ShapeFn(InferenceContext* c) {
  int64_t height, width;
  TF_RETURN_IF_ERROR(c->GetAttr("height", &height));
  TF_RETURN_IF_ERROR(c->GetAttr("width", &width));
  ShapeHandle q, k, v;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 4, &q));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 4, &k));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(2), 4, &v));
  TF_RETURN_IF_ERROR(c->Merge(q, k, &q));
  ShapeHandle q_leading, v_leading, leading;
  TF_RETURN_IF_ERROR(c->Subshape(q, 0, 3, &q_leading));
  TF_RETURN_IF_ERROR(c->Subshape(v, 0, 3, &v_leading));
  TF_RETURN_IF_ERROR(c->Merge(q_leading, v_leading, &leading));
  DimensionHandle tokens;
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(leading, 2), height * width, &tokens));
  ShapeHandle out;
  TF_RETURN_IF_ERROR(c->Concatenate(leading, c->Vector(c->Dim(v, 3)), &out));
  c->set_output(0, out);
  return absl::OkStatus();
}

}  // namespace
}  // namespace zoo

REGISTER_OP("ZooConvShapedAttention")
    .Input("q: float")
    .Input("k: float")
    .Input("v: float")
    .Output("out: float")
    .Attr("height: int >= 1")
    .Attr("width: int >= 1")
    .Attr("radius: int >= 0")
    .SetShapeFn(zoo::ShapeFn)
    .Doc(R"doc(
Conv-shaped causal attention over a height x width grid of tokens (raster order): with
radius = kernel_size // 2, the query at (r, c) sees rows r-radius..r-1 within columns
c-radius..c+radius, and row r columns c-radius..c.
q, k: [batch, heads, height * width, dim]; v: [batch, heads, height * width, value_dim].
out: softmax(q k^T / sqrt(dim)) v over those keys, [batch, heads, height * width, value_dim].
)doc");

REGISTER_KERNEL_BUILDER(Name("ZooConvShapedAttention").Device(tensorflow::DEVICE_CPU),
                        zoo::ConvShapedAttentionOp);
