#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>
#include <type_traits>
#if defined(__linux__)
#include <sys/mman.h>
#endif
#if defined(__x86_64__)
#include <immintrin.h>  // also without -m flags: the AVX-512 path below enables its ISA per function
#endif

namespace {

// Each value is rounded to T exactly as torch rounds its elementwise results (float math, then T(float)).
template <typename T>
inline T scale_of(T x, float absmax) { return static_cast<T>(static_cast<float>(x) / absmax); }

inline float bf16_bits_to_float(uint16_t b) { uint32_t u = uint32_t(b) << 16; float f; std::memcpy(&f, &u, 4); return f; }

// c10::BFloat16(float) in a form the compiler vectorizes: round to nearest even, NaN -> 0x7fc0.
inline uint16_t float_to_bf16_bits(float f) {
  uint32_t u; std::memcpy(&u, &f, 4);
  const uint16_t rounded = static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
  return (f != f) ? uint16_t(0x7fc0) : rounded;
}

struct Code16 {  // 16-bit dtypes: code from a table over every bit pattern
  const uint8_t* table;
  template <typename T>
  inline uint8_t operator()(T v) const { uint16_t b; std::memcpy(&b, &v, 2); return table[b]; }
};

// Generic path (fp16): absmax in float, then one code per value. NaN absmax sticks so the caller can redo it.
template <typename T, typename Coder>
void quantize_generic(const T* w, T* absmax, uint8_t* packed, int64_t n_blocks, int64_t block_size, Coder coder) {
  at::parallel_for(0, n_blocks, 256, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const T* x = w + b * block_size;
      float m = 0.f;
      for (int64_t i = 0; i < block_size; ++i) {
        float a = std::fabs(static_cast<float>(x[i]));
        m = (a > m || std::isnan(a)) ? a : m;
      }
      absmax[b] = static_cast<T>(m);
      uint8_t* out = packed + b * (block_size / 2);
      for (int64_t j = 0; j < block_size / 2; ++j) {
        out[j] = static_cast<uint8_t>((coder(scale_of(x[2 * j], m)) << 4) | coder(scale_of(x[2 * j + 1], m)));
      }
    }
  });
}

// bf16: three simple loops per block that the compiler vectorizes (integer max of |bits|, divide and
// round, then table lookups). For non-NaN values the largest magnitude has the largest masked bit
// pattern, and any NaN has a larger one than inf, so a NaN absmax still shows up for the caller.
void quantize_bf16(const uint16_t* w, uint16_t* absmax, uint8_t* packed, int64_t n_blocks, int64_t block_size,
                   const uint8_t* table) {
  at::parallel_for(0, n_blocks, 256, [&](int64_t begin, int64_t end) {
    std::vector<uint16_t> scaled(block_size);
    uint16_t* s = scaled.data();
    for (int64_t b = begin; b < end; ++b) {
      const uint16_t* x = w + b * block_size;
      uint16_t m = 0;
      for (int64_t i = 0; i < block_size; ++i) m = std::max<uint16_t>(m, x[i] & 0x7fff);
      absmax[b] = m;
      const float mf = bf16_bits_to_float(m);
      for (int64_t i = 0; i < block_size; ++i) s[i] = float_to_bf16_bits(bf16_bits_to_float(x[i]) / mf);
      uint8_t* out = packed + b * (block_size / 2);
      for (int64_t j = 0; j < block_size / 2; ++j) {
        out[j] = static_cast<uint8_t>((table[s[2 * j]] << 4) | table[s[2 * j + 1]]);
      }
    }
  });
}

