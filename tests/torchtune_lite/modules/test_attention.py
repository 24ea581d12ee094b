import pytest
import torch
from torch import nn

from torchtune_lite.modules import MultiHeadAttention, RotaryPositionalEmbeddings


def make_attention(num_heads: int, num_kv_heads: int, dim: int = 16) -> MultiHeadAttention:
    head_dim = dim // num_heads
    return MultiHeadAttention(
        embed_dim=dim,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        q_proj=nn.Linear(dim, num_heads * head_dim, bias=False),
        k_proj=nn.Linear(dim, num_kv_heads * head_dim, bias=False),
        v_proj=nn.Linear(dim, num_kv_heads * head_dim, bias=False),
        output_proj=nn.Linear(num_heads * head_dim, dim, bias=False),
        pos_embeddings=RotaryPositionalEmbeddings(head_dim, max_seq_len=8),
        max_seq_len=8,
    )


def test_gqa_equals_mha_with_repeated_kv_heads():
    # Each kv head serves num_heads/num_kv_heads consecutive query heads.
    torch.manual_seed(0)
    gqa = make_attention(num_heads=4, num_kv_heads=2)
    mha = make_attention(num_heads=4, num_kv_heads=4)
    head_dim = 4
    with torch.no_grad():
        mha.q_proj.weight.copy_(gqa.q_proj.weight)
        mha.output_proj.weight.copy_(gqa.output_proj.weight)
        for name in ("k_proj", "v_proj"):
            w = getattr(gqa, name).weight.view(2, head_dim, 16)
            getattr(mha, name).weight.copy_(w.repeat_interleave(2, dim=0).reshape(16, 16))
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(gqa(x), mha(x), rtol=1e-5, atol=1e-6)


def test_kv_heads_must_divide_heads():
    with pytest.raises(ValueError, match="num_kv_heads=3"):
        make_attention(num_heads=4, num_kv_heads=3, dim=16)


def test_mask_forms_agree():
    torch.manual_seed(0)
    attn = make_attention(num_heads=4, num_kv_heads=2)
    x = torch.randn(2, 5, 16)
    causal = torch.tril(torch.ones(5, 5, dtype=torch.bool))
    torch.testing.assert_close(attn(x, mask=causal), attn(x), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(attn(x, mask=causal.expand(2, 5, 5)), attn(x), rtol=1e-5, atol=1e-6)
    full = torch.ones(2, 5, 5, dtype=torch.bool)
    assert not torch.allclose(attn(x, mask=full), attn(x))
