/* A vectorizable e^x for x <= 0, shared by the kernels that exponentiate (softmax-like rows). */
#ifndef TORCHTUNE_LITE_EXP_NONPOSITIVE_H
#define TORCHTUNE_LITE_EXP_NONPOSITIVE_H
#include <math.h>
#include <stdint.h>
#include <string.h>

/* e^x for x <= 0 (x - max of its row), relative error about 1e-7; 0 below -87.
 * x = n ln2 + u with |u| <= ln2 / 2 (ln2 split in two so n ln2 is exact enough), e^u by its Taylor
 * series to u^7 (remainder < 1e-8 there), times 2^n put into the exponent bits. */
static inline float exp_nonpositive(float x) {
  const float log2e = 1.44269504088896341f, ln2_hi = 0.693145751953125f, ln2_lo = 1.42860682030941723e-6f;
  float xc = x < -87.0f ? -87.0f : x;
  float n = rintf(xc * log2e);
  float u = (xc - n * ln2_hi) - n * ln2_lo;
  float p = 1.0f / 5040.0f;
  p = p * u + 1.0f / 720.0f;
  p = p * u + 1.0f / 120.0f;
  p = p * u + 1.0f / 24.0f;
  p = p * u + 1.0f / 6.0f;
  p = p * u + 0.5f;
  p = p * u + 1.0f;
  p = p * u + 1.0f;
  int32_t bits;
  memcpy(&bits, &p, 4);
  bits += (int32_t)n << 23;
  float out;
  memcpy(&out, &bits, 4);
  return x < -87.0f ? 0.0f : out;
}

#endif
