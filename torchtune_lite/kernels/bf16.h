/* Loads and stores of the C kernels' element types as fp32: bf16 widens exactly and narrows to nearest even
 * (NaN stays NaN); fp32 passes through. Kernels written once as macros take one pair or the other. */
#ifndef TORCHTUNE_LITE_BF16_H
#define TORCHTUNE_LITE_BF16_H
#include <stdint.h>
#include <string.h>

static inline float bf16_to_float(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t float_to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return (uint16_t)(f != f ? 0x7FC0u : rounded);
}

#define LOAD_F32(v) (v)
#define STORE_F32(v) (v)

#endif
