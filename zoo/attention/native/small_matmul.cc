// Matmul of a few float32 rows by compact (bfloat16 or int8) weights, on CPU
// (zoo.layers.packed: the sampler's decode steps).
//
// ZooSmallMatmul(x, w, scale, bias, gamma, beta) -> y
//   attrs: activation "none" or "gelu"; epsilon (LayerNorm)
//   x:     float32 [M, K]  (a decode step's rows: M is small, a few to a few dozen)
//   w:     the [K, N] weights in panels of 16 output columns (N padded with zero columns to
//          16 P), panel p holding columns 16p .. 16p + 15:
//            int8:     [P, K, 16]        w[p, k, l] = W[k, 16p + l]
//            bfloat16: [P, K + K % 2, 16], pairs of rows interleaved:
//                      w[p, 2j + e, l] is stored at ((p * J + j) * 16 + l) * 2 + e,
//                      = W[2j + e, 16p + l] (K padded with a zero row to even)
//   scale: float32 [16 P] for int8 weights (y[:, n] is multiplied by scale[n]), [0] for
//          bfloat16
//   bias:  float32 [16 P] added to every row, or [0]
//   gamma, beta: float32 [K] or [0]: given, each row of x is first layer-normalised,
//          (x - mean) / sqrt(variance + epsilon) * gamma + beta, as Keras' LayerNormalization
//   y:     float32 [M, 16 P] = activation(norm(x) @ (w * scale) + bias); gelu is the exact
//          0.5 x (1 + erf(x / sqrt(2))) (erf to 1.5e-7: Abramowitz & Stegun 7.1.26), as
//          Keras' default gelu
//
// A decode step is bound by memory traffic: every weight is read once per step for a handful
// of rows. The kernel streams the weights in their compact form (2 or 1 bytes each, no
// dequantized copy is ever written) and accumulates in float32. int8 weights are widened in
// registers and multiplied by the float32 rows. bfloat16 products round the rows to
// bfloat16 (as TensorFlow's bfloat16 matmul does) and, on CPUs with AVX512_BF16, use its
// pair dot product (VDPBF16PS: twice the multiply-adds of float32 FMAs, which matters once
// many rows make the product compute-bound, e.g. speculative decoding's windows); the result
// does not depend on M. Each panel is contiguous, so a pass over a few panels reads that many
// sequential streams (8 for 1-2 rows; 3 with 8 rows per pass for many rows); panels of weights
// over 128 KB are split between the calling thread and the op's own helper threads, which spin
// between the products of a decode step (SpinPool; rows stay in L1, a pass's panels in L2).
// With AVX-512, or AVX2 with FMA, the inner loops use intrinsics; elsewhere portable loops
// (8x slower on an AVX2 CPU, measured).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <pthread.h>
#endif

#if defined(__AVX512F__)
#include <immintrin.h>
#elif defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define ZOO_AVX2 1  // 8-lane intrinsics: each 16-column panel is two registers
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

constexpr int kLanes = 16;
// Weights below this size are multiplied on the calling thread; larger ones are split over
// the op's own spinning helper threads (SpinPool below).
constexpr int64_t kParallelBytes = 128 << 10;
// How long an idle helper spins for the next product before it sleeps.
constexpr std::chrono::microseconds kSpinTime(2000);
// Shards per thread: a few, claimed dynamically, so a helper that starts late costs little.
constexpr int64_t kShardsPerThread = 4;
// Threads per product at most (the caller included): a few cores already stream a socket's
// memory bandwidth, and more helpers would only spin.
constexpr int kMaxThreads = 16;

// Helper threads that split each product with the calling thread.
//
// A decode step is a chain of ~50 small products (0.5 to 8 MB of weights each, 15 to 300 us).
// TensorFlow's intra-op pool wakes its threads for every one: measured on a 2-core AMD EPYC
// the hand-off made an 8 MB product stream at 22 GB/s against 33 GB/s for the same loop on
// threads already running, and products under a megabyte were not worth splitting at all.
// These helpers spin (kSpinTime) between products, so while a sampler decodes they pick up a
// product within a microsecond, and sleep once decoding stops. Threads in all: TensorFlow's
// intra-op count (tf.config.threading.set_intra_op_parallelism_threads; 1 means none), at
// most kMaxThreads. One caller at a time: a second concurrent caller runs its product on its
// own thread (the results are identical: every shard computes its own columns in the same
// order whoever runs it).
class SpinPool {
 public:
  // The pool for `threads` threads in all (the caller and threads - 1 helpers), created on
  // first use and kept for the process (never destroyed: helpers may still be spinning when
  // static destructors run).
  static SpinPool* Get(int threads) {
    static SpinPool* pool = new SpinPool(std::max(1, std::min(threads, kMaxThreads)) - 1);
    return pool;
  }

  int threads() const { return static_cast<int>(helpers_.size()) + 1; }

