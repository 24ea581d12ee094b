/* NF4 (QLoRA's 4-bit NormalFloat) quantize and dequantize over blocks, bit for bit as torchao computes them.
 *
 * Quantize, per block of block_size values x: m = max |x| (the block's absmax, kept in the weight dtype),
 * then each value's code from its scaled value T(x / m): 16-bit dtypes look the scaled bit pattern up in a
 * 65536-entry table of torchao's own choices; fp32 counts the 15 switch points at or below it. Two codes per
 * byte, the first in the high nibble.
 * Dequantize, per block with scale s: each value is T(code_value * s), float math rounded once to T, as torch's
 * elementwise multiply of two T tensors does. A block has only 16 distinct results, so each block first builds
 * its 16-entry table and then every value is a lookup: 16-bit results by byte shuffles (AVX2) or one 32-lane
 * permute (AVX-512), fp32 by 8- or 16-lane permutes; bf16 on AVX512-BF16 multiplies and rounds 16 lanes at a
 * time instead (see block_bf16_avx512bf16). The widest path the CPU runs is chosen at run time
 * (`__builtin_cpu_supports` + per-function target attributes), so one build serves AVX2-only and AVX-512
 * machines; callers may ask for a narrower path (tests cover each one on one machine).
 * A NaN absmax or scale makes a function return 1 (its output then partly written): the caller's torch ops
 * redo the whole weight and reproduce torchao's exact NaN bits.
 * Plain C, no torch headers (see c_library.py for how it is built and called).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TTL_X86 1
#define TARGET_AVX2 __attribute__((target("avx2,fma")))
#define TARGET_AVX512 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl")))
#define TARGET_AVX512BF16 __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512bf16")))
#endif

#include "bf16.h"

enum { PATH_SCALAR = 0, PATH_AVX2 = 1, PATH_AVX512 = 2, PATH_AVX512BF16 = 3 };

/* ---- fp16 <-> fp32, as c10::Half converts (round to nearest even, subnormals kept, NaN -> quiet NaN) ---- */

