/* bf16 <-> fp32 for the C kernels: widening is exact; narrowing rounds to nearest even, NaN stays NaN. */
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

#endif