  // Runs fn(i) for every i in [0, shards) on the caller and the helpers; returns when all
  // are done. False (nothing run) when another caller holds the pool.
  bool Run(int64_t shards, const std::function<void(int64_t)>& fn) {
    if (busy_.exchange(true, std::memory_order_acquire)) return false;
    fn_.store(&fn, std::memory_order_relaxed);
    shards_.store(shards, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    const uint64_t job = (state_.load(std::memory_order_relaxed) >> 32) + 1;
    state_.store(job << 32, std::memory_order_release);
    if (sleepers_.load(std::memory_order_acquire) > 0) {
      std::lock_guard<std::mutex> lock(mutex_);
      wake_.notify_all();
    }
    Work(job, fn, shards);
    while (done_.load(std::memory_order_acquire) < shards) Pause();
    busy_.store(false, std::memory_order_release);
    return true;
  }

 private:
  explicit SpinPool(int helpers) {
    for (int i = 0; i < helpers; ++i) {
      helpers_.emplace_back([this] {
#if defined(__linux__)
        pthread_setname_np(pthread_self(), "zoo-matmul");  // as seen in top -H, /proc
#endif
        Loop();
      });
    }
    for (auto& helper : helpers_) helper.detach();
  }

  static void Pause() {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
  }

  // Claims and runs shards of `job` until none is left (or the job is over).
  void Work(uint64_t job, const std::function<void(int64_t)>& fn, int64_t shards) {
    uint64_t state = state_.load(std::memory_order_acquire);
    for (;;) {
      if ((state >> 32) != job || static_cast<int64_t>(state & 0xFFFFFFFFu) >= shards) return;
      if (state_.compare_exchange_weak(state, state + 1, std::memory_order_acq_rel)) {
        fn(static_cast<int64_t>(state & 0xFFFFFFFFu));
        done_.fetch_add(1, std::memory_order_release);
        state = state_.load(std::memory_order_acquire);
      }
    }
  }

  void Loop() {
    uint64_t seen = 0;
    for (;;) {
      uint64_t job = state_.load(std::memory_order_acquire) >> 32;
      auto start = std::chrono::steady_clock::now();
      for (int spins = 0; job == seen; job = state_.load(std::memory_order_acquire) >> 32) {
        Pause();
        if (++spins % 256 != 0 || std::chrono::steady_clock::now() - start < kSpinTime)
          continue;
        std::unique_lock<std::mutex> lock(mutex_);
        sleepers_.fetch_add(1, std::memory_order_acq_rel);
        wake_.wait(lock, [&] { return (state_.load(std::memory_order_acquire) >> 32) != seen; });
        sleepers_.fetch_sub(1, std::memory_order_acq_rel);
        start = std::chrono::steady_clock::now();
      }
      seen = job;
      // The job's function and size were written before `state_` named the job; a shard is
      // claimed only while the job is current, so they are still this job's when it runs.
      const std::function<void(int64_t)>* fn = fn_.load(std::memory_order_relaxed);
      const int64_t shards = shards_.load(std::memory_order_relaxed);
      if ((state_.load(std::memory_order_acquire) >> 32) == job) Work(job, *fn, shards);
    }
  }

  std::vector<std::thread> helpers_;
  std::atomic<bool> busy_{false};
  std::atomic<uint64_t> state_{0};  // job number << 32 | next shard
  std::atomic<int64_t> done_{0};
  std::atomic<int> sleepers_{0};
  std::atomic<const std::function<void(int64_t)>*> fn_{nullptr};
  std::atomic<int64_t> shards_{0};
  std::mutex mutex_;
  std::condition_variable wake_;
};

inline float FromBf16(uint32_t bits16) {
  const uint32_t wide = bits16 << 16;
  float out;
  std::memcpy(&out, &wide, sizeof(out));
  return out;
}

// As tf.cast to bfloat16: round to nearest even; a NaN stays a (quiet) NaN.
inline uint32_t ToBf16(float value) {
  uint32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return (bits >> 16) | 0x40u;
  return (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
}

// The problem of one call. For bfloat16, `pairs` holds the rows rounded to bfloat16, two
// consecutive values of k per 32-bit word (the lower half the even k), [M, J], J = ceil(K/2).
struct Problem {
  const float* x = nullptr;
  const uint32_t* pairs = nullptr;
  const float* widened = nullptr;  // the same as float32, [M, 2 J] (AVX2, M > 2)
  const void* w = nullptr;
  const float* scale = nullptr;
  const float* bias = nullptr;
  bool gelu = false;
  float* y = nullptr;
  int64_t M = 0, K = 0, J = 0, P = 0, N = 0;
};

// Abramowitz & Stegun 7.1.26: erf(z) = 1 - t (a1 + t (a2 + ... + t a5)) exp(-z^2) for z >= 0,
// t = 1 / (1 + p z); absolute error below 1.5e-7.
constexpr float kErfP = 0.3275911f, kErfA1 = 0.254829592f, kErfA2 = -0.284496736f,
                kErfA3 = 1.421413741f, kErfA4 = -1.453152027f, kErfA5 = 1.061405429f;
constexpr float kSqrtHalf = 0.70710678118654752f;

inline float Gelu(float x) { return 0.5f * x * (1.0f + std::erf(x * kSqrtHalf)); }

#if defined(__AVX512F__)
// exp(x) for x <= 0: Cody-Waite reduction and Cephes' degree-6 polynomial (relative error
// ~1e-7), inputs clamped at -87 (exp underflows there anyway).
inline __m512 ExpNonPositive(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  const __m512 y = _mm512_add_ps(_mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r),
                                 _mm512_set1_ps(1.0f));
  const __m512i bits = _mm512_slli_epi32(
      _mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(y, _mm512_castsi512_ps(bits));
}

inline __m512 Gelu(__m512 x) {
  const __m512 z = _mm512_abs_ps(_mm512_mul_ps(x, _mm512_set1_ps(kSqrtHalf)));
  const __m512 t = _mm512_div_ps(_mm512_set1_ps(1.0f),
                                 _mm512_fmadd_ps(z, _mm512_set1_ps(kErfP), _mm512_set1_ps(1.0f)));
  __m512 poly = _mm512_set1_ps(kErfA5);
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kErfA4));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kErfA3));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kErfA2));
  poly = _mm512_fmadd_ps(poly, t, _mm512_set1_ps(kErfA1));
  poly = _mm512_mul_ps(poly, t);
  const __m512 tail = _mm512_mul_ps(poly, ExpNonPositive(_mm512_sub_ps(_mm512_setzero_ps(),
                                                                       _mm512_mul_ps(z, z))));
  // erf(|u|) = 1 - tail; 1 + erf(u) = 2 - tail for u >= 0, tail for u < 0.
  const __mmask16 negative = _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_LT_OQ);
  const __m512 one_plus = _mm512_mask_blend_ps(negative, _mm512_sub_ps(_mm512_set1_ps(2.0f),
                                                                       tail), tail);
  return _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(0.5f), x), one_plus);
}

