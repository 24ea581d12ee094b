"""RoPE against transformers' and an fp64 rotation, forward and backward; every test runs on the C kernel and
on the torch ops."""

import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from torchtune_lite.modules import RotaryPositionalEmbeddings

pytestmark = pytest.mark.usefixtures("kernel_path")


def test_interleaved_pairs_match_hf_rotate_half_after_permutation():
    # HF rotates (x[i], x[i + d/2]); Meta rotates (x[2i], x[2i+1]): same rotation on permuted features.
    torch.manual_seed(0)
    b, s, h, d = 2, 5, 3, 8
    rope = RotaryPositionalEmbeddings(d, max_seq_len=16)
    x = torch.randn(b, s, h, d)
    ours = rope(x)
    to_hf = torch.cat([torch.arange(0, d, 2), torch.arange(1, d, 2)])  # interleaved -> halves
    inv_freq = 1.0 / (10_000 ** (torch.arange(0, d, 2).float() / d))
    angles = torch.outer(torch.arange(s).float(), inv_freq)
    emb = torch.cat([angles, angles], dim=-1)[None]  # [1, s, d]
    x_hf = x[..., to_hf].transpose(1, 2)
    hf, _ = apply_rotary_pos_emb(x_hf, x_hf, emb.cos(), emb.sin())
    torch.testing.assert_close(ours[..., to_hf], hf.transpose(1, 2), rtol=1e-5, atol=1e-6)


def test_input_pos_forms_agree():
    torch.manual_seed(0)
    rope = RotaryPositionalEmbeddings(8, max_seq_len=16)
    x = torch.randn(2, 4, 3, 8)
    default = rope(x)
    torch.testing.assert_close(rope(x, input_pos=torch.arange(4)), default)
    torch.testing.assert_close(rope(x, input_pos=torch.arange(4)[None].expand(2, -1)), default)
    shifted = rope(x, input_pos=torch.tensor([[3, 4, 5, 6], [0, 1, 2, 3]]))
    torch.testing.assert_close(shifted[1], default[1])
    assert not torch.allclose(shifted[0], default[0])


def test_bf16_keeps_dtype_and_cache_is_not_state():
    rope = RotaryPositionalEmbeddings(8, max_seq_len=16)
    assert rope.cache.dtype == torch.float32 and len(rope.state_dict()) == 0
    assert rope(torch.randn(1, 2, 1, 8, dtype=torch.bfloat16)).dtype == torch.bfloat16


def _exact_rotation(x: torch.Tensor, rope: RotaryPositionalEmbeddings, positions: torch.Tensor) -> torch.Tensor:
    """fp64 pairwise rotation of x: [b, s, h, d] at positions [b, s]."""
    cos, sin = rope.cache.double()[positions].unbind(-1)  # [b, s, d/2]
    a, b = x.double().unflatten(-1, (-1, 2)).unbind(-1)  # [b, s, h, d/2]
    cos, sin = cos[:, :, None], sin[:, :, None]
    return torch.stack([a * cos - b * sin, b * cos + a * sin], dim=-1).flatten(-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("packed", [False, True], ids=["default_positions", "packed_positions"])
def test_values_and_gradients_match_an_exact_rotation(dtype, packed):
    torch.manual_seed(0)
    b, s, h, d = 3, 20, 4, 16
    rope = RotaryPositionalEmbeddings(d, max_seq_len=32)
    positions = torch.tensor([list(range(7)) + list(range(13))] * b) if packed else torch.arange(s).expand(b, s)
    x = torch.randn(b, s, h, d).to(dtype).requires_grad_()
    out = rope(x, input_pos=positions if packed else None)
    grad = torch.randn(b, s, h, d).to(dtype)
    out.backward(grad)
    x64 = x.detach().double().requires_grad_()
    ref = _exact_rotation(x64, rope, positions)
    ref.backward(grad.double())
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=8e-3, atol=8e-3)  # one bf16 rounding
    assert out.dtype == dtype and x.grad.dtype == dtype
    torch.testing.assert_close(out.double(), ref, **tol)
    torch.testing.assert_close(x.grad.double(), x64.grad, **tol)


def test_c_kernel_leaves_heads_contiguous_for_attention(kernel_path):
    out = RotaryPositionalEmbeddings(8, max_seq_len=16)(torch.randn(2, 5, 3, 8))
    # attention transposes to [b, h, s, d]; the C kernel writes that layout, the torch ops keep [b, s, h, d]
    assert out.transpose(1, 2).is_contiguous() == (kernel_path == "c_kernel")


def test_positions_outside_the_table_raise_on_both_paths():
    rope = RotaryPositionalEmbeddings(8, max_seq_len=16)
    with pytest.raises(IndexError):
        rope(torch.randn(1, 2, 1, 8), input_pos=torch.tensor([[3, 16]]))