// fp32: the code is the number of switch points at or below the scaled value (NaN passes none: code 0).
void quantize_fp32(const float* w, float* absmax, uint8_t* packed, int64_t n_blocks, int64_t block_size,
                   const float* thresholds) {
  at::parallel_for(0, n_blocks, 256, [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> codes(block_size);
    uint8_t* c = codes.data();
    float t[15];
    std::memcpy(t, thresholds, sizeof(t));
    for (int64_t b = begin; b < end; ++b) {
      const float* x = w + b * block_size;
      uint32_t m = 0;
      for (int64_t i = 0; i < block_size; ++i) {
        uint32_t u; std::memcpy(&u, &x[i], 4);
        m = std::max<uint32_t>(m, u & 0x7fffffffu);
      }
      float mf; std::memcpy(&mf, &m, 4);
      absmax[b] = mf;
      for (int64_t i = 0; i < block_size; ++i) {
        const float v = x[i] / mf;
        uint8_t k = 0;
        for (int j = 0; j < 15; ++j) k += static_cast<uint8_t>(v >= t[j]);
        c[i] = k;
      }
      uint8_t* out = packed + b * (block_size / 2);
      for (int64_t j = 0; j < block_size / 2; ++j) out[j] = static_cast<uint8_t>((c[2 * j] << 4) | c[2 * j + 1]);
    }
  });
}

#if defined(__AVX2__)
// Code values of 8 NF4 codes (int32 lanes, < 16), times the block scale: two 8-entry permutes, and
// bit 3 of the code (moved to the sign bit) picks between them.
inline __m256 scaled_codes(__m256i idx, __m256 lo8, __m256 hi8, __m256 scale) {
  const __m256 a = _mm256_permutevar8x32_ps(lo8, idx), b = _mm256_permutevar8x32_ps(hi8, idx);
  return _mm256_mul_ps(_mm256_blendv_ps(a, b, _mm256_castsi256_ps(_mm256_slli_epi32(idx, 28))), scale);
}

// float_to_bf16_bits on 8 lanes, results in the low half of each int32 lane.
inline __m256i bf16_bits8(__m256 f) {
  const __m256i u = _mm256_castps_si256(f);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb), 16);
  return _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7fc0), _mm256_castps_si256(_mm256_cmp_ps(f, f, _CMP_UNORD_Q)));
}

inline void store8x4(float* o, const __m256 (&v)[4]) {
  for (int g = 0; g < 4; ++g) _mm256_storeu_ps(o + 8 * g, v[g]);
}

inline void store8x4(at::BFloat16* o, const __m256 (&v)[4]) {
  for (int g = 0; g < 4; g += 2) {  // pack 2 x 8 int32 -> 16 uint16 (packus interleaves 128-bit lanes: undo it)
    const __m256i packed = _mm256_packus_epi32(bf16_bits8(v[g]), bf16_bits8(v[g + 1]));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(o + 8 * g), _mm256_permute4x64_epi64(packed, 0xD8));
  }
}

// Expands 16 packed bytes at a time into 32 values; returns how many bytes it did.
template <typename T>
inline int64_t expand_avx2(const uint8_t* p, int64_t n, __m256 lo8, __m256 hi8, float s, T* o) {
  const __m256 scale = _mm256_set1_ps(s);
  const __m128i low4 = _mm_set1_epi8(0x0f);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j));
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), low4), lo = _mm_and_si128(q, low4);
    const __m128i codes[2] = {_mm_unpacklo_epi8(hi, lo), _mm_unpackhi_epi8(hi, lo)};  // 32 codes, in order
    __m256 v[4];
    for (int h = 0; h < 2; ++h) {
      v[2 * h] = scaled_codes(_mm256_cvtepu8_epi32(codes[h]), lo8, hi8, scale);
      v[2 * h + 1] = scaled_codes(_mm256_cvtepu8_epi32(_mm_srli_si128(codes[h], 8)), lo8, hi8, scale);
    }
    store8x4(o + 2 * j, v);
  }
  return j;
}
#endif

#if defined(__x86_64__) && defined(__GNUC__)
#define AVX512BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))
// A 16-entry permute looks up 16 codes at once; VCVTNEPS2BF16 rounds to nearest even like c10::BFloat16.
AVX512BF16_TARGET inline __m512 scaled_codes16(__m128i codes, __m512 table, __m512 scale) {
  return _mm512_mul_ps(_mm512_permutexvar_ps(_mm512_cvtepu8_epi32(codes), table), scale);
}
AVX512BF16_TARGET inline void store16(float* o, __m512 v) { _mm512_storeu_ps(o, v); }
AVX512BF16_TARGET inline void store16(at::BFloat16* o, __m512 v) {
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(o), reinterpret_cast<__m256i>(_mm512_cvtneps_pbh(v)));
}