static inline float f16_to_float(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1Fu, mant = h & 0x3FFu, u;
  if (exp == 0) {
    float v = (float)mant * 5.9604644775390625e-08f; /* mant * 2^-24, exact */
    memcpy(&u, &v, 4);
    u |= sign;
  } else if (exp == 31) {
    u = sign | 0x7F800000u | (mant << 13);
  } else {
    u = sign | ((exp + 112u) << 23) | (mant << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline uint16_t float_to_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7FFFFFFFu;
  if (a > 0x7F800000u) return sign | 0x7E00u;
  if (a >= 0x47800000u) return sign | 0x7C00u;          /* |f| >= 2^16: inf */
  if (a >= 0x38800000u) {                               /* a normal half: rebias 127 -> 15, round at bit 13 */
    uint32_t r = a - 0x38000000u;                       /* (a carry past 65504 lands exactly on inf) */
    r += 0xFFFu + ((r >> 13) & 1u);
    return sign | (uint16_t)(r >> 13);
  }
  if (a < 0x33000000u) return sign;                     /* below 2^-25: zero (2^-25 itself ties to zero) */
  uint32_t shift = 126u - (a >> 23);                    /* subnormal: round(|f| * 2^24) = significand >> shift */
  uint32_t mant = (a & 0x7FFFFFu) | 0x800000u;
  uint32_t q = mant >> shift, rem = mant & ((1u << shift) - 1u), half = 1u << (shift - 1u);
  q += (rem > half) || (rem == half && (q & 1u));
  return sign | (uint16_t)q;
}

/* ---- quantize ---- */

/* 16-bit dtypes: for non-NaN values the largest magnitude has the largest bit pattern once the sign is masked,
 * and any NaN a larger one than inf, so the integer max finds absmax and flags NaN alike. Scaled values are
 * produced a chunk at a time so the divide-and-round loop vectorizes. */
#define QUANTIZE_16BIT(SUFFIX, TO_FLOAT, FROM_FLOAT, NAN_ABOVE)                                              \
  int ttl_nf4_quantize_##SUFFIX(const uint16_t* w, int64_t n_blocks, int64_t block_size, const uint8_t* table, \
                                uint16_t* absmax, uint8_t* packed) {                                         \
    uint16_t scaled[256];                                                                                  \
    for (int64_t b = 0; b < n_blocks; ++b) {                                                               \
      const uint16_t* x = w + b * block_size;                                                              \
      uint32_t m32 = 0; /* in 32 bits: the uint16 max reduction does not vectorize */                      \
      _Pragma("omp simd reduction(max : m32)") for (int64_t i = 0; i < block_size; ++i) {                  \
        const uint32_t a = x[i] & 0x7FFFu;                                                                 \
        m32 = a > m32 ? a : m32;                                                                           \
      }                                                                                                    \
      const uint16_t m = (uint16_t)m32;                                                                    \
      if (m > NAN_ABOVE) return 1;                                                                         \
      absmax[b] = m;                                                                                       \
      const float mf = TO_FLOAT(m);                                                                        \
      uint8_t* out = packed + b * (block_size / 2);                                                        \
      for (int64_t start = 0; start < block_size; start += 256) {                                          \
        const int64_t n = block_size - start < 256 ? block_size - start : 256;                             \
        _Pragma("omp simd") for (int64_t i = 0; i < n; ++i) scaled[i] = FROM_FLOAT(TO_FLOAT(x[start + i]) / mf); \
        for (int64_t j = 0; j < n / 2; ++j)                                                                \
          out[start / 2 + j] = (uint8_t)((table[scaled[2 * j]] << 4) | table[scaled[2 * j + 1]]);          \
      }                                                                                                    \
    }                                                                                                      \
    return 0;                                                                                              \
  }

QUANTIZE_16BIT(bf16, bf16_to_float, float_to_bf16, 0x7F80u)
QUANTIZE_16BIT(f16, f16_to_float, float_to_f16, 0x7C00u)

/* fp32: the code is the number of switch points at or below the scaled value. */
int ttl_nf4_quantize_f32(const float* w, int64_t n_blocks, int64_t block_size, const float* thresholds, float* absmax,
                         uint8_t* packed) {
  float t[15];
  memcpy(t, thresholds, sizeof(t));
  uint8_t codes[256];
  for (int64_t b = 0; b < n_blocks; ++b) {
    const float* x = w + b * block_size;
    uint32_t m = 0;
    for (int64_t i = 0; i < block_size; ++i) {
      uint32_t u;
      memcpy(&u, &x[i], 4);
      u &= 0x7FFFFFFFu;
      m = u > m ? u : m;
    }
    if (m > 0x7F800000u) return 1;
    float mf;
    memcpy(&mf, &m, 4);
    absmax[b] = mf;
    uint8_t* out = packed + b * (block_size / 2);
    for (int64_t start = 0; start < block_size; start += 256) {
      const int64_t n = block_size - start < 256 ? block_size - start : 256;
      _Pragma("omp simd") for (int64_t i = 0; i < n; ++i) {
        const float v = x[start + i] / mf;
        uint8_t k = 0;
        for (int j = 0; j < 15; ++j) k += (uint8_t)(v >= t[j]);
        codes[i] = k;
      }
      for (int64_t j = 0; j < n / 2; ++j) out[start / 2 + j] = (uint8_t)((codes[2 * j] << 4) | codes[2 * j + 1]);
    }
  }
  return 0;
}

/* ---- dequantize ---- */

/* The 16 results of one block: T(code_value[k] * s). bf16's are rounded 16 lanes at a time where the CPU has
 * AVX2 (rounding one at a time took most of the time of a bf16 dequantize). */
#ifdef TTL_X86
/* float_to_bf16 on 8 lanes, results in the low half of each int32 lane. */
TARGET_AVX2 static inline __m256i bf16_bits8(__m256 f) {
  const __m256i u = _mm256_castps_si256(f);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7FFF)), lsb), 16);
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q)));
}