inline void Store(const Problem& pr, __m512 out, int64_t m, int64_t p) {
  if (pr.scale != nullptr) out = _mm512_mul_ps(out, _mm512_loadu_ps(pr.scale + p * kLanes));
  if (pr.bias != nullptr) out = _mm512_add_ps(out, _mm512_loadu_ps(pr.bias + p * kLanes));
  if (pr.gelu) out = Gelu(out);
  _mm512_storeu_ps(pr.y + m * pr.N + p * kLanes, out);
}
#endif

#if defined(ZOO_AVX2)
// The AVX-512 helpers above, 8 lanes wide.
inline __m256 ExpNonPositive(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 y = _mm256_add_ps(_mm256_fmadd_ps(_mm256_mul_ps(p, r), r, r),
                                 _mm256_set1_ps(1.0f));
  const __m256i bits = _mm256_slli_epi32(
      _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(bits));
}

inline __m256 Gelu(__m256 x) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 z = _mm256_andnot_ps(_mm256_set1_ps(-0.0f),
                                    _mm256_mul_ps(x, _mm256_set1_ps(kSqrtHalf)));
  const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(z, _mm256_set1_ps(kErfP), one));
  __m256 poly = _mm256_set1_ps(kErfA5);
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kErfA4));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kErfA3));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kErfA2));
  poly = _mm256_fmadd_ps(poly, t, _mm256_set1_ps(kErfA1));
  poly = _mm256_mul_ps(poly, t);
  const __m256 tail = _mm256_mul_ps(poly, ExpNonPositive(_mm256_sub_ps(_mm256_setzero_ps(),
                                                                       _mm256_mul_ps(z, z))));
  // erf(|u|) = 1 - tail; 1 + erf(u) = 2 - tail for u >= 0, tail for u < 0.
  const __m256 negative = _mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_LT_OQ);
  const __m256 one_plus = _mm256_blendv_ps(_mm256_sub_ps(_mm256_set1_ps(2.0f), tail), tail,
                                           negative);
  return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), x), one_plus);
}

// Columns 16 p + 8 h .. + 7 of row m.
inline void Store(const Problem& pr, __m256 out, int64_t m, int64_t p, int h) {
  const int64_t n = p * kLanes + 8 * h;
  if (pr.scale != nullptr) out = _mm256_mul_ps(out, _mm256_loadu_ps(pr.scale + n));
  if (pr.bias != nullptr) out = _mm256_add_ps(out, _mm256_loadu_ps(pr.bias + n));
  if (pr.gelu) out = Gelu(out);
  _mm256_storeu_ps(pr.y + m * pr.N + n, out);
}
#endif

