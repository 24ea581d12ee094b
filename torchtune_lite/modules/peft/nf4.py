"""NF4 (4-bit NormalFloat, QLoRA) quantize / dequantize / linear, bit-identical to torchao but faster.

torchao's ``NF4Tensor`` stays the storage type (checkpoints, FSDP2 and state-dict hooks rely on its
fields); only the arithmetic that fills and reads it is replaced:

* dequantize: a 256-entry table maps each packed byte straight to its two NF4 code values, so one
  gather plus one multiply by the block scale replaces torchao's two gathers, stack and interleave.
* quantize: torchao picks the nearest code by an argmin over 16 distances computed in the weight's
  dtype. That choice depends only on the scaled value, so for 16-bit dtypes we tabulate it for all
  65536 bit patterns with torchao's own rule (exact by construction, NaN included), and for fp32 we
  bisect, once per interval between neighbouring codes, the smallest value whose argmin moves up.

Work is done in row chunks so no full-size fp32 temporary is ever alive.
"""

import sys
from functools import lru_cache
from typing import Optional

import torch
import torch.nn.functional as F

from torchtune_lite._torchao import NF4Tensor

# torchao's metadata record for NF4Tensor; taken from the already-imported module (see _torchao.py).
_SubclassTensorArgs = sys.modules[NF4Tensor.__module__].SubclassTensorArgs

__all__ = ["dequantize_nf4", "linear_nf4", "nf4_block_sizes", "quantize_nf4"]

# The 16 NF4 code values, as torchao defines them (it rounds them to the weight's dtype).
_NF4_VALUES = (
    -1.0000, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0000,
    0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1.0000,
)  # fmt: skip
# Elements processed per chunk: big enough to amortise dispatch, small enough to stay in cache-ish memory.
_CHUNK_NUMEL = 1 << 20
_BLOCK_SIZE_CANDIDATES = (64, 32, 16, 8, 4, 2)
# Integer type as wide as two values of each float dtype.
_PAIR_WORD = {torch.bfloat16: torch.int32, torch.float16: torch.int32, torch.float32: torch.int64}


class NF4ShapeError(ValueError):
    """Raised when a weight cannot be laid out in NF4 blocks of the requested sizes."""


def nf4_block_sizes(numel: int, block_size: int = 64, scaler_block_size: int = 256) -> Optional[tuple[int, int]]:
    """Valid ``(block_size, scaler_block_size)`` for a weight of ``numel`` elements under torchao's NF4 layout.

    torchao needs: ``numel % block_size == 0``, ``numel`` even, and the number of blocks
    ``numel // block_size`` divisible by ``scaler_block_size``. Returns the given sizes when they fit,
    else the largest fitting sizes not above them (block size preferred over scaler block size, both
    at least 2 so scales and double quantization stay meaningful), else None.
    """
    if numel <= 0 or numel % 2:
        return None
    block_sizes = [block_size] + [b for b in _BLOCK_SIZE_CANDIDATES if b < block_size]
    for bs in block_sizes:
        if bs < 2 or numel % bs:
            continue
        n_blocks = numel // bs
        scaler_sizes = [scaler_block_size] + [1 << k for k in range(10, 0, -1) if (1 << k) < scaler_block_size]
        for sbs in scaler_sizes:
            if sbs >= 2 and n_blocks % sbs == 0:
                return bs, sbs
    return None


