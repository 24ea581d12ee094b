import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from torchtune_lite.modules import RotaryPositionalEmbeddings


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
