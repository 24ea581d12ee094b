"""ChunkedCrossEntropyLoss against F.cross_entropy on the full fp32 logits: values, counts and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from torchtune_lite.training import ChunkedCrossEntropyLoss

B, S, D, V = 2, 11, 16, 37


def _setup(seed: int = 0, dtype=torch.float32):
    torch.manual_seed(seed)
    output = nn.Linear(D, V, bias=False).to(dtype)
    hidden = torch.randn(B, S, D, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, V, (B, S))
    labels[0, :3] = -100
    labels[1, -2:] = -100
    return output, hidden, labels


def _reference(output, hidden, labels):
    logits = output(hidden).float()
    return F.cross_entropy(logits.reshape(-1, V), labels.reshape(-1), ignore_index=-100, reduction="sum")


@pytest.mark.parametrize("chunks", [1, 3, 8, 50])
def test_sum_count_and_grads_match_full_logits(chunks):
    output, hidden, labels = _setup()
    ref_output, ref_hidden = nn.Linear(D, V, bias=False), hidden.detach().clone().requires_grad_(True)
    ref_output.load_state_dict(output.state_dict())

    loss_sum, num_tokens = ChunkedCrossEntropyLoss(num_output_chunks=chunks, chunk_above_mb=0)(hidden, output, labels)
    expected = _reference(ref_output, ref_hidden, labels)
    assert loss_sum.dtype == torch.float32 and loss_sum.shape == ()
    torch.testing.assert_close(loss_sum, expected, rtol=1e-6, atol=1e-5)
    assert num_tokens.item() == int((labels != -100).sum()) == B * S - 5

    loss_sum.backward()
    expected.backward()
    torch.testing.assert_close(hidden.grad, ref_hidden.grad, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(output.weight.grad, ref_output.weight.grad, rtol=1e-5, atol=1e-6)


def test_bf16_inputs_are_reduced_in_fp32():
    output, hidden, labels = _setup(dtype=torch.bfloat16)
    loss_sum, _ = ChunkedCrossEntropyLoss(num_output_chunks=4, chunk_above_mb=0)(hidden, output, labels)
    assert loss_sum.dtype == torch.float32
    torch.testing.assert_close(loss_sum, _reference(output, hidden, labels), rtol=1e-5, atol=1e-4)
    loss_sum.backward()
    assert hidden.grad.dtype == torch.bfloat16 and torch.isfinite(hidden.grad).all()


def test_no_grad_and_all_ignored():
    output, hidden, labels = _setup()
    with torch.no_grad():
        loss_sum, count = ChunkedCrossEntropyLoss(4, chunk_above_mb=0)(hidden, output, labels)
    torch.testing.assert_close(loss_sum, _reference(output, hidden, labels).detach())
    loss_sum, count = ChunkedCrossEntropyLoss(4, chunk_above_mb=0)(hidden, output, torch.full((B, S), -100))
    assert loss_sum.item() == 0.0 and count.item() == 0


def test_custom_ignore_index():
    output, hidden, labels = _setup()
    labels2 = labels.masked_fill(labels == -100, -1)
    loss_sum, count = ChunkedCrossEntropyLoss(2, ignore_index=-1, chunk_above_mb=0)(hidden, output, labels2)
    torch.testing.assert_close(loss_sum, _reference(output, hidden, labels), rtol=1e-6, atol=1e-5)
    assert count.item() == B * S - 5


def test_bad_arguments():
    with pytest.raises(ValueError, match="at least 1"):
        ChunkedCrossEntropyLoss(0)
    output, hidden, labels = _setup()
    with pytest.raises(ValueError, match="do not match"):
        ChunkedCrossEntropyLoss(2)(hidden, output, labels[:, :-1])
