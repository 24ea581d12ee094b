"""Optional fused C++ CPU kernels for NF4, built lazily on first use with ``torch.utils.cpp_extension``.

Why: the pure-torch kernels make several passes per chunk (abs, max, divide, convert, gather, pack),
and each pass is a separate multi-threaded op; on a small, busy CPU every op waits for its slowest
thread. One fused pass over the blocks does the same arithmetic, in the same dtype, with one parallel
region. The build (~30 s) happens once and is cached by torch; if no compiler is present, the build
fails, or ``TORCHTUNE_LITE_NF4_CPP=0`` is set, callers get None and use the pure-torch path.
"""

import hashlib
import logging
import os
import threading
from types import ModuleType
from typing import Optional

_log = logging.getLogger(__name__)

_SOURCE = r"""
#include <torch/extension.h>
#include <ATen/Parallel.h>
#include <cmath>
#include <cstring>

namespace {

// Each value is rounded to T exactly as torch rounds its elementwise results (float math, then T(float)).
template <typename T>
inline T scale_of(T x, float absmax) { return static_cast<T>(static_cast<float>(x) / absmax); }

struct Code16 {  // 16-bit dtypes: code from a table over every bit pattern
  const uint8_t* table;
  template <typename T>
  inline uint8_t operator()(T v) const { uint16_t b; std::memcpy(&b, &v, 2); return table[b]; }
};

struct Code32 {  // fp32: number of switch points passed (NaN passes none: code 0)
  const float* thresholds;
  inline uint8_t operator()(float v) const {
    uint8_t c = 0;
    for (int k = 0; k < 15; ++k) c += static_cast<uint8_t>(v >= thresholds[k]);
    return c;
  }
};

template <typename T, typename Coder>
void quantize_impl(const T* w, T* absmax, uint8_t* packed, int64_t n_blocks, int64_t block_size, Coder coder) {
  at::parallel_for(0, n_blocks, 256, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin; b < end; ++b) {
      const T* x = w + b * block_size;
      float m = 0.f;
      for (int64_t i = 0; i < block_size; ++i) {
        float a = std::fabs(static_cast<float>(x[i]));
        m = (a > m || std::isnan(a)) ? a : m;  // NaN sticks, so the caller can spot and redo such blocks
      }
      absmax[b] = static_cast<T>(m);
      uint8_t* out = packed + b * (block_size / 2);
      for (int64_t j = 0; j < block_size / 2; ++j) {
        uint8_t hi = coder(scale_of(x[2 * j], m));
        uint8_t lo = coder(scale_of(x[2 * j + 1], m));
        out[j] = static_cast<uint8_t>((hi << 4) | lo);
      }
    }
  });
}

template <typename T>
void dequantize_impl(const uint8_t* packed, const T* scales, const T* nf4, T* out, int64_t n_blocks, int64_t block_size) {
  at::parallel_for(0, n_blocks, 256, [&](int64_t begin, int64_t end) {
    T values[16];
    for (int64_t b = begin; b < end; ++b) {
      const float s = static_cast<float>(scales[b]);
      for (int k = 0; k < 16; ++k) values[k] = static_cast<T>(static_cast<float>(nf4[k]) * s);
      const uint8_t* p = packed + b * (block_size / 2);
      T* o = out + b * block_size;
      for (int64_t j = 0; j < block_size / 2; ++j) {
        const uint8_t q = p[j];
        o[2 * j] = values[q >> 4];
        o[2 * j + 1] = values[q & 15];
      }
    }
  });
}

}  // namespace

// weight: [n_blocks * block_size] contiguous; absmax: [n_blocks] (weight dtype); packed: [numel / 2] uint8.
void quantize_blocks(torch::Tensor weight, torch::Tensor absmax, torch::Tensor packed, torch::Tensor code_table,
                     torch::Tensor thresholds, int64_t block_size) {
  const int64_t n_blocks = weight.numel() / block_size;
  auto* out = packed.data_ptr<uint8_t>();
  switch (weight.scalar_type()) {
    case at::kFloat:
      quantize_impl(weight.data_ptr<float>(), absmax.data_ptr<float>(), out, n_blocks, block_size,
                    Code32{thresholds.data_ptr<float>()});
      break;
    case at::kBFloat16:
      quantize_impl(weight.data_ptr<at::BFloat16>(), absmax.data_ptr<at::BFloat16>(), out, n_blocks, block_size,
                    Code16{code_table.data_ptr<uint8_t>()});
      break;
    case at::kHalf:
      quantize_impl(weight.data_ptr<at::Half>(), absmax.data_ptr<at::Half>(), out, n_blocks, block_size,
                    Code16{code_table.data_ptr<uint8_t>()});
      break;
    default:
      TORCH_CHECK(false, "nf4 quantize_blocks: unsupported dtype ", weight.scalar_type());
  }
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
"""

_lock = threading.Lock()
_state: dict[str, Optional[ModuleType]] = {}


def extension() -> Optional[ModuleType]:
    """The compiled module (``quantize_blocks``, ``dequantize_blocks``), or None when it is disabled or cannot build."""
    if os.environ.get("TORCHTUNE_LITE_NF4_CPP", "1") == "0":
        return None
    with _lock:
        if "module" not in _state:
            _state["module"] = _build()
        return _state["module"]


def _build() -> Optional[ModuleType]:
    try:
        from torch.utils.cpp_extension import load_inline

        # The name carries a hash of the source, so an edited kernel never reuses a stale cached build.
        digest = hashlib.sha256(_SOURCE.encode()).hexdigest()[:12]
        return load_inline(
            name=f"torchtune_lite_nf4_{digest}",
            cpp_sources=_SOURCE,
            functions=["quantize_blocks", "dequantize_blocks"],
            extra_cflags=["-O3"],
            verbose=False,
        )
    except Exception as err:  # no compiler, no headers, build error: the pure-torch path is always there
        _log.warning("NF4 C++ kernels unavailable (%s); using the pure-torch NF4 kernels", str(err).splitlines()[0])
        return None
