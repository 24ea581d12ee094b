"""The Llama decoder: token embeddings, a stack of self-contained layers, final norm, output projection."""

import functools
from typing import Optional

import torch
from torch import nn

from torchtune_lite.modules.attention import causal_mask_for_cache


class TransformerDecoderLayer(nn.Module):
    """Pre-norm block: `h = x + attn(sa_norm(x))`, `out = h + mlp(mlp_norm(h))`.

    With `sa_post_norm`/`mlp_post_norm` (Gemma's "sandwich" norms) each branch's output is normed again
    before the residual add: `h = x + sa_post_norm(attn(sa_norm(x)))`, likewise for the MLP.
    Self-contained so training code can wrap each one with activation checkpointing or torch.compile.
    """

    def __init__(
        self,
        *,
        attn: nn.Module,
        mlp: nn.Module,
        sa_norm: nn.Module,
        mlp_norm: nn.Module,
        sa_post_norm: Optional[nn.Module] = None,
        mlp_post_norm: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        self.attn = attn
        self.mlp = mlp
        self.sa_norm = sa_norm
        self.mlp_norm = mlp_norm
        self.sa_post_norm = sa_post_norm
        self.mlp_post_norm = mlp_post_norm

    def forward(
        self, x: torch.Tensor, *, mask: Optional[torch.Tensor] = None, input_pos: Optional[torch.Tensor] = None
    ) -> torch.Tensor:
        """x: [b, s, dim] -> [b, s, dim]; mask and input_pos as in `MultiHeadAttention.forward`."""
        attn_out = self.attn(self.sa_norm(x), mask=mask, input_pos=input_pos)
        if self.sa_post_norm is not None:
            attn_out = self.sa_post_norm(attn_out)
        h = x + attn_out
        mlp_out = self.mlp(self.mlp_norm(h))
        if self.mlp_post_norm is not None:
            mlp_out = self.mlp_post_norm(mlp_out)
        return h + mlp_out


def soft_cap_logits(module: nn.Module, inputs: tuple, logits: torch.Tensor, *, cap: float) -> torch.Tensor:
    """Forward hook: logits become `cap * tanh(logits / cap)` (Gemma-2's final-logit soft-capping)."""
    return torch.tanh(logits / cap) * cap


class TransformerDecoder(nn.Module):
    """Decoder-only transformer returning logits (or the final hidden states for a chunked loss).

    Args:
        tok_embeddings: [vocab, dim] embedding.
        layers: the `TransformerDecoderLayer`s, in order.
        norm: final norm.
        output: dim -> vocab projection, a separate module so a loss can apply it chunk by chunk.
        max_seq_len: longest sequence the model accepts (RoPE table and KV cache size).
        num_heads: attention heads (kept for callers that size caches or masks).
        head_dim: size of each head.
        embed_scale: the embeddings are multiplied by this (Gemma: sqrt(dim), rounded to the embedding's
            dtype as Hugging Face does); None multiplies by nothing.
        final_logit_softcap: Gemma-2's `cap * tanh(logits / cap)` on the output. It is a forward hook on
            `output`, so everything that calls the projection itself (the chunked loss, generation) gets
            capped logits, and `output` stays a linear that LoRA, NF4 and FSDP treat like any other. A
            hooked output is never taken for a plain linear (see `training.loss.plain_linear_weight`).
    """

    def __init__(
        self,
        *,
        tok_embeddings: nn.Embedding,
        layers: nn.ModuleList,
        norm: nn.Module,
        output: nn.Module,
        max_seq_len: int,
        num_heads: int,
        head_dim: int,
        embed_scale: Optional[float] = None,
        final_logit_softcap: Optional[float] = None,
    ) -> None:
        super().__init__()
        self.tok_embeddings = tok_embeddings
        self.layers = layers if isinstance(layers, nn.ModuleList) else nn.ModuleList(layers)
        self.norm = norm
        self.output = output
        self.max_seq_len = max_seq_len
        self.num_heads = num_heads
        self.head_dim = head_dim
        self.embed_scale = embed_scale
        self.final_logit_softcap = final_logit_softcap
        if final_logit_softcap is not None:
            output.register_forward_hook(functools.partial(soft_cap_logits, cap=final_logit_softcap))

    def setup_caches(self, batch_size: int, dtype: torch.dtype) -> None:
        """Gives every layer a KV cache for `batch_size` sequences of up to `max_seq_len` tokens."""
        for layer in self.layers:
            layer.attn.setup_cache(batch_size, dtype)

    def caches_are_enabled(self) -> bool:
        return self.layers[0].attn.kv_cache is not None

    def reset_caches(self) -> None:
        """Zeroes the caches (keeps them allocated) for a new generation."""
        for layer in self.layers:
            layer.attn.reset_cache()

    def teardown_caches(self) -> None:
        """Frees the caches; the model goes back to full-sequence forwards."""
        for layer in self.layers:
            layer.attn.teardown_cache()

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        mask: Optional[torch.Tensor] = None,
        input_pos: Optional[torch.Tensor] = None,
        return_hidden: bool = False,
    ) -> torch.Tensor:
        """tokens: [b, s] -> logits [b, s, vocab] (in the output's dtype), or hidden [b, s, dim] if `return_hidden`.

        mask: bool, True = may attend. Without caches [b, s, s] (e.g. block-diagonal causal for packed
            samples; default causal). With caches [b, s, max_seq_len] (default causal up to `input_pos`).
            Every row needs at least one True (e.g. padding attends to itself), or SDPA returns NaN there.
        input_pos: [b, s] (or [s]) token positions; restart per sample for packed sequences; required with caches.
        """
        seq_len = tokens.size(1)
        if seq_len > self.max_seq_len:
            raise ValueError(
                f"sequence of {seq_len} tokens exceeds the model's max_seq_len={self.max_seq_len}: "
                f"truncate the input (e.g. tokenizer max_seq_len) or build the model with a larger max_seq_len"
            )
        if self.caches_are_enabled():
            if input_pos is None:
                raise ValueError("KV caches are set up but no input_pos was given: pass the tokens' positions")
            if mask is None:
                # built once here instead of in every layer
                mask = causal_mask_for_cache(input_pos, self.max_seq_len, batch_size=tokens.size(0))
        h = self.tok_embeddings(tokens)
        if self.embed_scale is not None:
            h = h * torch.tensor(self.embed_scale, dtype=torch.float32, device=h.device).to(h.dtype)  # fp32 first, as HF rounds it
        for layer in self.layers:
            h = layer(h, mask=mask, input_pos=input_pos)
        h = self.norm(h)
        if return_hidden:
            return h
        return self.output(h)
