"""SwiGLU FeedForward against transformers' LlamaMLP and an fp64 reference, values and gradients; every test
runs on the fused C kernel and on the torch ops."""

import pytest
import torch
from torch import nn
from transformers import LlamaConfig
from transformers.models.llama.modeling_llama import LlamaMLP

from torchtune_lite.modules.feed_forward import FeedForward

pytestmark = pytest.mark.usefixtures("kernel_path")


def _swiglu(dim: int, hidden: int) -> FeedForward:
    return FeedForward(gate_proj=nn.Linear(dim, hidden, bias=False), down_proj=nn.Linear(hidden, dim, bias=False),
                       up_proj=nn.Linear(dim, hidden, bias=False))


def test_values_and_gradients_match_hf_llama_mlp():
    torch.manual_seed(0)
    ours = _swiglu(16, 40)
    hf = LlamaMLP(LlamaConfig(hidden_size=16, intermediate_size=40, hidden_act="silu", num_attention_heads=2, num_key_value_heads=2))
    hf.gate_proj.weight.data, hf.up_proj.weight.data, hf.down_proj.weight.data = (
        ours.w1.weight.data.clone(), ours.w3.weight.data.clone(), ours.w2.weight.data.clone())
    x = (torch.randn(3, 7, 16) * 3).requires_grad_()
    x_hf = x.detach().clone().requires_grad_()
    grad = torch.randn(3, 7, 16)
    out, out_hf = ours(x), hf(x_hf)
    out.backward(grad)
    out_hf.backward(grad)
    torch.testing.assert_close(out, out_hf, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(x.grad, x_hf.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.w1.weight.grad, hf.gate_proj.weight.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.w3.weight.grad, hf.up_proj.weight.grad, rtol=1e-5, atol=1e-5)


def test_bf16_keeps_dtype_and_is_close_to_fp32():
    torch.manual_seed(0)
    ours = _swiglu(16, 40)
    x = torch.randn(2, 5, 16) * 3
    ref = ours(x)
    out = ours.to(torch.bfloat16)(x.to(torch.bfloat16))
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref, rtol=3e-2, atol=3e-2)