TARGET_AVX2 static inline void table_bf16_avx2(const float* codes, float s, uint16_t* tab) {
  const __m256 scale = _mm256_set1_ps(s);
  const __m256i lo = bf16_bits8(_mm256_mul_ps(_mm256_loadu_ps(codes), scale));
  const __m256i hi = bf16_bits8(_mm256_mul_ps(_mm256_loadu_ps(codes + 8), scale));
  /* packus interleaves 128-bit lanes: the permute puts the 16 results back in order; one 32-byte store,
   * which the lookups read back with one 32-byte load */
  _mm256_storeu_si256((__m256i*)tab, _mm256_permute4x64_epi64(_mm256_packus_epi32(lo, hi), 0xD8));
}
#endif

static inline void table_bf16(const float* codes, float s, uint16_t* tab) {
  for (int k = 0; k < 16; ++k) tab[k] = float_to_bf16(codes[k] * s);
}
static inline void table_f16(const float* codes, float s, uint16_t* tab) {
  for (int k = 0; k < 16; ++k) tab[k] = float_to_f16(codes[k] * s);
}
static inline void table_f32(const float* codes, float s, float* tab) {
  for (int k = 0; k < 16; ++k) tab[k] = codes[k] * s;
}

/* Packed bytes [from, n) of a block through its table, one value at a time (tails, and CPUs without AVX2). */
#define LOOKUP_SCALAR(BITS, T)                                                                   \
  static inline void lookup##BITS##_scalar(const T* tab, const uint8_t* p, int64_t from, int64_t n, T* o) { \
    for (int64_t j = from; j < n; ++j) {                                                         \
      o[2 * j] = tab[p[j] >> 4];                                                                 \
      o[2 * j + 1] = tab[p[j] & 15];                                                             \
    }                                                                                            \
  }
LOOKUP_SCALAR(16, uint16_t)
LOOKUP_SCALAR(32, float)
#define LOOKUP_NONE(tab, p, n, o) ((int64_t)0)

#ifdef TTL_X86
/* The 32 codes of 16 packed bytes, in order, as bytes of a 256-bit register. */
TARGET_AVX2 static inline __m256i codes32(const uint8_t* p) {
  const __m128i q = _mm_loadu_si128((const __m128i*)p), low4 = _mm_set1_epi8(0x0F);
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), low4), lo = _mm_and_si128(q, low4);
  return _mm256_set_m128i(_mm_unpackhi_epi8(hi, lo), _mm_unpacklo_epi8(hi, lo));
}

/* 16-bit results: the table's low and high bytes are two 16-byte shuffle tables; 32 values per step. */
TARGET_AVX2 static inline int64_t lookup16_avx2(const uint16_t* tab, const uint8_t* p, int64_t n, uint16_t* o) {
  /* per 128-bit lane: low bytes of its 8 entries, then high bytes; the permute gathers all 16 low bytes in
   * lane 0 and all high bytes in lane 1, then each is copied to both lanes */
  const __m256i split = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15,
                                         0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
  const __m256i bytes = _mm256_permute4x64_epi64(_mm256_shuffle_epi8(_mm256_loadu_si256((const __m256i*)tab), split), 0xD8);
  const __m256i lo_tab = _mm256_permute2x128_si256(bytes, bytes, 0x00);
  const __m256i hi_tab = _mm256_permute2x128_si256(bytes, bytes, 0x11);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256i c = codes32(p + j);
    const __m256i l = _mm256_shuffle_epi8(lo_tab, c), h = _mm256_shuffle_epi8(hi_tab, c);
    /* unpack works within 128-bit lanes: lane 0 holds values 0-7 and 8-15, lane 1 values 16-23 and 24-31 */
    const __m256i a = _mm256_unpacklo_epi8(l, h), b = _mm256_unpackhi_epi8(l, h);
    _mm256_storeu_si256((__m256i*)(o + 2 * j), _mm256_permute2x128_si256(a, b, 0x20));
    _mm256_storeu_si256((__m256i*)(o + 2 * j + 16), _mm256_permute2x128_si256(a, b, 0x31));
  }
  return j;
}

