/* Rotary position embedding (RoPE) of one head vector per (batch, position, head), for the CPU (bf16 or
 * fp32, fp32 math), written in whatever layout the caller's strides give.
 *
 * Each pair (x[2i], x[2i+1]) of a head is rotated by the angle whose cos and sin the fp32 table holds at
 * `table[(pos * half + i) * 2 + {0, 1}]` (half = head_dim / 2):
 *   out[2i]   = x[2i] c - x[2i+1] s,    out[2i+1] = x[2i+1] c + x[2i] s,
 * with s negated for the inverse rotation, which is RoPE's backward. pos is the row's position in
 * `positions` (or the sequence index when NULL). Input and output strides are separate, so the forward
 * writes q and k straight into the [b, h, s, d] layout attention's batched matmuls read, and the backward
 * reads the gradient in that layout: no transposing copies either way, and one rounding per output.
 * Rows are (batch, position) pairs, row r = batch * seq + position.
 * Plain C, no torch headers (see c_library.py for how it is built and called).
 */
#include <stdint.h>
#include <string.h>

#include "bf16.h"

#define ROPE_KERNEL(SUFFIX, T, LOAD, STORE)                                                                   \
  void ttl_rope_##SUFFIX(const T* x, int64_t x_batch, int64_t x_pos, int64_t x_head, T* out, int64_t o_batch, \
                         int64_t o_pos, int64_t o_head, int64_t first_row, int64_t rows, int64_t seq,          \
                         int64_t heads, int64_t head_dim, const float* table, const int64_t* positions,       \
                         int64_t positions_batch, float sin_sign) {                                           \
    const int64_t half = head_dim / 2;                                                                        \
    for (int64_t r = first_row; r < first_row + rows; ++r) {                                                  \
      const int64_t b = r / seq, p = r % seq;                                                                 \
      const int64_t pos = positions ? positions[b * positions_batch + p] : p;                                 \
      const float* cs = table + pos * half * 2;                                                               \
      for (int64_t h = 0; h < heads; ++h) {                                                                   \
        const T* xr = x + b * x_batch + p * x_pos + h * x_head;                                               \
        T* orow = out + b * o_batch + p * o_pos + h * o_head;                                                 \
        _Pragma("omp simd") for (int64_t i = 0; i < half; ++i) {                                              \
          const float c = cs[2 * i], s = sin_sign * cs[2 * i + 1];                                            \
          const float a = LOAD(xr[2 * i]), bb = LOAD(xr[2 * i + 1]);                                          \
          orow[2 * i] = STORE(a * c - bb * s);                                                                \
          orow[2 * i + 1] = STORE(bb * c + a * s);                                                            \
        }                                                                                                     \
      }                                                                                                       \
    }                                                                                                         \
  }

ROPE_KERNEL(bf16, uint16_t, bf16_to_float, float_to_bf16)
ROPE_KERNEL(f32, float, LOAD_F32, STORE_F32)
