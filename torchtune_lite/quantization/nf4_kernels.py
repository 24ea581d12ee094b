"""NF4 (4-bit NormalFloat, QLoRA) quantize / dequantize / linear, reproducing torchao's ``NF4Tensor`` bit for bit.

torchao's ``NF4Tensor`` stays the storage type (checkpoints, FSDP2 and state-dict hooks read its
fields); only the arithmetic that fills and reads those fields is replaced by lookup tables, and it
runs over row chunks so no full-size high-precision temporary is ever alive:

* quantize: torchao picks each code by an argmin over 16 distances in the weight's dtype. That
  choice is a pure function of the scaled value, so for 16-bit dtypes we tabulate torchao's own rule
  over all 65536 bit patterns (exact by construction, NaNs included); for fp32 the choice is monotone
  in the value, so we find the 15 switch points with torchao's rule and count thresholds passed.
* dequantize: a 256-entry table maps a packed byte to its two code values, stored as one 32/64-bit
  word, so a single ``index_select`` writes both, then one in-place multiply by the block scale.

On CPU the same arithmetic runs as one fused C pass (``kernels/nf4.c``, built in a few seconds on first
use) for weights of every size; the torch-ops path is the fallback (no C compiler, other devices, under
torch.compile, NaN weights) and the path on every other device.

Odd block sizes and other dtypes go through torchao itself; a meta weight gets only the layout.
"""

import functools
import sys
import threading
from functools import lru_cache
from typing import Optional, Sequence

import torch
import torch.nn.functional as F

from torchtune_lite._torchao import NF4Tensor, to_nf4
from torchtune_lite.kernels import nf4 as nf4_c
from torchtune_lite.quantization.nf4_layout import nf4_from_fields

__all__ = ["NF4ShapeError", "dequantize_nf4", "keeps_dense_weight", "linear_nf4", "nf4_block_sizes", "quantize_nf4"]

# Elements handled per chunk: few enough that temporaries stay a small fraction of a 7B layer's weight,
# many enough that op dispatch and thread start-up (costly on a busy CPU) are amortised.
_CHUNK_NUMEL = 1 << 22
# An integer type as wide as two values of each supported float dtype (a "pair word").
_PAIR_WORD = {torch.bfloat16: torch.int32, torch.float16: torch.int32, torch.float32: torch.int64}


class NF4ShapeError(ValueError):
    """A weight cannot be laid out in NF4 blocks of the requested sizes."""


def nf4_block_sizes(numel: int, block_size: int = 64, scaler_block_size: int = 256) -> Optional[tuple[int, int]]:
    """``(block_size, scaler_block_size)`` that torchao's NF4 layout accepts for ``numel`` elements.

    torchao needs an even ``numel`` split into blocks (``numel % block_size == 0``), the block count
    split into scaler blocks (``n_blocks % scaler_block_size == 0``), and an even block size for
    dequantization (bytes hold two values of one block). Returns the given sizes when they fit, else the
    largest fitting ones below them (block size first, both at least 2), else None.
    """
    if numel <= 0 or numel % 2:
        return None
    for bs in range(block_size - block_size % 2, 1, -2):
        if numel % bs:
            continue
        n_blocks = numel // bs
        for sbs in range(scaler_block_size, 1, -1):
            if n_blocks % sbs == 0:
                return bs, sbs
    return None