/* fp32 results: two 8-entry permutes, bit 3 of the code (moved to the sign bit) picks between them. */
TARGET_AVX2 static inline int64_t lookup32_avx2(const float* tab, const uint8_t* p, int64_t n, float* o) {
  const __m256 lo8 = _mm256_loadu_ps(tab), hi8 = _mm256_loadu_ps(tab + 8);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256i c = codes32(p + j);
    const __m128i halves[2] = {_mm256_castsi256_si128(c), _mm256_extracti128_si256(c, 1)};
    for (int h = 0; h < 2; ++h) {
      for (int q = 0; q < 2; ++q) {
        const __m256i idx = _mm256_cvtepu8_epi32(_mm_srli_si128(halves[h], 8 * q));
        const __m256 a = _mm256_permutevar8x32_ps(lo8, idx), b = _mm256_permutevar8x32_ps(hi8, idx);
        _mm256_storeu_ps(o + 2 * j + 16 * h + 8 * q, _mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28))));
      }
    }
  }
  return j;
}

/* 16-bit results: one 32-lane word permute per 32 values. */
TARGET_AVX512 static inline int64_t lookup16_avx512(const uint16_t* tab, const uint8_t* p, int64_t n, uint16_t* o) {
  const __m256i t16 = _mm256_loadu_si256((const __m256i*)tab);
  const __m512i t = _mm512_inserti64x4(_mm512_castsi256_si512(t16), t16, 1);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    _mm512_storeu_si512(o + 2 * j, _mm512_permutexvar_epi16(_mm512_cvtepu8_epi16(codes32(p + j)), t));
  }
  return j;
}

/* fp32 results: one 16-lane permute per 16 values. */
TARGET_AVX512 static inline int64_t lookup32_avx512(const float* tab, const uint8_t* p, int64_t n, float* o) {
  const __m512 t = _mm512_loadu_ps(tab);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m256i c = codes32(p + j);
    _mm512_storeu_ps(o + 2 * j, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(c)), t));
    _mm512_storeu_ps(o + 2 * j + 16, _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(c, 1)), t));
  }
  return j;
}
#endif