inline void StoreScalar(const Problem& pr, float out, int64_t m, int64_t n) {
  if (pr.scale != nullptr) out *= pr.scale[n];
  if (pr.bias != nullptr) out += pr.bias[n];
  pr.y[m * pr.N + n] = pr.gelu ? Gelu(out) : out;
}

// int8: rows [m0, m0 + R) x panels [p0, p0 + panels), panels <= PN.
template <int R, int PN>
void PassInt8(const Problem& pr, int64_t m0, int64_t p0, int panels) {
  const int8_t* w = static_cast<const int8_t*>(pr.w);
  const int64_t K = pr.K;
  const int8_t* wp[PN];
  for (int p = 0; p < PN; ++p) wp[p] = w + (p0 + std::min(p, panels - 1)) * K * kLanes;
#if defined(__AVX512F__)
  __m512 acc[R][PN];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < PN; ++p) acc[r][p] = _mm512_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m512 wv[PN];
    for (int p = 0; p < PN; ++p) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wp[p] + k * kLanes));
      wv[p] = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(bytes));
    }
    for (int r = 0; r < R; ++r) {
      const __m512 xv = _mm512_set1_ps(pr.x[(m0 + r) * K + k]);
      for (int p = 0; p < PN; ++p) acc[r][p] = _mm512_fmadd_ps(xv, wv[p], acc[r][p]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < panels; ++p) Store(pr, acc[r][p], m0 + r, p0 + p);
#elif defined(ZOO_AVX2)
  __m256 acc[R][PN][2];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < PN; ++p) acc[r][p][0] = acc[r][p][1] = _mm256_setzero_ps();
  for (int64_t k = 0; k < K; ++k) {
    __m256 wv[PN][2];
    for (int p = 0; p < PN; ++p) {
      const __m128i bytes = _mm_loadu_si128(reinterpret_cast<const __m128i*>(wp[p] + k * kLanes));
      wv[p][0] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
      wv[p][1] = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(bytes, 8)));
    }
    for (int r = 0; r < R; ++r) {
      const __m256 xv = _mm256_set1_ps(pr.x[(m0 + r) * K + k]);
      for (int p = 0; p < PN; ++p)
        for (int h = 0; h < 2; ++h) acc[r][p][h] = _mm256_fmadd_ps(xv, wv[p][h], acc[r][p][h]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < panels; ++p)
      for (int h = 0; h < 2; ++h) Store(pr, acc[r][p][h], m0 + r, p0 + p, h);
#else
  float acc[R][PN][kLanes] = {};
  for (int64_t k = 0; k < K; ++k)
    for (int r = 0; r < R; ++r) {
      const float xk = pr.x[(m0 + r) * K + k];
      for (int p = 0; p < panels; ++p)
        for (int l = 0; l < kLanes; ++l) acc[r][p][l] += xk * wp[p][k * kLanes + l];
    }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < panels; ++p)
      for (int l = 0; l < kLanes; ++l)
        StoreScalar(pr, acc[r][p][l], m0 + r, (p0 + p) * kLanes + l);
#endif
}

