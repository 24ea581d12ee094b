"""The fused C cross-entropy kernel for rows of logits against an fp64 reference: per-row loss, the logits'
gradient (softmax - one_hot) in fp32 and rounded once to bf16, extreme and invalid inputs, thread splits,
and where it declines to run (the caller then takes torch ops)."""

import pytest
import torch

from tests.conftest import C_COMPILER
from torchtune_lite.kernels import cross_entropy_rows_

pytestmark = pytest.mark.skipif(C_COMPILER is None, reason="no C compiler here: the C kernels cannot build")


def _logits(rows, vocab, scale, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(rows, vocab, generator=g) * scale).to(dtype)
    targets = torch.randint(0, vocab, (rows,), generator=g)
    return logits, targets


def _reference(logits, targets):
    """(per-row loss, softmax - one_hot), both fp64."""
    logp = torch.log_softmax(logits.double(), dim=-1)
    grad = logp.exp()
    grad[torch.arange(len(targets)), targets] -= 1.0
    return -logp.gather(1, targets[:, None]).squeeze(1), grad


def _torch_ops_error(logits, targets):
    """Max errors of the torch-ops path (fp32 log-softmax, exp, minus one-hot) against fp64: the bar to meet."""
    ref_loss, ref_grad = _reference(logits, targets)
    logp = torch.log_softmax(logits, dim=-1, dtype=torch.float32)
    grad = logp.exp()
    grad[torch.arange(len(targets)), targets] -= 1.0
    loss = -logp.gather(1, targets[:, None]).squeeze(1)
    return (loss.double() - ref_loss).abs().max().item(), (grad.double() - ref_grad).abs().max().item()


@pytest.mark.parametrize("scale", [0.1, 4.0, 30.0])
@pytest.mark.parametrize("vocab", [7, 1000, 32000])
def test_fp32_loss_and_gradient_are_as_accurate_as_torch_ops(vocab, scale):
    logits, targets = _logits(33, vocab, scale, torch.float32)
    ref_loss, ref_grad = _reference(logits, targets)
    torch_loss_err, torch_grad_err = _torch_ops_error(logits, targets)
    grad = logits.clone()
    loss = cross_entropy_rows_(grad, targets)
    assert loss is not None and loss.dtype == torch.float32 and loss.shape == (33,)
    assert (loss.double() - ref_loss).abs().max().item() <= 2 * torch_loss_err + 1e-6
    assert (grad.double() - ref_grad).abs().max().item() <= 2 * torch_grad_err + 1e-7


@pytest.mark.parametrize("vocab", [1000, 32000])
def test_bf16_gradient_is_the_exact_softmax_rounded_once(vocab):
    logits, targets = _logits(17, vocab, 4.0, torch.bfloat16, seed=1)
    ref_loss, ref_grad = _reference(logits, targets)
    grad = logits.clone()
    loss = cross_entropy_rows_(grad, targets)
    assert grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss.double(), ref_loss, rtol=0, atol=2e-5)
    rounded = ref_grad.to(torch.bfloat16)
    assert (grad == rounded).float().mean().item() > 0.999  # fp32 error can only flip near-ties
    ulp = (rounded.float().abs() * 2.0**-7).clamp_min(2.0**-133)
    assert ((grad.float() - rounded.float()).abs() <= ulp).all()


def test_extreme_and_invalid_rows():
    logits = torch.tensor(
        [
            [0.0, 0.0, 0.0, 0.0],  # uniform: loss ln 4
            [1e4, -1e4, 0.0, 0.0],  # one certain class, exp underflows elsewhere
            [float("-inf"), 0.0, 1.0, 2.0],  # a masked logit
            [1.0, float("nan"), 0.0, 0.0],  # NaN must not pass as a number
            [1.0, 2.0, 3.0, 4.0],  # target out of range: zero loss, zero gradient
        ]
    )
    targets = torch.tensor([2, 0, 3, 0, 9])
    ref_loss, ref_grad = _reference(logits[:3], targets[:3])
    grad = logits.clone()
    loss = cross_entropy_rows_(grad, targets)
    torch.testing.assert_close(loss[:3].double(), ref_loss, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(grad[:3].double(), ref_grad, rtol=1e-6, atol=1e-7)
    assert loss[3].isnan() and grad[3].isnan().all()
    assert loss[4] == 0 and not grad[4].any()


def test_thread_split_gives_the_same_bits():
    logits, targets = _logits(64, 32000, 3.0, torch.bfloat16, seed=2)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 2, 3):
            torch.set_num_threads(n)
            grad = logits.clone()
            results.append((cross_entropy_rows_(grad, targets), grad))
    finally:
        torch.set_num_threads(threads)
    for loss, grad in results[1:]:
        assert torch.equal(loss, results[0][0]) and torch.equal(grad, results[0][1])


def test_declines_what_it_cannot_run(monkeypatch):
    logits, targets = _logits(4, 10, 1.0, torch.float32)
    before = logits.clone()
    assert cross_entropy_rows_(logits.t().contiguous().t(), targets) is None  # not row-major
    assert cross_entropy_rows_(logits.half(), targets) is None  # fp16: no kernel
    assert cross_entropy_rows_(logits, targets.int()) is None
    monkeypatch.setenv("TORCHTUNE_LITE_C_KERNELS", "0")
    assert cross_entropy_rows_(logits, targets) is None
    assert torch.equal(logits, before)
