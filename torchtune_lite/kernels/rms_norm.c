/* RMSNorm forward and backward over rows, fused, for the CPU (bf16 or fp32 activations, fp32 math).
 *
 * Forward, per row x of length dim:  r = 1 / sqrt(mean(x^2) + eps);  y = round((x * r) * w)
 *   (w is the fp32 scale, already `1 + scale` for Gemma's form); r is kept for backward.
 * Backward, with g = dL/dy and u = g * w, xn = x * r:
 *   dL/dx = r * (u - xn * mean(u * xn)),   dL/dw += g * xn summed over rows (when gw is not NULL).
 * The torch ops take about ten passes over the activations for this, several of them in fp32; here each
 * row is read once or twice while it sits in cache and written once.
 * Plain C, no torch headers (see c_library.py for how it is built and called).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "bf16.h"

#define RMS_NORM_KERNELS(SUFFIX, T, LOAD, STORE)                                                          \
  void ttl_rms_norm_forward_##SUFFIX(const T* x, const float* w, int64_t rows, int64_t dim, float eps,   \
                                     T* y, float* inv_rms) {                                             \
    for (int64_t r = 0; r < rows; ++r) {                                                                  \
      const T* xr = x + r * dim;                                                                          \
      T* yr = y + r * dim;                                                                                \
      float sq = 0.0f;                                                                                    \
      _Pragma("omp simd reduction(+ : sq)") for (int64_t j = 0; j < dim; ++j) {                           \
        float v = LOAD(xr[j]);                                                                            \
        sq += v * v;                                                                                      \
      }                                                                                                   \
      const float inv = 1.0f / sqrtf(sq / (float)dim + eps);                                              \
      inv_rms[r] = inv;                                                                                   \
      _Pragma("omp simd") for (int64_t j = 0; j < dim; ++j) yr[j] = STORE((LOAD(xr[j]) * inv) * w[j]);    \
    }                                                                                                     \
  }                                                                                                       \
  void ttl_rms_norm_backward_##SUFFIX(const T* x, const float* w, const float* inv_rms, const T* g,      \
                                      int64_t rows, int64_t dim, T* gx, float* gw) {                     \
    for (int64_t r = 0; r < rows; ++r) {                                                                  \
      const T* xr = x + r * dim;                                                                          \
      const T* gr = g + r * dim;                                                                          \
      T* gxr = gx + r * dim;                                                                              \
      const float inv = inv_rms[r];                                                                       \
      float dot = 0.0f;                                                                                   \
      _Pragma("omp simd reduction(+ : dot)") for (int64_t j = 0; j < dim; ++j) {                          \
        dot += LOAD(gr[j]) * w[j] * (LOAD(xr[j]) * inv);                                                  \
      }                                                                                                   \
      const float mean_dot = dot / (float)dim;                                                            \
      _Pragma("omp simd") for (int64_t j = 0; j < dim; ++j) {                                             \
        float xn = LOAD(xr[j]) * inv;                                                                     \
        gxr[j] = STORE(inv * (LOAD(gr[j]) * w[j] - xn * mean_dot));                                       \
      }                                                                                                   \
      if (gw) {                                                                                           \
        _Pragma("omp simd") for (int64_t j = 0; j < dim; ++j) gw[j] += LOAD(gr[j]) * (LOAD(xr[j]) * inv); \
      }                                                                                                   \
    }                                                                                                     \
  }

RMS_NORM_KERNELS(bf16, uint16_t, bf16_to_float, float_to_bf16)
RMS_NORM_KERNELS(f32, float, LOAD_F32, STORE_F32)