/* The widest dequantize path this CPU runs (AVX512-BF16 serves bf16 only; other dtypes take AVX-512 there). */
int ttl_nf4_widest_path(void) {
  static int widest = -1; /* computed once; a race only computes the same value twice */
  if (widest < 0) {
    int found = PATH_SCALAR;
#ifdef TTL_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) found = PATH_AVX2;
    if (found == PATH_AVX2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
      found = PATH_AVX512;
    if (found == PATH_AVX512 && __builtin_cpu_supports("avx512bf16")) found = PATH_AVX512BF16;
#endif
    widest = found;
  }
  return widest;
}

/* One block's values from its scale s on one path: its 16 results as a table, then lookups. */
#define TABLE_THEN_LOOKUP(NAME, ATTR, T, TABLE, LOOKUP, TAIL)                                       \
  ATTR static inline void NAME(const float* codes, float s, const uint8_t* p, int64_t n, T* o) {    \
    T tab[16];                                                                                      \
    TABLE(codes, s, tab);                                                                           \
    TAIL(tab, p, LOOKUP(tab, p, n, o), n, o);                                                       \
  }
#define NO_TARGET
TABLE_THEN_LOOKUP(block_bf16_scalar, NO_TARGET, uint16_t, table_bf16, LOOKUP_NONE, lookup16_scalar)
TABLE_THEN_LOOKUP(block_f16_scalar, NO_TARGET, uint16_t, table_f16, LOOKUP_NONE, lookup16_scalar)
TABLE_THEN_LOOKUP(block_f32_scalar, NO_TARGET, float, table_f32, LOOKUP_NONE, lookup32_scalar)
#ifdef TTL_X86
TABLE_THEN_LOOKUP(block_bf16_avx2, TARGET_AVX2, uint16_t, table_bf16_avx2, lookup16_avx2, lookup16_scalar)
TABLE_THEN_LOOKUP(block_f16_avx2, TARGET_AVX2, uint16_t, table_f16, lookup16_avx2, lookup16_scalar)
TABLE_THEN_LOOKUP(block_f32_avx2, TARGET_AVX2, float, table_f32, lookup32_avx2, lookup32_scalar)
TABLE_THEN_LOOKUP(block_bf16_avx512, TARGET_AVX512, uint16_t, table_bf16_avx2, lookup16_avx512, lookup16_scalar)
TABLE_THEN_LOOKUP(block_f16_avx512, TARGET_AVX512, uint16_t, table_f16, lookup16_avx512, lookup16_scalar)
TABLE_THEN_LOOKUP(block_f32_avx512, TARGET_AVX512, float, table_f32, lookup32_avx512, lookup32_scalar)

/* bf16 with AVX512-BF16: with 64-value blocks a table is built for only 4 uses per entry, so here each value
 * is code * s, rounded by VCVTNEPS2BF16 (to nearest even, like float_to_bf16). That instruction flushes
 * subnormal results to zero and gives another NaN than torch for 0 * inf: blocks whose scale can produce
 * either (only near-zero or non-finite weights) take the table. */
TARGET_AVX512BF16 static inline void block_bf16_avx512bf16(const float* codes, float s, const uint8_t* p, int64_t n,
                                                           uint16_t* o) {
  int64_t j = 0;
  if (isfinite(s) && fabsf(s) >= 1e-36f) {
    const __m512 t = _mm512_loadu_ps(codes), scale = _mm512_set1_ps(s);
    for (; j + 16 <= n; j += 16) {
      const __m256i c = codes32(p + j);
      const __m512 a = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(c)), t);
      const __m512 b = _mm512_permutexvar_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(c, 1)), t);
      _mm256_storeu_si256((__m256i*)(o + 2 * j), (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(a, scale)));
      _mm256_storeu_si256((__m256i*)(o + 2 * j + 16), (__m256i)_mm512_cvtneps_pbh(_mm512_mul_ps(b, scale)));
    }
    if (j == n) return;
  }
  uint16_t tab[16];
  table_bf16_avx2(codes, s, tab);
  lookup16_scalar(tab, p, j, n, o);
}
#endif

/* Blocks [first, first + n_blocks) of a weight on one path, every helper inlined into the loop. Block b's scale
 * is torchao's double-quantized one, by the same ops in the same dtype as its dequantize_scalers:
 * T(T(q[b] / factor[b / scaler_block_size]) + mean). */
#define BLOCK_LOOP(NAME, ATTR, T, TO_FLOAT, FROM_FLOAT, IS_NAN, BLOCK)                                             \
  ATTR static int NAME(const uint8_t* packed, const int8_t* q, const T* factor, float mean, int64_t scaler_block_size, \
                       const float* codes, int64_t first, int64_t n_blocks, int64_t block_size, T* out) {           \
    const int64_t n = block_size / 2;                                                                            \
    int64_t scaler = first / scaler_block_size, left = scaler_block_size - first % scaler_block_size;            \
    for (int64_t b = first; b < first + n_blocks; ++b) {                                                         \
      const T scale = FROM_FLOAT(TO_FLOAT(FROM_FLOAT((float)q[b] / TO_FLOAT(factor[scaler]))) + mean);           \
      if (--left == 0) ++scaler, left = scaler_block_size;                                                       \
      if (IS_NAN(scale)) return 1;                                                                               \
      BLOCK(codes, TO_FLOAT(scale), packed + b * n, n, out + b * block_size);                                    \
    }                                                                                                            \
    return 0;                                                                                                    \
  }

#define BF16_IS_NAN(h) (((h) & 0x7FFFu) > 0x7F80u)
#define F16_IS_NAN(h) (((h) & 0x7FFFu) > 0x7C00u)
#define F32_IS_NAN(f) ((f) != (f))
#define BF16_OPS uint16_t, bf16_to_float, float_to_bf16, BF16_IS_NAN
#define F16_OPS uint16_t, f16_to_float, float_to_f16, F16_IS_NAN
#define F32_OPS float, LOAD_F32, STORE_F32, F32_IS_NAN
#define BLOCKS(...) BLOCK_LOOP(__VA_ARGS__) /* one more expansion, so the *_OPS lists split into arguments */