// bfloat16 (pair-interleaved panels, rows as bfloat16 pairs): as PassInt8.
template <int R, int PN>
void PassBf16(const Problem& pr, int64_t m0, int64_t p0, int panels) {
  const uint32_t* w = static_cast<const uint32_t*>(pr.w);  // one pair of rows per word
  const int64_t J = pr.J;
  const uint32_t* wp[PN];
  for (int p = 0; p < PN; ++p) wp[p] = w + (p0 + std::min(p, panels - 1)) * J * kLanes;
#if defined(__AVX512F__)
  __m512 acc[R][PN];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < PN; ++p) acc[r][p] = _mm512_setzero_ps();
  for (int64_t j = 0; j < J; ++j) {
    __m512i wv[PN];
    for (int p = 0; p < PN; ++p)
      wv[p] = _mm512_loadu_si512(reinterpret_cast<const void*>(wp[p] + j * kLanes));
#if defined(__AVX512BF16__)
    for (int r = 0; r < R; ++r) {
      const __m512i xv = _mm512_set1_epi32(static_cast<int>(pr.pairs[(m0 + r) * J + j]));
      for (int p = 0; p < PN; ++p)
        acc[r][p] = _mm512_dpbf16_ps(acc[r][p], (__m512bh)xv, (__m512bh)wv[p]);
    }
#else
    __m512 even[PN], odd[PN];
    const __m512i high = _mm512_set1_epi32(static_cast<int>(0xFFFF0000u));
    for (int p = 0; p < PN; ++p) {
      even[p] = _mm512_castsi512_ps(_mm512_slli_epi32(wv[p], 16));
      odd[p] = _mm512_castsi512_ps(_mm512_and_si512(wv[p], high));
    }
    for (int r = 0; r < R; ++r) {
      const uint32_t pair = pr.pairs[(m0 + r) * J + j];
      const __m512 xe = _mm512_set1_ps(FromBf16(pair & 0xFFFFu));
      const __m512 xo = _mm512_set1_ps(FromBf16(pair >> 16));
      for (int p = 0; p < PN; ++p) {
        acc[r][p] = _mm512_fmadd_ps(xe, even[p], acc[r][p]);
        acc[r][p] = _mm512_fmadd_ps(xo, odd[p], acc[r][p]);
      }
    }
#endif
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < panels; ++p) Store(pr, acc[r][p], m0 + r, p0 + p);
#elif defined(ZOO_AVX2)
  // Each word holds the bfloat16 weights of rows 2j (low half) and 2j + 1 (high half): a
  // shift and a mask widen them to float32 in registers. Tiles of more than 2 rows
  // (compute-bound) take their rows widened already (pr.widened), so a row's broadcasts are
  // loads instead of integer moves and shuffles on the FMA ports: the 4-row tile 52 -> 68
  // GFLOP/s on one thread of the AMD EPYC (bench/RESULTS.md). Either way every row adds
  // x_even w_even then x_odd w_odd to its accumulator, so the result does not depend on M.
  __m256 acc[R][PN][2];
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < PN; ++p) acc[r][p][0] = acc[r][p][1] = _mm256_setzero_ps();
  const __m256i high = _mm256_set1_epi32(static_cast<int>(0xFFFF0000u));
  for (int64_t j = 0; j < J; ++j) {
    __m256 even[PN][2], odd[PN][2];
    for (int p = 0; p < PN; ++p)
      for (int h = 0; h < 2; ++h) {
        const __m256i wv = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(wp[p] + j * kLanes + 8 * h));
        even[p][h] = _mm256_castsi256_ps(_mm256_slli_epi32(wv, 16));
        odd[p][h] = _mm256_castsi256_ps(_mm256_and_si256(wv, high));
      }
    for (int r = 0; r < R; ++r) {
      __m256 xe, xo;
      if constexpr (R > 2) {
        const float* x = pr.widened + ((m0 + r) * J + j) * 2;
        xe = _mm256_broadcast_ss(x);
        xo = _mm256_broadcast_ss(x + 1);
      } else {
        const uint32_t pair = pr.pairs[(m0 + r) * J + j];
        xe = _mm256_set1_ps(FromBf16(pair & 0xFFFFu));
        xo = _mm256_set1_ps(FromBf16(pair >> 16));
      }
      for (int p = 0; p < PN; ++p)
        for (int h = 0; h < 2; ++h) {
          acc[r][p][h] = _mm256_fmadd_ps(xe, even[p][h], acc[r][p][h]);
          acc[r][p][h] = _mm256_fmadd_ps(xo, odd[p][h], acc[r][p][h]);
        }
    }
  }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < panels; ++p)
      for (int h = 0; h < 2; ++h) Store(pr, acc[r][p][h], m0 + r, p0 + p, h);
#else
  float acc[R][PN][kLanes] = {};
  for (int64_t j = 0; j < J; ++j)
    for (int r = 0; r < R; ++r) {
      const uint32_t pair = pr.pairs[(m0 + r) * J + j];
      const float xe = FromBf16(pair & 0xFFFFu), xo = FromBf16(pair >> 16);
      for (int p = 0; p < panels; ++p)
        for (int l = 0; l < kLanes; ++l) {
          const uint32_t wl = wp[p][j * kLanes + l];
          acc[r][p][l] += xe * FromBf16(wl & 0xFFFFu) + xo * FromBf16(wl >> 16);
        }
    }
  for (int r = 0; r < R; ++r)
    for (int p = 0; p < panels; ++p)
      for (int l = 0; l < kLanes; ++l)
        StoreScalar(pr, acc[r][p][l], m0 + r, (p0 + p) * kLanes + l);
#endif
}

// One pass: rows [m0, m0 + rows) x panels [p0, p0 + panels), rows <= R, panels <= PN, by
// the instantiation for exactly `rows` rows (its loops unroll with the accumulators in
// registers; a runtime row count left them on the stack).
template <int R, int PN, bool kBf16>
void Pass(const Problem& pr, int64_t m0, int rows, int64_t p0, int panels) {
  if constexpr (R > 1) {
    if (rows < R) return Pass<R - 1, PN, kBf16>(pr, m0, rows, p0, panels);
  }
  if (kBf16) {
    PassBf16<R, PN>(pr, m0, p0, panels);
  } else {
    PassInt8<R, PN>(pr, m0, p0, panels);
  }
}

// Panel groups [begin, end) (PN panels each), every row.
template <int R, int PN, bool kBf16>
void Panels(const Problem& pr, int64_t begin, int64_t end) {
  for (int64_t p0 = begin * PN; p0 < std::min(end * PN, pr.P); p0 += PN) {
    const int panels = static_cast<int>(std::min<int64_t>(PN, pr.P - p0));
    for (int64_t m0 = 0; m0 < pr.M; m0 += R)
      Pass<R, PN, kBf16>(pr, m0, static_cast<int>(std::min<int64_t>(R, pr.M - m0)), p0, panels);
  }
}

