"""NF4 quantize/dequantize/linear (torchao-backed placeholder; the fast kernels replace the bodies)."""

from typing import Optional

import torch

from torchtune_lite._torchao import NF4Tensor, linear_nf4 as _torchao_linear_nf4, to_nf4


def nf4_block_sizes(numel: int, block_size: int = 64, scaler_block_size: int = 256) -> Optional[tuple[int, int]]:
    for bs in (b for b in (block_size, 32, 16, 8) if b <= block_size):
        if numel % bs:
            continue
        n_blocks = numel // bs
        for sbs in (s for s in (scaler_block_size, 128, 64, 32, 16, 8, 4, 2) if s <= scaler_block_size):
            if n_blocks % sbs == 0:
                return bs, sbs
    return None


def quantize_nf4(weight: torch.Tensor, block_size: int = 64, scaler_block_size: int = 256) -> NF4Tensor:
    return to_nf4(weight, block_size, scaler_block_size)


def dequantize_nf4(weight: NF4Tensor) -> torch.Tensor:
    return weight.get_original_weight()


def linear_nf4(input: torch.Tensor, weight: NF4Tensor) -> torch.Tensor:
    return _torchao_linear_nf4(input, weight)
