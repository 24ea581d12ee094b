/* Cross-entropy of logit rows and its gradient in one fused pass per row, for the CPU.
 *
 * For each row r of `logits` ([rows, vocab], row-major, bf16 or fp32), with t = targets[r]:
 *   loss[r]   = logsumexp(row) - row[t]                      (fp32)
 *   row[j]   <- exp(row[j] - logsumexp(row)) - (j == t)      (in place, the row's dtype)
 * i.e. the summed cross-entropy and d(loss)/d(logits). A target outside [0, vocab) gives loss 0 and a
 * zero gradient row (the caller drops ignored tokens before; this only keeps bad input harmless).
 *
 * All arithmetic is fp32: bf16 values widen exactly, the sum of exponentials accumulates in fp32, and
 * the gradient rounds to bf16 to nearest even, once. Each row is read twice (max, then the exponentials,
 * computed once into an fp32 scratch row) and written once while it sits in cache, so memory sees about one
 * read and one write of the logits, against about six for the upcast, log-softmax, exp and downcast passes
 * of the torch path.
 *
 * Plain C with no torch headers: it builds in about a second and is called through ctypes, which releases
 * the GIL, so the caller splits rows over threads. Loops are written for the compiler's vectorizer
 * (`omp simd` needs only -fopenmp-simd, no OpenMP runtime).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"
#include "exp_nonpositive.h"

#define ROW_KERNEL(NAME, T, LOAD, STORE)                                                       \
  void NAME(T* logits, int64_t rows, int64_t vocab, const int64_t* targets, float* loss) {     \
    float* e = (float*)malloc((size_t)vocab * sizeof(float)); /* one row's exponentials */     \
    if (!e) return;                                                                            \
    for (int64_t r = 0; r < rows; ++r) {                                                       \
      T* row = logits + r * vocab;                                                             \
      float m = -INFINITY;                                                                     \
      _Pragma("omp simd reduction(max : m)") for (int64_t j = 0; j < vocab; ++j) {             \
        float v = LOAD(row[j]);                                                                \
        m = v > m ? v : m;                                                                     \
      }                                                                                        \
      float sum = 0.0f;                                                                        \
      _Pragma("omp simd reduction(+ : sum)") for (int64_t j = 0; j < vocab; ++j) {             \
        e[j] = exp_nonpositive(LOAD(row[j]) - m);                                              \
        sum += e[j];                                                                           \
      }                                                                                        \
      /* loss = log(sum) - (x_t - m): subtracting m first keeps it exact-ish even when the logits are  \
         large (m + log(sum) would round to the ulp of m). */                                  \
      const int64_t t = targets[r];                                                            \
      const int valid = t >= 0 && t < vocab;                                                   \
      loss[r] = valid ? logf(sum) - (LOAD(row[t]) - m) : 0.0f;                                 \
      const float inv = valid ? 1.0f / sum : 0.0f;                                             \
      _Pragma("omp simd") for (int64_t j = 0; j < vocab; ++j) row[j] = STORE(e[j] * inv);      \
      if (valid) row[t] = STORE(e[t] * inv - 1.0f);                                            \
    }                                                                                          \
    free(e);                                                                                   \
  }

ROW_KERNEL(ttl_cross_entropy_rows_bf16, uint16_t, bf16_to_float, float_to_bf16)
ROW_KERNEL(ttl_cross_entropy_rows_f32, float, LOAD_F32, STORE_F32)