// Runs work(begin, end) over [0, count): split into shards between the calling thread and
// the helpers when `bytes` (what the work reads) is worth it, else on this thread.
void Split(OpKernelContext* context, int64_t bytes, int64_t count,
           const std::function<void(int64_t, int64_t)>& work) {
  SpinPool* pool = bytes < kParallelBytes ? nullptr : SpinPool::Get(
      context->device()->tensorflow_cpu_worker_threads()->num_threads);
  if (pool != nullptr && pool->threads() > 1) {
    const int64_t shards = std::min(count, kShardsPerThread * pool->threads());
    const std::function<void(int64_t)> shard = [&](int64_t i) {
      work(count * i / shards, count * (i + 1) / shards);
    };
    if (pool->Run(shards, shard)) return;
  }
  work(0, count);  // small (or the pool is busy): on this thread
}

template <int R, int PN, bool kBf16>
void Run(OpKernelContext* context, const Problem& pr, int64_t weight_bytes) {
  Split(context, weight_bytes, (pr.P + PN - 1) / PN, [&](int64_t begin, int64_t end) {
    Panels<R, PN, kBf16>(pr, begin, end);
  });
}

// Few rows stream more panels at once (memory-bound); more rows keep more rows per pass
// (compute-bound: more multiply-adds per weight loaded).
// With AVX2 (16 registers of 8 lanes; a panel takes two) the tiles are smaller. Chosen by
// timing the peer configuration's decode-step products on a 2-core AMD EPYC with AVX2
// (bench/RESULTS.md): 2 rows x 4 panels 2.9 ms a step's bfloat16 products (2 x 2: 3.5,
// 2 x 1: 3.2); 4 rows x 1 panel 4.3 ms at 4 rows. The portable loops took 23.4 ms at 2 rows.
template <bool kBf16>
void Dispatch(OpKernelContext* context, const Problem& pr, int64_t weight_bytes) {
#if defined(ZOO_AVX2)
  if (pr.M <= 2) {
    Run<2, 4, kBf16>(context, pr, weight_bytes);
  } else {
    Run<4, 1, kBf16>(context, pr, weight_bytes);
  }
#else
  if (pr.M <= 2) {
    Run<2, 8, kBf16>(context, pr, weight_bytes);
  } else if (pr.M <= 4) {
    Run<4, 4, kBf16>(context, pr, weight_bytes);
  } else {
    Run<8, 3, kBf16>(context, pr, weight_bytes);
  }
#endif
}

// out = (x - mean) / sqrt(variance + epsilon) * gamma + beta per row (two-pass moments).
void LayerNorm(const float* x, const float* gamma, const float* beta, float epsilon,
               int64_t M, int64_t K, float* out) {
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x + m * K;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t k = 0; k < K; ++k) sum += row[k];
    const float mean = sum / K;
    float squares = 0.0f;
#pragma omp simd reduction(+ : squares)
    for (int64_t k = 0; k < K; ++k) squares += (row[k] - mean) * (row[k] - mean);
    const float inv = 1.0f / std::sqrt(squares / K + epsilon);
    float* o = out + m * K;
#pragma omp simd
    for (int64_t k = 0; k < K; ++k) o[k] = (row[k] - mean) * inv * gamma[k] + beta[k];
  }
}

class SmallMatmulOp : public OpKernel {
 public:
  explicit SmallMatmulOp(OpKernelConstruction* context) : OpKernel(context) {
    std::string activation;
    OP_REQUIRES_OK(context, context->GetAttr("activation", &activation));
    OP_REQUIRES_OK(context, context->GetAttr("epsilon", &epsilon_));
    gelu_ = activation == "gelu";
  }

