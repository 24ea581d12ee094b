import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from torchtune_lite.modules import RMSNorm


def test_matches_hf_rmsnorm():
    torch.manual_seed(0)
    ours, hf = RMSNorm(16, eps=1e-5), LlamaRMSNorm(16, eps=1e-5)
    with torch.no_grad():
        ours.scale.uniform_(0.5, 1.5)
        hf.weight.copy_(ours.scale)
    x = torch.randn(2, 3, 16) * 3
    torch.testing.assert_close(ours(x), hf(x), rtol=1e-6, atol=1e-6)


def test_bf16_input_is_normalised_in_fp32():
    torch.manual_seed(0)
    norm = RMSNorm(64).to(torch.bfloat16)
    x = (torch.randn(4, 64) * 1e3).to(torch.bfloat16)  # squares overflow bf16 precision if summed in bf16
    out = norm(x)
    assert out.dtype == torch.bfloat16
    expected = x.float() * torch.rsqrt(x.float().pow(2).mean(-1, keepdim=True) + 1e-6)
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)


def test_unit_offset_matches_gemma_rmsnorm_in_bf16():
    """Gemma's (1 + w) norm: bit-equal to transformers' in bf16 (fp32 inside, one rounding at the end)."""
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm

    torch.manual_seed(0)
    ours, hf = RMSNorm(64, eps=1e-6, unit_offset=True), Gemma2RMSNorm(64, eps=1e-6)
    assert torch.equal(ours.scale, hf.weight)  # both start at zero: the identity scale
    with torch.no_grad():
        ours.scale.normal_(std=0.5)
        hf.weight.copy_(ours.scale)
    ours, hf = ours.to(torch.bfloat16), hf.to(torch.bfloat16)
    x = (torch.randn(2, 5, 64) * 10).to(torch.bfloat16)
    assert torch.equal(ours(x), hf(x))
