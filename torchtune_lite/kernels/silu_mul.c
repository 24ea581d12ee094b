/* SwiGLU's gate, silu(g) * u, and its backward, fused, for the CPU (bf16 or fp32, fp32 math).
 *
 * Forward:  h = silu(g) * u,  silu(g) = g * sigmoid(g).
 * Backward, with dh = dL/dh and sg = sigmoid(g):
 *   du = dh * silu(g),   dg = dh * u * sg * (1 + g * (1 - sg)).
 * Each output rounds once from fp32; torch's ops round silu(g), then the product, and in backward make
 * four passes (two multiplies, silu's backward, and silu recomputed or saved). Autograd keeps g, u and
 * silu(g) for the torch ops; this keeps g and u.
 * Plain C, no torch headers (see c_library.py for how it is built and called).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "bf16.h"
#include "exp_nonpositive.h"

/* sigmoid(x) from e^-|x| <= 1, so the exponential never overflows. */
static inline float sigmoid(float x) {
  const float e = exp_nonpositive(-fabsf(x));
  const float inv = 1.0f / (1.0f + e);
  return x >= 0.0f ? inv : e * inv;
}

#define SILU_MUL_KERNELS(SUFFIX, T, LOAD, STORE)                                                          \
  void ttl_silu_mul_forward_##SUFFIX(const T* g, const T* u, int64_t n, T* h) {                         \
    _Pragma("omp simd") for (int64_t i = 0; i < n; ++i) {                                                 \
      const float x = LOAD(g[i]);                                                                         \
      h[i] = STORE(x * sigmoid(x) * LOAD(u[i]));                                                          \
    }                                                                                                     \
  }                                                                                                       \
  void ttl_silu_mul_backward_##SUFFIX(const T* g, const T* u, const T* dh, int64_t n, T* dg, T* du) {   \
    _Pragma("omp simd") for (int64_t i = 0; i < n; ++i) {                                                 \
      const float x = LOAD(g[i]), d = LOAD(dh[i]), sg = sigmoid(x);                                       \
      du[i] = STORE(d * x * sg);                                                                          \
      dg[i] = STORE(d * LOAD(u[i]) * sg * (1.0f + x * (1.0f - sg)));                                      \
    }                                                                                                     \
  }

SILU_MUL_KERNELS(bf16, uint16_t, bf16_to_float, float_to_bf16)
SILU_MUL_KERNELS(f32, float, LOAD_F32, STORE_F32)
