"""kernels/silu_mul: silu(g) * u and its gradients against fp64, rounded once, split over threads."""

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import C_COMPILER
from torchtune_lite.kernels import silu_mul

pytestmark = pytest.mark.skipif(C_COMPILER is None, reason="no C compiler here: the C kernels cannot build")


def _ulps_from_exact(got: torch.Tensor, exact: torch.Tensor) -> torch.Tensor:
    """How many representable steps of got's dtype lie between got and the exact value rounded to that dtype."""
    rounded = exact.to(got.dtype)
    bits = {torch.bfloat16: torch.int16, torch.float32: torch.int32}[got.dtype]
    return (got.view(bits).long() - rounded.view(bits).long()).abs()


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_values_and_gradients_are_the_exact_ones_rounded_once(dtype, monkeypatch):
    monkeypatch.setenv("TORCHTUNE_LITE_C_KERNELS", "1")
    g = torch.Generator().manual_seed(0)
    gate = (torch.randn(300, 1024, generator=g) * 4).to(dtype)  # 300K elements: two parts on two threads
    up, grad = torch.randn(300, 1024, generator=g).to(dtype), torch.randn(300, 1024, generator=g).to(dtype)
    assert silu_mul.runs_on(gate, up)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = silu_mul.silu_mul_forward(gate, up)
        grad_gate, grad_up = silu_mul.silu_mul_backward(gate, up, grad)
    finally:
        torch.set_num_threads(threads)
    gate64, up64 = gate.double().requires_grad_(), up.double().requires_grad_()
    exact = F.silu(gate64) * up64
    exact.backward(grad.double())
    for got, ref in ((out, exact.detach()), (grad_gate, gate64.grad), (grad_up, up64.grad)):
        assert got.dtype == dtype and got.shape == ref.shape
        ulps = _ulps_from_exact(got, ref)
        if dtype == torch.bfloat16:  # fp32 math, one rounding: nearly always the correctly rounded value
            assert (ulps == 0).float().mean() > 0.999 and ulps.max() <= 1
        else:
            torch.testing.assert_close(got.double(), ref, rtol=2e-6, atol=1e-6)


def test_large_gates_saturate_without_overflow(monkeypatch):
    monkeypatch.setenv("TORCHTUNE_LITE_C_KERNELS", "1")
    gate = torch.tensor([-1e4, -100.0, 0.0, 100.0, 1e4])
    out = silu_mul.silu_mul_forward(gate, torch.ones(5))
    grad_gate, _ = silu_mul.silu_mul_backward(gate, torch.ones(5), torch.ones(5))
    torch.testing.assert_close(out, torch.tensor([0.0, 0.0, 0.0, 100.0, 1e4]), rtol=1e-6, atol=1e-30)
    torch.testing.assert_close(grad_gate, torch.tensor([0.0, 0.0, 0.5, 1.0, 1.0]), rtol=1e-6, atol=1e-30)