def _nf4_codes(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    return torch.tensor(_NF4_VALUES, dtype=dtype, device=device)


@lru_cache(maxsize=None)
def _byte_to_pair_table(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[256] table: packed byte -> (value of high nibble, value of low nibble) as one integer word.

    Viewing each pair of ``dtype`` values as a single int32/int64 lets a 1-D ``index_select`` (much
    faster than a 2-D gather) fetch both values at once.
    """
    nf4 = _nf4_codes(dtype, device)
    byte = torch.arange(256, device=device)
    pairs = torch.stack([nf4[byte >> 4], nf4[byte & 0xF]], dim=1).contiguous()
    return pairs.view(_PAIR_WORD[dtype]).view(256)


def _torchao_nearest(values: torch.Tensor, nf4: torch.Tensor) -> torch.Tensor:
    # torchao's rule (NF4Tensor.quantize_tensor_nearest): argmin of |v - code| in the value dtype.
    return NF4Tensor.quantize_tensor_nearest(values, nf4)


@lru_cache(maxsize=None)
def _code_table_16bit(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[65536] uint8 table: 16-bit pattern of a scaled value -> its NF4 code, by torchao's own rule."""
    values = torch.arange(1 << 16, dtype=torch.int32).to(torch.uint16).view(dtype)
    codes = torch.cat([_torchao_nearest(c, _nf4_codes(dtype, "cpu")) for c in values.split(8192)])
    return codes.to(torch.uint8).to(device)


@lru_cache(maxsize=None)
def _code_thresholds(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[15] smallest values whose torchao code is k+1 rather than k, so code = #thresholds <= value."""
    nf4 = _nf4_codes(dtype, "cpu")
    thresholds = []
    for k in range(15):
        lo, hi = nf4[k].clone(), nf4[k + 1].clone()  # invariant: lo -> code k, hi -> code k+1
        while torch.nextafter(lo, hi) != hi:
            mid = ((lo.double() + hi.double()) / 2).to(dtype)
            if mid == lo or mid == hi:
                mid = torch.nextafter(lo, hi)
            if int(_torchao_nearest(mid.view(1), nf4)) > k:
                hi = mid
            else:
                lo = mid
        thresholds.append(hi)
    return torch.stack(thresholds).to(device)


def _codes_of(scaled: torch.Tensor) -> torch.Tensor:
    """NF4 code (uint8, same shape) of each already-scaled value, matching torchao's argmin exactly."""
    if scaled.element_size() == 2:
        table = _code_table_16bit(scaled.dtype, scaled.device)
        return table.index_select(0, scaled.reshape(-1).view(torch.uint16).to(torch.int32)).view(scaled.shape)
    codes = torch.searchsorted(_code_thresholds(scaled.dtype, scaled.device), scaled, right=True, out_int32=True)
    # torchao's argmin over all-NaN distances (0/0 in an all-zero block) returns code 0.
    return codes.masked_fill_(scaled.isnan(), 0).to(torch.uint8)


def _double_quantize(absmax: torch.Tensor, scaler_block_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same ops, in the same dtype, as torchao's ``double_quantize_scalers`` on the block absmaxes [n_blocks]."""
    mean = absmax.mean()
    centred = (absmax - mean).view(-1, scaler_block_size)
    factor = 256 / (2 * centred.abs().max(dim=1, keepdim=True).values)
    quantized = (centred * factor).round().clamp(-128, 127)
    return quantized.flatten().to(torch.int8), factor[:, 0].contiguous(), mean


def quantize_nf4(weight: torch.Tensor, block_size: int = 64, scaler_block_size: int = 256) -> NF4Tensor:
    """Quantize ``weight`` ([out, in] or 1-D) to an ``NF4Tensor`` with the same fields and bits as torchao ``to_nf4``."""
    numel = weight.numel()
    if weight.dim() > 2:
        raise NF4ShapeError(f"quantize_nf4: weight must be 1-D or 2-D, got shape {tuple(weight.shape)}; reshape it first")
    if numel == 0 or numel % 2 or numel % block_size or (numel // block_size) % scaler_block_size:
        raise NF4ShapeError(
            f"quantize_nf4: {numel} elements do not split into blocks of {block_size} grouped by "
            f"{scaler_block_size}; use nf4_block_sizes({numel}) to pick sizes that fit"
        )
    with torch.no_grad():
        flat = weight.detach().contiguous().view(-1)
        n_blocks = numel // block_size
        blocks = flat.view(n_blocks, block_size)
        absmax = blocks.abs().amax(dim=1)
        quantized_scalers, quantization_factor, scaler_mean = _double_quantize(absmax, scaler_block_size)

        packed = torch.empty(numel // 2, dtype=torch.uint8, device=weight.device)
        packed_blocks = packed.view(n_blocks, block_size // 2) if block_size % 2 == 0 else None
        rows = max(1, _CHUNK_NUMEL // block_size)
        if packed_blocks is None:  # odd block size: pairs straddle blocks, so scale the whole tensor at once
            codes = _codes_of((blocks / absmax[:, None]).view(-1, 2))
            torch.bitwise_or(codes[:, 0] << 4, codes[:, 1], out=packed)
        else:
            for start in range(0, n_blocks, rows):
                end = min(start + rows, n_blocks)
                codes = _codes_of(blocks[start:end] / absmax[start:end, None]).view(end - start, -1, 2)
                torch.bitwise_or(codes[..., 0] << 4, codes[..., 1], out=packed_blocks[start:end])

    tensor_meta = _SubclassTensorArgs(
        weight.size(), weight.stride(), weight.storage_offset(), weight.dtype, weight.device, weight.requires_grad
    )
    return NF4Tensor(
        tensor_meta,
        block_size,
        n_blocks,
        scaler_block_size,
        quantized_scalers,
        quantization_factor,
        scaler_mean,
        packed,
        nf4=_nf4_codes(weight.dtype, weight.device),
    )


def _block_scales(weight: NF4Tensor) -> torch.Tensor:
    """[n_blocks] per-block scales in the weight dtype, via the same ops as torchao's ``dequantize_scalers``."""
    q = weight.quantized_scalers.view(-1, weight.scaler_block_size)
    return (q / weight.quantization_factor.unsqueeze(-1)).flatten().to(weight.dtype) + weight.scaler_mean


def dequantize_nf4(weight: NF4Tensor) -> torch.Tensor:
    """Plain tensor of ``weight``'s original dtype/shape/device, equal to ``weight.get_original_weight()``."""
    if not isinstance(weight, NF4Tensor):
        raise TypeError(f"dequantize_nf4: expected an NF4Tensor, got {type(weight).__name__}; quantize it with quantize_nf4")
    with torch.no_grad():
        dtype, block_size = weight.dtype, weight.block_size
        table = _byte_to_pair_table(dtype, weight.device)
        packed = weight.quantized_data
        scales = _block_scales(weight)
        out = torch.empty(weight.numel(), dtype=dtype, device=weight.device)
        if block_size % 2:  # pairs straddle blocks: no chunking by rows
            values = table.index_select(0, packed.to(torch.int32)).view(dtype).view(-1, block_size)
            torch.mul(values, scales[:, None], out=out.view(-1, block_size))
            return out.view(weight.shape)
        out_blocks = out.view(-1, block_size)
        packed_blocks = packed.view(-1, block_size // 2)
        rows = max(1, _CHUNK_NUMEL // block_size)
        for start in range(0, out_blocks.shape[0], rows):
            end = min(start + rows, out_blocks.shape[0])
            chunk = packed_blocks[start:end].reshape(-1).to(torch.int32)
            values = table.index_select(0, chunk).view(dtype).view(end - start, block_size)
            torch.mul(values, scales[start:end, None], out=out_blocks[start:end])
        return out.view(weight.shape)


class _LinearNF4(torch.autograd.Function):
    """``input @ dequant(W).T``; the frozen NF4 weight is kept (4-bit) for backward, never a dequantized copy."""

    @staticmethod
    def forward(ctx, input: torch.Tensor, weight: NF4Tensor) -> torch.Tensor:
        # Kept on ctx rather than save_for_backward: it is frozen and 4-bit, and this keeps it out of
        # saved-tensor hooks (activation offloading/checkpointing) that would otherwise dequantize it.
        ctx.nf4_weight = weight
        return F.linear(input, dequantize_nf4(weight).to(input.dtype))

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        weight = dequantize_nf4(ctx.nf4_weight).to(grad_output.dtype)
        return grad_output @ weight, None


def linear_nf4(input: torch.Tensor, weight: NF4Tensor) -> torch.Tensor:
    """``input`` [..., in] @ dequantized ``weight`` [out, in].T -> [..., out]; gradient flows to ``input`` only."""
    return _LinearNF4.apply(input, weight)