  void Compute(OpKernelContext* context) override {
    const Tensor& x = context->input(0);
    const Tensor& w = context->input(1);
    const Tensor& scale = context->input(2);
    const Tensor& bias = context->input(3);
    const Tensor& gamma = context->input(4);
    const Tensor& beta = context->input(5);
    const bool bf16 = w.dtype() == tensorflow::DT_BFLOAT16;
    OP_REQUIRES(context, x.dims() == 2 && w.dims() == 3 && w.dim_size(2) == kLanes,
                tensorflow::errors::InvalidArgument(
                    "ZooSmallMatmul: x must be [M, K] and w [P, K, 16], got ",
                    x.shape().DebugString(), " and ", w.shape().DebugString()));
    Problem pr;
    pr.M = x.dim_size(0);
    pr.K = x.dim_size(1);
    pr.J = (pr.K + 1) / 2;
    pr.P = w.dim_size(0);
    pr.N = pr.P * kLanes;
    const int64_t rows = bf16 ? 2 * pr.J : pr.K;
    OP_REQUIRES(context, w.dim_size(1) == rows,
                tensorflow::errors::InvalidArgument(
                    "ZooSmallMatmul: x [M, K] needs w [P, ", rows, ", 16], got ",
                    x.shape().DebugString(), " and ", w.shape().DebugString()));
    const bool scaled = scale.NumElements() > 0;
    OP_REQUIRES(context, scaled != bf16 && (!scaled || (scale.dims() == 1 &&
                                                        scale.dim_size(0) == pr.N)),
                tensorflow::errors::InvalidArgument(
                    "ZooSmallMatmul: scale must be [16 P] for int8 weights and empty for "
                    "bfloat16, got ", scale.shape().DebugString()));
    const bool biased = bias.NumElements() > 0;
    OP_REQUIRES(context, !biased || (bias.dims() == 1 && bias.dim_size(0) == pr.N),
                tensorflow::errors::InvalidArgument(
                    "ZooSmallMatmul: bias must be [16 P] or empty, got ",
                    bias.shape().DebugString()));
    Tensor* y = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({pr.M, pr.N}), &y));
    if (y->NumElements() == 0) return;
    pr.x = x.flat<float>().data();
    std::vector<float> normed;
    if (gamma.NumElements() > 0) {
      OP_REQUIRES(context, gamma.dims() == 1 && gamma.dim_size(0) == pr.K &&
                               beta.shape() == gamma.shape(),
                  tensorflow::errors::InvalidArgument(
                      "ZooSmallMatmul: gamma and beta must be [K] or empty, got ",
                      gamma.shape().DebugString(), " and ", beta.shape().DebugString()));
      normed.resize(pr.M * pr.K);
      LayerNorm(pr.x, gamma.flat<float>().data(), beta.flat<float>().data(), epsilon_, pr.M,
                pr.K, normed.data());
      pr.x = normed.data();
    }
    pr.w = w.tensor_data().data();
    pr.scale = scaled ? scale.flat<float>().data() : nullptr;
    pr.bias = biased ? bias.flat<float>().data() : nullptr;
    pr.gelu = gelu_;
    pr.y = y->flat<float>().data();
    const int64_t bytes = static_cast<int64_t>(w.tensor_data().size());
    if (!bf16) {
      Dispatch<false>(context, pr, bytes);
      return;
    }
    std::vector<uint32_t> pairs(pr.M * pr.J);
    for (int64_t m = 0; m < pr.M; ++m)
      for (int64_t j = 0; j < pr.J; ++j) {
        const float* row = pr.x + m * pr.K;
        const uint32_t lo = ToBf16(row[2 * j]);
        const uint32_t hi = 2 * j + 1 < pr.K ? ToBf16(row[2 * j + 1]) : 0u;
        pairs[m * pr.J + j] = lo | (hi << 16);
      }
    pr.pairs = pairs.data();
#if defined(ZOO_AVX2)
    std::vector<float> widened(pr.M > 2 ? pr.M * 2 * pr.J : 0);  // for tiles of > 2 rows
    for (int64_t i = 0; 2 * i < static_cast<int64_t>(widened.size()); ++i) {
      widened[2 * i] = FromBf16(pairs[i] & 0xFFFFu);
      widened[2 * i + 1] = FromBf16(pairs[i] >> 16);
    }
    pr.widened = widened.data();
#endif
    Dispatch<true>(context, pr, bytes);
  }

 private:
  bool gelu_ = false;
  float epsilon_ = 1e-6f;
};

// ZooPackBfloat16(kernel) -> w: float32 [K, N] weights in the bfloat16 layout ZooSmallMatmul
// reads ([P, K + K % 2, 16], P = ceil(N / 16), pairs of rows interleaved, zero padded), each
// value rounded to nearest even as tf.cast rounds it. One pass over the weights, split over
// the helper threads: a sampling call packs every decoder weight once, and TensorFlow's
// cast + pad + transpose took 37.5 ms of a call at the peer configuration (16x16: ~5% of an
// image; bench/RESULTS.md).
class PackBfloat16Op : public OpKernel {
 public:
  explicit PackBfloat16Op(OpKernelConstruction* context) : OpKernel(context) {}