// Blocks [begin, end) of dequantize_impl with 512-bit instructions (fp32 needs AVX-512F, bf16 AVX512-BF16).
template <typename T>
AVX512BF16_TARGET void dequantize_avx512(const uint8_t* packed, const T* scales, const float* codes, T* out,
                                         int64_t begin, int64_t end, int64_t block_size) {
  const __m512 table = _mm512_loadu_ps(codes);
  const __m128i low4 = _mm_set1_epi8(0x0f);
  const int64_t n = block_size / 2;
  for (int64_t b = begin; b < end; ++b) {
    const float s = static_cast<float>(scales[b]);
    const uint8_t* p = packed + b * n;
    T* o = out + b * block_size;
    int64_t j = 0;
    // The bf16 instruction flushes subnormal results to zero and gives another NaN than torch for 0 * inf:
    // blocks whose scale can produce either take the scalar loop (only near-zero or non-finite weights).
    const bool exact = std::is_same_v<T, float> || (std::isfinite(s) && std::fabs(s) >= 1e-36f);
    if (exact) {
      const __m512 scale = _mm512_set1_ps(s);
      for (; j + 16 <= n; j += 16) {
        const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + j));
        const __m128i hi = _mm_and_si128(_mm_srli_epi16(q, 4), low4), lo = _mm_and_si128(q, low4);
        store16(o + 2 * j, scaled_codes16(_mm_unpacklo_epi8(hi, lo), table, scale));
        store16(o + 2 * j + 16, scaled_codes16(_mm_unpackhi_epi8(hi, lo), table, scale));
      }
    }
    for (; j < n; ++j) {
      o[2 * j] = static_cast<T>(codes[p[j] >> 4] * s);
      o[2 * j + 1] = static_cast<T>(codes[p[j] & 15] * s);
    }
  }
}

template <typename T>
bool cpu_has_avx512_path() {
  if constexpr (std::is_same_v<T, float>) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
  if constexpr (std::is_same_v<T, at::BFloat16>) return __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw");
  return false;
}
#else
template <typename T>
bool cpu_has_avx512_path() { return false; }
#endif

// Each value is torchao's T(float(code value) * float(block scale)). The widest path this CPU runs is
// chosen at run time (AVX512-BF16 / AVX-512F, else the AVX2 build, else scalar code), so one build serves
// machines of either kind.
template <typename T>
void dequantize_impl(const uint8_t* packed, const T* scales, const T* nf4, T* out, int64_t n_blocks, int64_t block_size) {
  static const bool use_avx512 = cpu_has_avx512_path<T>();
  at::parallel_for(0, n_blocks, 256, [&](int64_t begin, int64_t end) {
    float codes[16];
    for (int k = 0; k < 16; ++k) codes[k] = static_cast<float>(nf4[k]);
#if defined(__x86_64__) && defined(__GNUC__)
    if constexpr (!std::is_same_v<T, at::Half>) {
      if (use_avx512) return dequantize_avx512(packed, scales, codes, out, begin, end, block_size);
    }
#endif
    const int64_t n = block_size / 2;
#if defined(__AVX2__)
    const __m256 lo8 = _mm256_loadu_ps(codes), hi8 = _mm256_loadu_ps(codes + 8);
#endif
    for (int64_t b = begin; b < end; ++b) {
      const float s = static_cast<float>(scales[b]);
      const uint8_t* p = packed + b * n;
      T* o = out + b * block_size;
      int64_t j = 0;
#if defined(__AVX2__)
      if constexpr (!std::is_same_v<T, at::Half>) j = expand_avx2(p, n, lo8, hi8, s, o);
#endif
      for (; j < n; ++j) {
        o[2 * j] = static_cast<T>(codes[p[j] >> 4] * s);
        o[2 * j + 1] = static_cast<T>(codes[p[j] & 15] * s);
      }
    }
  });
}

}  // namespace

