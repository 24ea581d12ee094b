"""kernels/attention_softmax: the masked, scaled softmax and its backward against fp64, split over threads."""

import pytest
import torch

from tests.conftest import C_COMPILER
from torchtune_lite.kernels import attention_softmax

pytestmark = pytest.mark.skipif(C_COMPILER is None, reason="no C compiler here: the C kernels cannot build")

B, H, S = 2, 4, 192  # 295K scores: two parts on two threads
SCALE = 0.3


def _masks() -> dict:
    g = torch.Generator().manual_seed(3)
    per_batch = torch.rand(B, 1, S, S, generator=g) < 0.7
    per_batch[1, 0, 17] = False  # a query that sees no key
    return {"causal": None, "shared": torch.rand(S, S, generator=g) < 0.5, "per_batch": per_batch, "none": None}


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("case", ["causal", "shared", "per_batch", "none"])
def test_forward_and_backward_match_fp64(dtype, case, monkeypatch):
    monkeypatch.setenv("TORCHTUNE_LITE_C_KERNELS", "1")
    g = torch.Generator().manual_seed(0)
    scores = (torch.randn(B, H, S, S, generator=g) * 4).to(dtype)
    grad = torch.randn(B, H, S, S, generator=g).to(dtype)
    causal, mask = case == "causal", _masks()[case]
    assert attention_softmax.runs_on(scores, mask)
    visible = torch.ones(S, S, dtype=torch.bool).tril() if causal else mask
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        probs = attention_softmax.softmax_forward_(scores.clone(), SCALE, causal, mask)
        grad_scores = attention_softmax.softmax_backward_(probs, grad.clone(), SCALE, causal)
    finally:
        torch.set_num_threads(threads)
    x = scores.double().requires_grad_()
    logits = x * SCALE if visible is None else (x * SCALE).masked_fill(~visible, float("-inf"))
    ref = torch.softmax(logits, dim=-1).nan_to_num(0.0)
    ref.backward(grad.double())
    # the backward is taken at the kernel's own (rounded) probabilities, so compare it with that tolerance too
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-2, atol=2e-3)
    torch.testing.assert_close(probs.double(), ref.detach(), **tol)
    torch.testing.assert_close(grad_scores.double(), x.grad.nan_to_num(0.0), **tol)
    if visible is not None:  # hidden keys get exactly zero probability and gradient
        hidden = ~visible.expand(B, H, S, S)
        assert (probs[hidden] == 0).all() and (grad_scores[hidden] == 0).all()
    if case == "per_batch":
        assert (probs[1, :, 17] == 0).all()


def test_per_head_masks_take_the_torch_ops():
    assert not attention_softmax.runs_on(torch.zeros(1, 2, 3, 3), torch.ones(1, 2, 3, 3, dtype=torch.bool))
    assert not attention_softmax.runs_on(torch.zeros(1, 2, 3, 3), torch.zeros(1, 1, 3, 3))  # additive