  void Compute(OpKernelContext* context) override {
    const Tensor& kernel = context->input(0);
    OP_REQUIRES(context, kernel.dims() == 2,
                tensorflow::errors::InvalidArgument("ZooPackBfloat16: kernel must be [K, N], got ",
                                                    kernel.shape().DebugString()));
    const int64_t K = kernel.dim_size(0), N = kernel.dim_size(1);
    const int64_t J = (K + 1) / 2, P = (N + kLanes - 1) / kLanes;
    Tensor* out = nullptr;
    OP_REQUIRES_OK(context, context->allocate_output(0, TensorShape({P, 2 * J, kLanes}), &out));
    if (out->NumElements() == 0) return;
    const float* src = kernel.flat<float>().data();
    uint16_t* dst = reinterpret_cast<uint16_t*>(out->flat<tensorflow::bfloat16>().data());
    const int64_t bytes = static_cast<int64_t>(kernel.TotalBytes());
    Split(context, bytes, P, [&](int64_t begin, int64_t end) {
      // Row pairs outer: each reads a contiguous stretch of two rows, and writes one full
      // 64-byte line into each panel of the shard.
      for (int64_t j = 0; j < J; ++j) {
        for (int64_t p = begin; p < end; ++p) {
          uint16_t* o = dst + (p * J + j) * 2 * kLanes;
          const int64_t n0 = p * kLanes, lanes = std::min<int64_t>(kLanes, N - n0);
          const float* even = src + 2 * j * N + n0;
          const float* odd = 2 * j + 1 < K ? even + N : nullptr;
          for (int64_t l = 0; l < kLanes; ++l) {
            o[2 * l] = l < lanes ? static_cast<uint16_t>(ToBf16(even[l])) : 0;
            o[2 * l + 1] = l < lanes && odd != nullptr
                               ? static_cast<uint16_t>(ToBf16(odd[l])) : 0;
          }
        }
      }
    });
  }
};

absl::Status ShapeFn(InferenceContext* c) {
  ShapeHandle x, w;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &x));
  TF_RETURN_IF_ERROR(c->WithRank(c->input(1), 3, &w));
  DimensionHandle lanes, n;
  TF_RETURN_IF_ERROR(c->WithValue(c->Dim(w, 2), kLanes, &lanes));
  TF_RETURN_IF_ERROR(c->Multiply(c->Dim(w, 0), kLanes, &n));
  c->set_output(0, c->Matrix(c->Dim(x, 0), n));
  return absl::OkStatus();
}

absl::Status PackShapeFn(InferenceContext* c) {
  ShapeHandle kernel;
  TF_RETURN_IF_ERROR(c->WithRank(c->input(0), 2, &kernel));
  DimensionHandle panels, rows;
  TF_RETURN_IF_ERROR(c->Add(c->Dim(kernel, 1), kLanes - 1, &panels));
  TF_RETURN_IF_ERROR(c->Divide(panels, kLanes, false, &panels));
  TF_RETURN_IF_ERROR(c->Add(c->Dim(kernel, 0), 1, &rows));
  TF_RETURN_IF_ERROR(c->Divide(rows, 2, false, &rows));
  TF_RETURN_IF_ERROR(c->Multiply(rows, 2, &rows));
  c->set_output(0, c->MakeShape({panels, rows, kLanes}));
  return absl::OkStatus();
}

}  // namespace
}  // namespace zoo

REGISTER_OP("ZooSmallMatmul")
    .Input("x: float")
    .Input("w: T")
    .Input("scale: float")
    .Input("bias: float")
    .Input("gamma: float")
    .Input("beta: float")
    .Output("y: float")
    .Attr("T: {bfloat16, int8}")
    .Attr("activation: {'none', 'gelu'} = 'none'")
    .Attr("epsilon: float = 1e-6")
    .SetShapeFn(zoo::ShapeFn)
    .Doc(R"doc(
y = x @ (w * scale) for a few float32 rows x [M, K] and compact weights in panels of 16
columns (int8 w [P, K, 16] with a float32 scale [16 P] per output column, or bfloat16 w
[P, K + K % 2, 16] with pairs of rows interleaved and an empty scale; the rows are rounded
to bfloat16 then), accumulated in float32, plus a bias [16 P] (or empty), then the
activation (none, or the exact gelu); y is [M, 16 P]. With gamma and beta ([K]; else
empty) the rows are layer-normalised first.
)doc");

REGISTER_OP("ZooPackBfloat16")
    .Input("kernel: float")
    .Output("w: bfloat16")
    .SetShapeFn(zoo::PackShapeFn)
    .Doc(R"doc(
The float32 weights kernel [K, N] in ZooSmallMatmul's bfloat16 layout: w [ceil(N / 16),
K + K % 2, 16], panels of 16 columns with pairs of rows interleaved, zero padded, each value
rounded to nearest even (as tf.cast).
)doc");

REGISTER_KERNEL_BUILDER(Name("ZooPackBfloat16").Device(tensorflow::DEVICE_CPU),
                        zoo::PackBfloat16Op);
REGISTER_KERNEL_BUILDER(
    Name("ZooSmallMatmul").Device(tensorflow::DEVICE_CPU).TypeConstraint<tensorflow::bfloat16>("T"),
    zoo::SmallMatmulOp);
REGISTER_KERNEL_BUILDER(
    Name("ZooSmallMatmul").Device(tensorflow::DEVICE_CPU).TypeConstraint<int8_t>("T"),
    zoo::SmallMatmulOp);
