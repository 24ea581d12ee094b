"""Key/value cache for incremental decoding."""

import torch
from torch import nn


class KVCache(nn.Module):
    """Holds keys and values of past positions: `k_cache, v_cache: [batch, num_kv_heads, max_seq_len, head_dim]`.

    The buffers are non-persistent, so a model's state dict is the same with or without caches.
    """

    def __init__(self, batch_size: int, max_seq_len: int, num_kv_heads: int, head_dim: int, dtype: torch.dtype) -> None:
        super().__init__()
        shape = (batch_size, num_kv_heads, max_seq_len, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype), persistent=False)

    def reset(self) -> None:
        self.k_cache.zero_()
        self.v_cache.zero_()

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Writes `k, v: [b, n_kv, s, head_dim]` at `input_pos: [b, s]` (or [s]); returns the whole caches."""
        batch_size = k.size(0)
        if batch_size > self.k_cache.size(0):
            raise ValueError(
                f"batch of {batch_size} exceeds the KV cache's batch size {self.k_cache.size(0)}: "
                f"call setup_caches with a larger batch_size"
            )
        if input_pos.dim() == 1:
            input_pos = input_pos.unsqueeze(0).expand(batch_size, -1)
        rows = torch.arange(batch_size, device=input_pos.device).unsqueeze(1)  # [b, 1]
        # advanced indices (rows, input_pos) around a slice put [b, s] first: [b, s, n_kv, head_dim]
        self.k_cache[rows, :, input_pos] = k.transpose(1, 2).to(self.k_cache.dtype)
        self.v_cache[rows, :, input_pos] = v.transpose(1, 2).to(self.v_cache.dtype)
        return self.k_cache[:batch_size], self.v_cache[:batch_size]
