"""Multi-head attention with grouped-query attention (GQA), RoPE and an optional KV cache."""

from typing import Optional

import torch
from torch import nn

from torchtune_lite.modules.kv_cache import KVCache
from torchtune_lite.modules.sdpa import attention


class MultiHeadAttention(nn.Module):
    """Causal self-attention through `modules.sdpa.attention` (the kernel choice lives there).

    With `num_kv_heads < num_heads` each key/value head serves `num_heads // num_kv_heads` query heads.

    Args:
        embed_dim: model dimension.
        num_heads: query heads.
        num_kv_heads: key/value heads; must divide num_heads.
        head_dim: size of each head.
        q_proj, k_proj, v_proj, output_proj: the projections (nn.Linear or LoRALinear; q/k/v may carry biases).
        pos_embeddings: applied to q and k, called as `pos_embeddings(x, input_pos=...)`.
        max_seq_len: longest sequence (and KV cache length).
        attn_dropout: dropout on attention probabilities while training.
        q_norm, k_norm: optional norms over each head's `head_dim`, applied to q and k before RoPE (Qwen3's
            and Gemma-3's QK-norm); None (Llama) applies none.
        sliding_window: each query sees only the keys fewer than this many positions back (Gemma's local
            layers); None sees every earlier key.
        scale: multiplies q k^T; None is 1/sqrt(head_dim) (Gemma: 1/sqrt(query_pre_attn_scalar)).
        softcap: scores become `softcap * tanh(scores / softcap)` (Gemma-2); None leaves them.
    """

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int,
        num_kv_heads: int,
        head_dim: int,
        q_proj: nn.Module,
        k_proj: nn.Module,
        v_proj: nn.Module,
        output_proj: nn.Module,
        pos_embeddings: nn.Module,
        max_seq_len: int = 4096,
        attn_dropout: float = 0.0,
        q_norm: Optional[nn.Module] = None,
        k_norm: Optional[nn.Module] = None,
        sliding_window: Optional[int] = None,
        scale: Optional[float] = None,
        softcap: Optional[float] = None,
    ) -> None:
        super().__init__()
        if num_heads % num_kv_heads != 0:
            raise ValueError(
                f"num_kv_heads={num_kv_heads} does not divide num_heads={num_heads}: pick a divisor of num_heads"
            )
        if not 0.0 <= attn_dropout <= 1.0:
            raise ValueError(f"attn_dropout={attn_dropout} is not a probability: use a value in [0, 1]")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.max_seq_len = max_seq_len
        self.attn_dropout = attn_dropout
        self.q_proj = q_proj
        self.k_proj = k_proj
        self.v_proj = v_proj
        self.output_proj = output_proj
        self.pos_embeddings = pos_embeddings
        self.q_norm = q_norm
        self.k_norm = k_norm
        self.sliding_window = sliding_window
        self.scale = scale
        self.softcap = softcap
        self.kv_cache: Optional[KVCache] = None

    def setup_cache(self, batch_size: int, dtype: torch.dtype) -> None:
        """Allocates a KV cache of `max_seq_len` positions on the projections' device."""
        device = self.q_proj.weight.device
        with torch.device(device):
            self.kv_cache = KVCache(batch_size, self.max_seq_len, self.num_kv_heads, self.head_dim, dtype)

    def reset_cache(self) -> None:
        if self.kv_cache is not None:
            self.kv_cache.reset()

    def teardown_cache(self) -> None:
        self.kv_cache = None

    def forward(
        self,
        x: torch.Tensor,
        *,
        mask: Optional[torch.Tensor] = None,
        input_pos: Optional[torch.Tensor] = None,
    ) -> torch.Tensor:
        """x: [b, s, embed_dim] -> [b, s, embed_dim].

        mask: bool, True = may attend; [b, s, s] (or [s, s]) without a cache, [b, s, max_seq_len] with one. Default: causal
            (with a cache, causal over the cached positions up to each query's `input_pos`).
        input_pos: [b, s] or [s] positions of the tokens (default 0..s-1); required with a cache.
        """
        b, s, _ = x.shape
        q = self.q_proj(x).view(b, s, self.num_heads, self.head_dim)
        k = self.k_proj(x).view(b, s, self.num_kv_heads, self.head_dim)
        v = self.v_proj(x).view(b, s, self.num_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q = self.q_norm(q)
        if self.k_norm is not None:
            k = self.k_norm(k)
        q = self.pos_embeddings(q, input_pos=input_pos).transpose(1, 2)  # [b, n_h, s, h_d]
        k = self.pos_embeddings(k, input_pos=input_pos).transpose(1, 2)  # [b, n_kv, s, h_d]
        v = v.transpose(1, 2)

        is_causal = False
        if mask is not None and mask.dim() == 3:
            mask = mask[:, None, :, :]  # [b, 1, s, kv_len], shared by all heads
        if self.kv_cache is not None:
            if input_pos is None:
                raise ValueError("attention has a KV cache but no input_pos was given: pass the tokens' positions")
            k, v = self.kv_cache.update(input_pos, k, v)
            if mask is None:
                mask = causal_mask_for_cache(input_pos, self.max_seq_len, batch_size=b)[:, None, :, :]
        elif mask is None:
            is_causal = True
        if self.sliding_window is not None:
            mask = self._restrict_to_window(mask, input_pos if self.kv_cache is not None else None, s, k.size(2), q.device)
            is_causal = False

        out = attention(
            q, k, v, mask=mask, is_causal=is_causal, dropout_p=self.attn_dropout if self.training else 0.0,
            scale=self.scale, softcap=self.softcap,
        )
        return self.output_proj(out.transpose(1, 2).reshape(b, s, -1))

    def _restrict_to_window(
        self, mask: Optional[torch.Tensor], cache_pos: Optional[torch.Tensor], s: int, kv_len: int, device: torch.device
    ) -> torch.Tensor:
        """`mask` (None: causal) and-ed with the sliding window: key j is seen from query i only if i - j < window.

        With a cache, i is the query's position (`cache_pos`: [s] or [b, s]) and j the cache slot (slot j
        holds position j); without one, both are indices in the sequence, which for packed samples differ
        from positions only by each sample's offset, the same for query and key.
        """
        kv_pos = torch.arange(kv_len, device=device)
        query_pos = kv_pos[:s] if cache_pos is None else cache_pos.to(device)
        band = (query_pos.unsqueeze(-1) - kv_pos) < self.sliding_window  # [s, kv] or [b, s, kv]
        if band.dim() == 3:
            band = band[:, None]  # [b, 1, s, kv]
        if mask is None:
            mask = torch.ones(s, kv_len, dtype=torch.bool, device=device).tril()
        return mask & band


def causal_mask_for_cache(input_pos: torch.Tensor, cache_len: int, batch_size: int) -> torch.Tensor:
    """mask: [b, s, cache_len], True where cache slot j holds a position <= the query's position."""
    if input_pos.dim() == 1:
        input_pos = input_pos.unsqueeze(0).expand(batch_size, -1)
    slots = torch.arange(cache_len, device=input_pos.device)
    return slots.view(1, 1, cache_len) <= input_pos.unsqueeze(-1)
