"""RMSNorm against transformers' (Llama's and Gemma's), values and gradients; every test runs on the fused C
kernels and on the torch ops."""

import pytest
import torch
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from torchtune_lite.kernels.rms_norm import runs_on
from torchtune_lite.modules import RMSNorm


@pytest.fixture(autouse=True)
def norm_path(kernel_path):
    assert runs_on(torch.ones(2)) == (kernel_path == "c_kernel")  # the path under test is the one taken
    return kernel_path


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


@pytest.mark.parametrize("unit_offset", [False, True])
def test_fp32_gradients_match_hf_autograd(unit_offset):
    # x and scale gradients against transformers' RMSNorm through autograd (Gemma's: through 1 + w).
    from transformers.models.gemma2.modeling_gemma2 import Gemma2RMSNorm

    torch.manual_seed(0)
    ours = RMSNorm(48, eps=1e-6, unit_offset=unit_offset)
    hf = Gemma2RMSNorm(48, eps=1e-6) if unit_offset else LlamaRMSNorm(48, eps=1e-6)
    with torch.no_grad():
        ours.scale.normal_(mean=0.0 if unit_offset else 1.0, std=0.3)
        hf.weight.copy_(ours.scale)
    x = torch.randn(3, 7, 48) * 2
    grad = torch.randn(3, 7, 48)
    got = torch.autograd.grad(ours(x.requires_grad_()), (x, ours.scale), grad)
    want = torch.autograd.grad(hf(x), (x, hf.weight), grad)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_bf16_gradient_of_a_frozen_norm_is_close_to_fp32():
    torch.manual_seed(0)
    norm = RMSNorm(64)
    norm.scale.requires_grad_(False)
    x, grad = torch.randn(8, 64) * 3, torch.randn(8, 64)
    want = torch.autograd.grad(norm(x.requires_grad_()), x, grad)[0]
    norm = norm.to(torch.bfloat16)
    xb = x.detach().to(torch.bfloat16).requires_grad_()
    got = torch.autograd.grad(norm(xb), xb, grad.to(torch.bfloat16))[0]
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got.float(), want, rtol=2e-2, atol=2e-2)


def test_output_and_input_gradient_are_tensors_of_their_own():
    # FSDP2 warns when a wrapped module returns a view (the final norm's output is the model's hidden state);
    # x: [b, s, dim] used to come back as a [b * s, dim] result viewed in x's shape.
    norm = RMSNorm(16)
    x = torch.randn(2, 3, 16, requires_grad=True)
    out = norm(x)
    assert out.shape == x.shape and out._base is None
    out.square().sum().backward()
    assert x.grad.shape == x.shape