def _nf4_codes(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    # torchao's 16 code values, built in the weight's dtype as torchao does (it is stored as NF4Tensor.nf4).
    values = (-1.0, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0,
              0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1.0)  # fmt: skip
    return torch.tensor(values, dtype=dtype, device=device)


def _torchao_codes(scaled: torch.Tensor) -> torch.Tensor:
    """torchao's own nearest-code rule (argmin of |v - code| in v's dtype, first index on ties)."""
    return NF4Tensor.quantize_tensor_nearest(scaled, _nf4_codes(scaled.dtype, scaled.device))


@lru_cache(maxsize=None)
def _code_table_16bit(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[65536] uint8: bit pattern of a scaled 16-bit value -> the code torchao assigns it."""
    every_value = torch.arange(1 << 16, dtype=torch.int32).to(torch.uint16).view(dtype)
    codes = torch.cat([_torchao_codes(part) for part in every_value.split(4096)])
    return codes.to(torch.uint8).to(device)


@lru_cache(maxsize=None)
def _code_thresholds_fp32(device: torch.device) -> tuple[float, ...]:
    """15 smallest fp32 values whose torchao code is k+1 rather than k (code = thresholds passed)."""
    codes = _nf4_codes(torch.float32, torch.device("cpu"))
    thresholds = []
    for k in range(15):
        lo, hi = codes[k].clone(), codes[k + 1].clone()  # invariant: code(lo) == k, code(hi) == k + 1
        while torch.nextafter(lo, hi) != hi:
            mid = ((lo.double() + hi.double()) / 2).float()
            if mid == lo or mid == hi:
                mid = torch.nextafter(lo, hi)
            if int(_torchao_codes(mid.view(1))) > k:
                hi = mid
            else:
                lo = mid
        thresholds.append(float(hi))
    return tuple(thresholds)


def _codes_into(scaled: torch.Tensor, out: torch.Tensor) -> None:
    """Write the torchao code (uint8) of each scaled value ``scaled: [n]`` into ``out: [n]``."""
    if scaled.element_size() == 2:
        table = _code_table_16bit(scaled.dtype, scaled.device)
        torch.index_select(table, 0, scaled.view(torch.uint16).to(torch.int32), out=out)
        return
    # fp32: count the switch points at or below each value; NaN passes none, which is torchao's code 0.
    out.zero_()
    for threshold in _code_thresholds_fp32(scaled.device):
        out.add_(scaled >= threshold)


def _pack_pairs_into(codes: torch.Tensor, out: torch.Tensor) -> None:
    """``out[i] = codes[2i] << 4 | codes[2i + 1]`` for ``codes: [2n]`` uint8 (< 16), ``out: [n]`` uint8."""
    if sys.byteorder == "little":
        # One int16 word w = codes[2i] + 256 * codes[2i + 1]; its low byte after (w << 4 | w >> 8) is the
        # packed pair, and the uint8 cast keeps exactly that byte. Three cheap ops instead of strided ones.
        word = codes.view(torch.int16)
        out.copy_((word << 4).bitwise_or_(word >> 8))
    else:
        pairs = codes.view(-1, 2)
        torch.bitwise_or(pairs[:, 0] << 4, pairs[:, 1], out=out)


def _double_quantize(absmax: torch.Tensor, scaler_block_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """torchao's double quantization of the block absmaxes ``absmax: [n_blocks]``, same ops and dtype.

    Returns ``quantized_scalers: [n_blocks] int8``, ``quantization_factor: [n_scaler_blocks]``, ``scaler_mean: []``.
    """
    mean = absmax.mean()
    centred = (absmax - mean).view(-1, scaler_block_size)
    factor = 256 / (2 * centred.abs().amax(dim=1, keepdim=True))
    quantized = (centred * factor).round().clamp(-128, 127)
    return quantized.flatten().to(torch.int8), factor.view(-1).contiguous(), mean


def _nf4_tensor(weight: torch.Tensor, block_size: int, scaler_block_size: int, fields: tuple) -> NF4Tensor:
    quantized_scalers, quantization_factor, scaler_mean, quantized_data = fields
    layout = {"shape": weight.shape, "dtype": weight.dtype, "block_size": block_size,
              "scaler_block_size": scaler_block_size, "n_blocks": weight.numel() // block_size}  # fmt: skip
    inner = {"quantized_data": quantized_data, "quantized_scalers": quantized_scalers, "quantization_factor": quantization_factor,
             "scaler_mean": scaler_mean, "nf4": _nf4_codes(weight.dtype, weight.device)}  # fmt: skip
    return nf4_from_fields(layout, inner, like=weight, requires_grad=weight.requires_grad)


def _meta_fields(weight: torch.Tensor, block_size: int, scaler_block_size: int) -> tuple:
    """Meta tensors shaped like the fields `quantize_nf4` returns (see `_double_quantize` and the packing)."""
    n_blocks = weight.numel() // block_size
    empty = functools.partial(torch.empty, device="meta")
    return (
        empty(n_blocks, dtype=torch.int8),
        empty(n_blocks // scaler_block_size, dtype=weight.dtype),
        empty((), dtype=weight.dtype),
        empty(weight.numel() // 2, dtype=torch.uint8),
    )


def _check_layout(weight: torch.Tensor, block_size: int, scaler_block_size: int) -> None:
    numel = weight.numel()
    if weight.dim() > 2:
        raise NF4ShapeError(f"quantize_nf4: weight must be 1-D or 2-D, got shape {tuple(weight.shape)}; reshape it first")
    if (
        block_size < 1
        or scaler_block_size < 1
        or numel == 0
        or numel % 2
        or numel % block_size
        or (numel // block_size) % scaler_block_size
    ):
        raise NF4ShapeError(
            f"quantize_nf4: {numel} elements do not split into blocks of {block_size} grouped by "
            f"{scaler_block_size}; pick sizes with nf4_block_sizes({numel})"
        )


def quantize_nf4(weight: torch.Tensor, block_size: int = 64, scaler_block_size: int = 256) -> NF4Tensor:
    """NF4 copy of ``weight: [out, in]`` (or 1-D) with the same fields and bits as torchao ``to_nf4``."""
    _check_layout(weight, block_size, scaler_block_size)
    if block_size % 2 or weight.dtype not in _PAIR_WORD:
        return to_nf4(weight, block_size, scaler_block_size)
    if weight.is_meta:  # only the layout: torchao's meta path costs ~35 ms per 7B weight in Python overhead
        return _nf4_tensor(weight, block_size, scaler_block_size, _meta_fields(weight, block_size, scaler_block_size))
    with torch.no_grad():
        blocks = weight.detach().reshape(-1, block_size)  # copies only if weight is not contiguous
        fields = _quantize_fused(blocks, scaler_block_size) or _quantize_chunked(blocks, scaler_block_size)
    return _nf4_tensor(weight, block_size, scaler_block_size, fields)


def _quantize_fused(blocks: torch.Tensor, scaler_block_size: int) -> Optional[tuple]:
    """Fields from the C kernel for ``blocks: [n_blocks, block_size]``; None when it cannot be used."""
    if not nf4_c.runs_on(blocks):
        return None
    if blocks.dtype == torch.float32:
        codes_of = _code_thresholds_tensor()
    else:
        codes_of = _code_table_16bit(blocks.dtype, blocks.device)
    result = nf4_c.quantize_blocks(blocks.contiguous(), codes_of)
    if result is None:  # NaN weights: let the torch ops reproduce torchao's exact NaN bits
        return None
    absmax, packed = result
    return (*_double_quantize(absmax, scaler_block_size), packed)


@lru_cache(maxsize=None)
def _code_thresholds_tensor() -> torch.Tensor:
    return torch.tensor(_code_thresholds_fp32(torch.device("cpu")), dtype=torch.float32)


@lru_cache(maxsize=None)
def _code_values_fp32(dtype: torch.dtype) -> torch.Tensor:
    """[16] fp32: torchao's code values as built in ``dtype``, widened (what the C dequantize multiplies)."""
    return _nf4_codes(dtype, torch.device("cpu")).float()


def _quantize_chunked(blocks: torch.Tensor, scaler_block_size: int) -> tuple:
    """Fields for ``blocks: [n_blocks, block_size]`` by torch ops over row chunks (any device)."""
    n_blocks, block_size = blocks.shape
    rows = max(1, _CHUNK_NUMEL // block_size)
    absmax = torch.empty(n_blocks, dtype=blocks.dtype, device=blocks.device)
    packed = torch.empty(n_blocks, block_size // 2, dtype=torch.uint8, device=blocks.device)
    codes = torch.empty(min(rows, n_blocks) * block_size, dtype=torch.uint8, device=blocks.device)
    for start in range(0, n_blocks, rows):
        chunk = blocks[start : start + rows]
        n = chunk.numel()
        torch.amax(chunk.abs(), dim=1, out=absmax[start : start + rows])
        scaled = chunk / absmax[start : start + rows, None]
        _codes_into(scaled.view(-1), codes[:n])
        _pack_pairs_into(codes[:n], packed[start : start + rows].view(-1))
    return (*_double_quantize(absmax, scaler_block_size), packed.view(-1))


@lru_cache(maxsize=None)
def _byte_to_pair_table(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """[256] pair words: packed byte -> (value of its high nibble, value of its low nibble) in ``dtype``."""
    codes = _nf4_codes(dtype, device)
    byte = torch.arange(256, device=device)
    pairs = torch.stack([codes[byte >> 4], codes[byte & 0xF]], dim=1).contiguous()
    return pairs.view(_PAIR_WORD[dtype]).view(256)


def _block_scales(scalers: "_Scalers", dtype: torch.dtype) -> torch.Tensor:
    """[n_blocks] block scales in ``dtype``, by the same ops as torchao's ``dequantize_scalers``."""
    quantized_scalers, quantization_factor, scaler_mean, scaler_block_size = scalers
    q = quantized_scalers.view(-1, scaler_block_size)
    return (q / quantization_factor.unsqueeze(-1)).flatten().to(dtype) + scaler_mean


def _layout_of(weight: NF4Tensor) -> tuple[torch.Size, torch.dtype, torch.device]:
    """``weight``'s shape, dtype and device, read past torchao's ``__torch_function__``.

    Through it each attribute costs ~4 us, more than the C kernel takes to dequantize a small weight. The guard
    is private; torchao's own ``__torch_function__`` uses it for the same purpose, and no public API skips a
    subclass's handler."""
    with torch._C.DisableTorchFunctionSubclass():
        return weight.shape, weight.dtype, weight.device


def _has_our_layout(weight: NF4Tensor, dtype: torch.dtype, device: torch.device) -> bool:
    """Whether our kernels handle ``weight`` (else torchao's own code does: odd blocks, other dtypes, meta)."""
    return device.type != "meta" and weight.block_size % 2 == 0 and dtype in _PAIR_WORD


def dequantize_nf4(weight: NF4Tensor) -> torch.Tensor:
    """Plain tensor equal to ``weight.get_original_weight()``: original dtype and device, shape ``weight.shape``."""
    if not isinstance(weight, NF4Tensor):
        raise TypeError(f"dequantize_nf4: expected an NF4Tensor, got {type(weight).__name__}; make one with quantize_nf4")
    shape, dtype, device = _layout_of(weight)
    if not _has_our_layout(weight, dtype, device):
        return weight.get_original_weight()
    if torch.compiler.is_compiling() and device.type == "cpu":  # one opaque op that runs the C kernel
        return _dequantize_op(weight.quantized_data, *_scalers_of(weight), list(shape), dtype)
    return _dequantize_fresh(weight.quantized_data, _scalers_of(weight), shape, dtype)


# (quantized_scalers, quantization_factor, scaler_mean, scaler_block_size): what turns into the block scales.
_Scalers = tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]


def _scalers_of(weight: NF4Tensor) -> _Scalers:
    return weight.quantized_scalers, weight.quantization_factor, weight.scaler_mean, weight.scaler_block_size


@torch.library.custom_op("torchtune_lite::dequantize_nf4", mutates_args=())
def _dequantize_op(
    quantized_data: torch.Tensor,
    quantized_scalers: torch.Tensor,
    quantization_factor: torch.Tensor,
    scaler_mean: torch.Tensor,
    scaler_block_size: int,
    shape: list[int],
    dtype: torch.dtype,
) -> torch.Tensor:
    """`dequantize_nf4` from the fields, as one op torch.compile does not trace into: while it traces, the
    C kernels are off (`c_library.enabled`), and inductor's code for the table lookup ran ~40x slower than
    the C pass on a 7B MLP weight (1.7 s against 40 ms). When the graph runs, the op takes the C kernel (or the torch ops)."""
    scalers = (quantized_scalers, quantization_factor, scaler_mean, scaler_block_size)
    return _dequantize_fresh(quantized_data, scalers, shape, dtype)


@_dequantize_op.register_fake
def _(quantized_data, quantized_scalers, quantization_factor, scaler_mean, scaler_block_size, shape, dtype):
    return quantized_data.new_empty(shape, dtype=dtype)


def _dequantize_fresh(quantized_data: torch.Tensor, scalers: _Scalers, shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    out = torch.empty(shape, dtype=dtype, device=quantized_data.device)
    nf4_c.advise_huge_pages(out)
    return _dequantize_into(quantized_data, scalers, out)


def _dequantize_into(quantized_data: torch.Tensor, scalers: _Scalers, out: torch.Tensor) -> torch.Tensor:
    """Dequantize an NF4 weight's fields into ``out`` (contiguous, the weight's shape, dtype and device: blocks
    are ``quantized_data``'s bytes over ``scalers``' block count) and return ``out``."""
    block_size = out.numel() // scalers[0].numel()  # one quantized scaler per block
    out_blocks = out.view(-1, block_size)
    # NaN scales (from NaN/inf weights) make the C kernel decline: torch's ops reproduce torchao's NaN bits.
    if nf4_c.runs_on(out) and nf4_c.dequantize_blocks(
        quantized_data, *scalers, _code_values_fp32(out.dtype), out_blocks,
    ):  # fmt: skip
        return out
    with torch.no_grad():
        scales = _block_scales(scalers, out.dtype)
        packed = quantized_data.view(-1, block_size // 2)
        table = _byte_to_pair_table(out.dtype, out.device)
        rows = max(1, _CHUNK_NUMEL // block_size)
        for start in range(0, packed.shape[0], rows):
            out_rows = out_blocks[start : start + rows]
            index = packed[start : start + rows].reshape(-1).to(torch.int32)
            torch.index_select(table, 0, index, out=out_rows.view(-1).view(_PAIR_WORD[out.dtype]))
            out_rows.mul_(scales[start : start + rows, None])
    return out


_scratch = threading.local()


def _dequantize_scratch(weight: NF4Tensor) -> torch.Tensor:
    """``dequantize_nf4(weight)`` written into a per-thread buffer that is reused by the next call.

    Why: on CPU, a fresh weight-sized tensor costs more in page faults (first touch of newly mapped
    memory) than the dequantization itself, and linear_nf4 needs one per call. The buffer holds the
    largest weight seen (e.g. 90 MB for a Llama-2-7B MLP weight in bf16) for the thread's lifetime.
    Callers must be done with the result before dequantizing again on the same thread.
    """
    shape, dtype, device = _layout_of(weight)
    # Under torch.compile a traced graph may keep the result: it must not be overwritten later.
    if torch.compiler.is_compiling() or device.type != "cpu" or not _has_our_layout(weight, dtype, device):
        return dequantize_nf4(weight)
    numel = shape.numel()
    buffer = getattr(_scratch, "buffer", None)
    if buffer is None or buffer.dtype != dtype or buffer.numel() < numel:
        _scratch.buffer = None  # drop the old buffer before allocating the bigger one
        buffer = _scratch.buffer = torch.empty(numel, dtype=dtype)
    return _dequantize_into(weight.quantized_data, _scalers_of(weight), buffer[:numel].view(shape))


def keeps_dense_weight(input: torch.Tensor, weight: NF4Tensor) -> bool:
    """Whether `linear_nf4` keeps the dequantized weight for backward instead of dequantizing it again there.

    Kept when the layer has at least as many tokens as the weight's smaller side: the dense weight is then no
    bigger than the layer's input or output activation (so it adds at most one activation's memory per NF4
    layer), and the matmuls are not much longer than a dequantization, so the saved pass is a large share of
    the layer's time. With fewer tokens (a 7B model at 1 x 512: 512 < 4096) the weight is bigger than any of
    the layer's activations and QLoRA's memory saving wins: backward dequantizes again. Activation
    checkpointing's first forward saves nothing, so under it a kept weight lives from the layer's recompute
    to its backward only.
    """
    tokens = input.numel() // max(1, input.shape[-1])
    return tokens >= min(weight.shape)


class _LinearNF4(torch.autograd.Function):
    """``input @ dequant(W).T (+ add)`` for a frozen NF4 ``W``: saves the dequantized weight for backward when
    `keeps_dense_weight` says so, else nothing (backward dequantizes ``W`` again).

    The 4-bit weight is held on ctx, not saved for backward: it is a frozen parameter, and nothing saved means
    activation checkpointing's recompute (which stops once every saved tensor is back) can stop before this
    matmul when its output feeds nothing that is saved (a layer's last projection: see `LoRALinear.forward`).
    """

    @staticmethod
    def forward(ctx, input: torch.Tensor, weight: NF4Tensor, add: Optional[torch.Tensor]) -> torch.Tensor:
        ctx.keeps_dense = ctx.needs_input_grad[0] and keeps_dense_weight(input, weight)
        if ctx.keeps_dense:
            dense = dequantize_nf4(weight).to(input.dtype)  # a tensor of its own: backward reads it
            ctx.save_for_backward(dense)
        else:
            ctx.weight = weight
            # Autograd records nothing inside forward, so the reused buffer is not kept past this matmul.
            dense = _dequantize_scratch(weight).to(input.dtype)
        if add is None:
            return F.linear(input, dense)
        out = torch.addmm(add.reshape(-1, dense.size(0)), input.reshape(-1, dense.size(1)), dense.t())
        return out.view(*input.shape[:-1], dense.size(0))

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> tuple[Optional[torch.Tensor], None, Optional[torch.Tensor]]:
        grad_add = grad_output if ctx.needs_input_grad[2] else None
        if not ctx.needs_input_grad[0]:
            return None, None, grad_add
        if ctx.keeps_dense:
            (dense,) = ctx.saved_tensors
        elif torch.is_grad_enabled():  # with create_graph the matmul saves its operands: a tensor of its own
            dense = dequantize_nf4(ctx.weight)
        else:
            dense = _dequantize_scratch(ctx.weight)
        return grad_output @ dense.to(grad_output.dtype), None, grad_add


def linear_nf4(input: torch.Tensor, weight: NF4Tensor, add: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``input: [..., in]`` @ dequantized ``weight: [out, in]``.T -> ``[..., out]``, plus ``add`` (same shape as
    the result) inside the same GEMM when given; grad flows to ``input`` and ``add``, never to ``weight``."""
    return _LinearNF4.apply(input, weight, add)
