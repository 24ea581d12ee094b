/* Attention's softmax over score rows and its backward, fused, for the CPU (bf16 or fp32, fp32 math).
 *
 * Rows are the [b, h, s, kv] scores flattened to [b*h*s, kv]; row r is query i = r % s of batch
 * r / (h*s). Which keys a query sees:
 *   causal:  keys j <= i (top-left aligned, as torch's is_causal);
 *   mask:    a bool (uint8) matrix per batch, `mask + batch * mask_batch_stride + i * mask_row_stride`
 *            (stride 0 shares one matrix across the batch);
 *   neither: every key.
 * Forward, in place:  row <- softmax(scale * row) over the visible keys, 0 elsewhere; a row that sees no
 *   key becomes all zeros (torch's math kernel gives NaN there; zeros are its nan_to_num).
 * Backward, in place over dP:  dP <- scale * P * (dP - sum_j dP_j P_j), i.e. the gradient of the
 *   pre-scale scores, with the scale folded in so no separate pass multiplies dq and dk.
 * One read and one write of each row against torch's masked_fill, softmax and scale passes; exponentials
 * are computed once, into an fp32 scratch row, and a causal row computes them for its visible keys only.
 * Plain C, no torch headers (see c_library.py for how it is built and called).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "exp_nonpositive.h"

#define ATTENTION_SOFTMAX_KERNELS(SUFFIX, T, LOAD, STORE, ZERO)                                                   \
  void ttl_attention_softmax_forward_##SUFFIX(T* x, int64_t first_row, int64_t rows, int64_t kv, int64_t s,     \
                                               int64_t heads, float scale, int causal, const uint8_t* mask,      \
                                               int64_t mask_batch_stride, int64_t mask_row_stride) {             \
    float* e = (float*)malloc((size_t)kv * sizeof(float)); /* one row's exponentials */                          \
    if (!e) return;                                                                                             \
    for (int64_t r = 0; r < rows; ++r) {                                                                        \
      const int64_t global = first_row + r, i = global % s;                                                     \
      T* row = x + r * kv;                                                                                      \
      const uint8_t* allowed = mask ? mask + (global / (heads * s)) * mask_batch_stride + i * mask_row_stride  \
                                    : NULL;                                                                     \
      const int64_t n = causal ? (i + 1 < kv ? i + 1 : kv) : kv; /* keys [0, n) may be visible */               \
      float m = -INFINITY;                                                                                      \
      if (allowed) {                                                                                            \
        for (int64_t j = 0; j < n; ++j) {                                                                       \
          float v = allowed[j] ? LOAD(row[j]) : -INFINITY;                                                      \
          m = v > m ? v : m;                                                                                    \
        }                                                                                                       \
      } else {                                                                                                  \
        _Pragma("omp simd reduction(max : m)") for (int64_t j = 0; j < n; ++j) {                                \
          float v = LOAD(row[j]);                                                                               \
          m = v > m ? v : m;                                                                                    \
        }                                                                                                       \
      }                                                                                                         \
      if (m == -INFINITY) { /* no visible key */                                                                \
        for (int64_t j = 0; j < kv; ++j) row[j] = ZERO;                                                         \
        continue;                                                                                               \
      }                                                                                                         \
      const float ms = m * scale;                                                                               \
      float sum = 0.0f;                                                                                         \
      if (allowed) {                                                                                            \
        _Pragma("omp simd reduction(+ : sum)") for (int64_t j = 0; j < n; ++j) {                                \
          e[j] = allowed[j] ? exp_nonpositive(LOAD(row[j]) * scale - ms) : 0.0f;                                \
          sum += e[j];                                                                                          \
        }                                                                                                       \
      } else {                                                                                                  \
        _Pragma("omp simd reduction(+ : sum)") for (int64_t j = 0; j < n; ++j) {                                \
          e[j] = exp_nonpositive(LOAD(row[j]) * scale - ms);                                                    \
          sum += e[j];                                                                                          \
        }                                                                                                       \
      }                                                                                                         \
      const float inv = 1.0f / sum;                                                                             \
      _Pragma("omp simd") for (int64_t j = 0; j < n; ++j) row[j] = STORE(e[j] * inv);                           \
      for (int64_t j = n; j < kv; ++j) row[j] = ZERO;                                                           \
    }                                                                                                           \
    free(e);                                                                                                    \
  }                                                                                                             \
  void ttl_attention_softmax_backward_##SUFFIX(const T* p, T* dp, int64_t first_row, int64_t rows, int64_t kv,  \
                                                int64_t s, float scale, int causal) {                           \
    for (int64_t r = 0; r < rows; ++r) {                                                                        \
      const int64_t i = (first_row + r) % s;                                                                    \
      const T* pr = p + r * kv;                                                                                 \
      T* gr = dp + r * kv;                                                                                      \
      const int64_t n = causal ? (i + 1 < kv ? i + 1 : kv) : kv; /* beyond n, P is 0 and so is the result */    \
      float dot = 0.0f;                                                                                         \
      _Pragma("omp simd reduction(+ : dot)") for (int64_t j = 0; j < n; ++j) dot += LOAD(gr[j]) * LOAD(pr[j]);  \
      _Pragma("omp simd") for (int64_t j = 0; j < n; ++j) {                                                     \
        gr[j] = STORE(scale * LOAD(pr[j]) * (LOAD(gr[j]) - dot));                                               \
      }                                                                                                         \
      for (int64_t j = n; j < kv; ++j) gr[j] = ZERO;                                                            \
    }                                                                                                           \
  }

ATTENTION_SOFTMAX_KERNELS(bf16, uint16_t, bf16_to_float, float_to_bf16, 0)
ATTENTION_SOFTMAX_KERNELS(f32, float, LOAD_F32, STORE_F32, 0.0f)