// Which dequantize path this CPU takes for a dtype ("avx512bf16", "avx512f", "avx2" or "scalar").
std::string dequantize_path(torch::Tensor like) {
  const bool wide = like.scalar_type() == at::kFloat ? cpu_has_avx512_path<float>()
                    : like.scalar_type() == at::kBFloat16 ? cpu_has_avx512_path<at::BFloat16>() : false;
  if (wide) return like.scalar_type() == at::kFloat ? "avx512f" : "avx512bf16";
#if defined(__AVX2__)
  if (like.scalar_type() != at::kHalf) return "avx2";
#endif
  return "scalar";
}

// weight: [n_blocks * block_size] contiguous; absmax: [n_blocks] (weight dtype); packed: [numel / 2] uint8.
void quantize_blocks(torch::Tensor weight, torch::Tensor absmax, torch::Tensor packed, torch::Tensor code_table,
                     torch::Tensor thresholds, int64_t block_size) {
  const int64_t n_blocks = weight.numel() / block_size;
  auto* out = packed.data_ptr<uint8_t>();
  switch (weight.scalar_type()) {
    case at::kFloat:
      quantize_fp32(weight.data_ptr<float>(), absmax.data_ptr<float>(), out, n_blocks, block_size,
                    thresholds.data_ptr<float>());
      break;
    case at::kBFloat16:
      quantize_bf16(reinterpret_cast<const uint16_t*>(weight.data_ptr<at::BFloat16>()),
                    reinterpret_cast<uint16_t*>(absmax.data_ptr<at::BFloat16>()), out, n_blocks, block_size,
                    code_table.data_ptr<uint8_t>());
      break;
    case at::kHalf:
      quantize_generic(weight.data_ptr<at::Half>(), absmax.data_ptr<at::Half>(), out, n_blocks, block_size,
                       Code16{code_table.data_ptr<uint8_t>()});
      break;
    default:
      TORCH_CHECK(false, "nf4 quantize_blocks: unsupported dtype ", weight.scalar_type());
  }
}

// Asks Linux to back a fresh, untouched tensor with 2 MB pages: first-touch page faults on 4 KB pages
// cost more than dequantizing into them. A hint only; a no-op elsewhere or when THP is off.
void advise_huge_pages(torch::Tensor t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const uintptr_t huge = uintptr_t(1) << 21;
  const uintptr_t start = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t first = (start + huge - 1) & ~(huge - 1);
  const uintptr_t last = (start + t.numel() * t.element_size()) & ~(huge - 1);
  if (last > first) madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
#endif
}

// packed: [numel / 2] uint8; scales, nf4 (16 codes) and out ([numel]) in the weight dtype.
void dequantize_blocks(torch::Tensor packed, torch::Tensor scales, torch::Tensor nf4, torch::Tensor out, int64_t block_size) {
  const int64_t n_blocks = out.numel() / block_size;
  const auto* p = packed.data_ptr<uint8_t>();
  switch (out.scalar_type()) {
    case at::kFloat:
      dequantize_impl(p, scales.data_ptr<float>(), nf4.data_ptr<float>(), out.data_ptr<float>(), n_blocks, block_size);
      break;
    case at::kBFloat16:
      dequantize_impl(p, scales.data_ptr<at::BFloat16>(), nf4.data_ptr<at::BFloat16>(), out.data_ptr<at::BFloat16>(),
                      n_blocks, block_size);
      break;
    case at::kHalf:
      dequantize_impl(p, scales.data_ptr<at::Half>(), nf4.data_ptr<at::Half>(), out.data_ptr<at::Half>(), n_blocks,
                      block_size);
      break;
    default:
      TORCH_CHECK(false, "nf4 dequantize_blocks: unsupported dtype ", out.scalar_type());
  }
}