BLOCKS(blocks_bf16_scalar, NO_TARGET, BF16_OPS, block_bf16_scalar)
BLOCKS(blocks_f16_scalar, NO_TARGET, F16_OPS, block_f16_scalar)
BLOCKS(blocks_f32_scalar, NO_TARGET, F32_OPS, block_f32_scalar)
#ifdef TTL_X86
BLOCKS(blocks_bf16_avx2, TARGET_AVX2, BF16_OPS, block_bf16_avx2)
BLOCKS(blocks_f16_avx2, TARGET_AVX2, F16_OPS, block_f16_avx2)
BLOCKS(blocks_f32_avx2, TARGET_AVX2, F32_OPS, block_f32_avx2)
BLOCKS(blocks_bf16_avx512, TARGET_AVX512, BF16_OPS, block_bf16_avx512)
BLOCKS(blocks_f16_avx512, TARGET_AVX512, F16_OPS, block_f16_avx512)
BLOCKS(blocks_f32_avx512, TARGET_AVX512, F32_OPS, block_f32_avx512)
BLOCKS(blocks_bf16_avx512bf16, TARGET_AVX512BF16, BF16_OPS, block_bf16_avx512bf16)
#define blocks_f16_avx512bf16 blocks_f16_avx512 /* the bf16 instructions serve bf16 only */
#define blocks_f32_avx512bf16 blocks_f32_avx512
#define ON_PATH(SUFFIX, path, ...)                                                                   \
  ((path) == PATH_AVX512BF16 ? blocks_##SUFFIX##_avx512bf16(__VA_ARGS__)                              \
   : (path) == PATH_AVX512   ? blocks_##SUFFIX##_avx512(__VA_ARGS__)                                  \
   : (path) == PATH_AVX2     ? blocks_##SUFFIX##_avx2(__VA_ARGS__)                                    \
                             : blocks_##SUFFIX##_scalar(__VA_ARGS__))
#else
#define ON_PATH(SUFFIX, path, ...) blocks_##SUFFIX##_scalar(__VA_ARGS__)
#endif

/* packed: [all blocks * block_size / 2]; q: int8 [all blocks]; factor: [all blocks / scaler_block_size] and
 * mean: [1] in the weight dtype; codes: the 16 code values as float; out: [all blocks * block_size]; the
 * blocks written are [first, first + n_blocks); path: the widest path wanted (lowered to what the CPU runs). */
#define DEQUANTIZE(SUFFIX, T, TO_FLOAT)                                                                         \
  int ttl_nf4_dequantize_##SUFFIX(const uint8_t* packed, const int8_t* q, const T* factor, const T* mean,        \
                                  int64_t scaler_block_size, const float* codes, int64_t first, int64_t n_blocks, \
                                  int64_t block_size, int path, T* out) {                                    \
    const int widest = ttl_nf4_widest_path();                                                                \
    path = path < widest ? path : widest;                                                                    \
    return ON_PATH(SUFFIX, path, packed, q, factor, TO_FLOAT(*mean), scaler_block_size, codes, first, n_blocks, \
                   block_size, out);                                                                         \
  }

DEQUANTIZE(bf16, uint16_t, bf16_to_float)
DEQUANTIZE(f16, uint16_t, f16_to_float)
DEQUANTIZE(f32, float, LOAD_F32)

/* Asks Linux to back a fresh, untouched buffer with 2 MB pages: first-touch page faults on 4 KB pages cost
 * more than dequantizing into them. A hint only; a no-op elsewhere or when transparent huge pages are off. */
void ttl_nf4_advise_huge_pages(void* start, int64_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = (uintptr_t)1 << 21, begin = (uintptr_t)start;
  const uintptr_t first = (begin + huge - 1) & ~(huge - 1), last = (begin + (uintptr_t)bytes) & ~(huge - 1);
  if (last > first) madvise((void*)first, last - first, MADV_HUGEPAGE);
#else
  (void)start;
  (void)bytes;
#endif
}
