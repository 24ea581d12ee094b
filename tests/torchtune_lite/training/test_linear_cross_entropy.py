"""The fused output projection + cross-entropy against F.cross_entropy on full logits: values and gradients
(hidden and output weight), ignored tokens, tied embeddings, frozen weights, and which path a module takes.
Every test runs twice: with the fused C kernel for each chunk's softmax and gradient, and with torch ops."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode  # no public API records the ops a call runs

from torchtune_lite.modules.peft.lora import LoRALinear
from torchtune_lite.kernels import cross_entropy_rows_
from torchtune_lite.training import linear_cross_entropy
from torchtune_lite.training.linear_cross_entropy import fused_linear_cross_entropy
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss, plain_linear_weight

N, D, V = 29, 16, 53


@pytest.fixture(autouse=True)
def chunk_kernel(kernel_path):
    return kernel_path


def _data(dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(N, D, generator=g).to(dtype)
    weight = (torch.randn(V, D, generator=g) * 0.3).to(dtype)
    labels = torch.randint(0, V, (N,), generator=g)
    labels[::4] = -100
    return hidden, weight, labels


def _grads(fn, hidden, weight):
    h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
    loss = fn(h, w)
    (loss * 0.37).backward()  # a scale other than 1 checks that backward applies the incoming gradient
    return loss.detach(), h.grad, w.grad


def _reference(h, w, labels):
    return F.cross_entropy((h @ w.t()).float(), labels, ignore_index=-100, reduction="sum")


@pytest.mark.parametrize("chunk_tokens", [1, 5, 1000])
def test_fp32_loss_and_gradients_match_full_logits(chunk_tokens):
    hidden, weight, labels = _data(torch.float32)
    got = _grads(lambda h, w: fused_linear_cross_entropy(h, w, labels, -100, chunk_tokens), hidden, weight)
    want = _grads(lambda h, w: _reference(h, w, labels), hidden, weight)
    assert got[0].dtype == torch.float32 and got[0].shape == ()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert (got[1][::4] == 0).all()  # ignored tokens get exactly zero gradient


def test_bf16_loss_and_gradients_are_close_to_fp32_logits():
    hidden, weight, labels = _data(torch.bfloat16)
    got = _grads(lambda h, w: fused_linear_cross_entropy(h, w, labels, -100, 7), hidden, weight)
    want = _grads(lambda h, w: _reference(h, w, labels), hidden, weight)
    assert got[1].dtype == got[2].dtype == torch.bfloat16
    torch.testing.assert_close(got[0], want[0], rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(got[1:], want[1:], rtol=3e-2, atol=3e-3)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_logit_gradient_is_the_fp32_softmax_minus_one_hot_rounded_once(dtype, chunk_kernel):
    # The gradient of the logits is softmax - one_hot(y) computed in fp32 and rounded to the compute dtype
    # once, however the kernel writes it: the hidden gradient equals that matrix times the weight, bit for bit.
    # (The C kernel's own fp32 softmax is checked against fp64 in test_cross_entropy_rows.py.)
    hidden, weight, labels = _data(dtype, seed=1)
    _, grad_h, _ = _grads(lambda h, w: fused_linear_cross_entropy(h, w, labels, -100, 1000), hidden, weight)
    keep = labels != -100
    if chunk_kernel == "c_kernel":
        dlogits = hidden[keep] @ weight.t()
        assert cross_entropy_rows_(dlogits, labels[keep]) is not None
    else:
        logp = torch.log_softmax(hidden[keep] @ weight.t(), dim=-1, dtype=torch.float32)
        dlogits = (logp.exp() - F.one_hot(labels[keep], V)).to(dtype)
    want = torch.zeros_like(hidden)
    want[keep] = torch.mm(dlogits, weight) * torch.tensor(0.37, dtype=dtype)
    assert torch.equal(grad_h, want)


def test_every_token_ignored_gives_zero_loss_and_zero_gradients():
    hidden, weight, _ = _data(torch.float32)
    labels = torch.full((N,), -100)
    loss, gh, gw = _grads(lambda h, w: fused_linear_cross_entropy(h, w, labels, -100, 8), hidden, weight)
    assert loss.item() == 0.0 and not gh.any() and not gw.any()


def test_frozen_weight_gets_no_gradient_and_no_grad_mode_works():
    hidden, weight, labels = _data(torch.float32)
    h = hidden.clone().requires_grad_()
    fused_linear_cross_entropy(h, weight, labels, -100, 8).backward()
    assert weight.grad is None and h.grad is not None
    with torch.no_grad():
        loss = fused_linear_cross_entropy(hidden, weight, labels, -100, 8)
    torch.testing.assert_close(loss, _reference(hidden, weight, labels))


def test_tied_output_weight_gets_both_gradients():
    # Output tied to the token embeddings: the fused pass's weight gradient adds to the embedding's.
    torch.manual_seed(0)
    emb = nn.Embedding(V, D)
    out = nn.Linear(D, V, bias=False)
    out.weight = emb.weight
    tokens = torch.randint(0, V, (2, 9))
    labels = torch.randint(0, V, (2, 9))
    labels[0, :2] = -100

    loss_sum, n = ChunkedCrossEntropyLoss()(torch.tanh(emb(tokens)), out, labels)
    (loss_sum / n).backward()
    fused_grad = emb.weight.grad.clone()
    emb.weight.grad = None
    ref = F.cross_entropy(out(torch.tanh(emb(tokens))).flatten(0, 1), labels.flatten(), ignore_index=-100)
    ref.backward()
    torch.testing.assert_close(loss_sum / n, ref)
    torch.testing.assert_close(fused_grad, emb.weight.grad)


def test_which_output_modules_take_the_fused_path():
    linear = nn.Linear(D, V, bias=False)
    assert plain_linear_weight(linear) is linear.weight
    assert plain_linear_weight(nn.Linear(D, V, bias=True)) is None
    assert plain_linear_weight(LoRALinear(D, V, rank=2, alpha=4.0)) is None
    hooked = nn.Linear(D, V, bias=False)
    hooked.register_forward_pre_hook(lambda m, args: None)
    assert plain_linear_weight(hooked) is None  # e.g. a hook that gathers a sharded weight


class _RecordMatmulRows(TorchDispatchMode):
    """Row counts of the projection's matmuls ([rows, D] @ [D, V] forward, [rows, V] @ [V, D] for the hidden gradient)."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in (torch.ops.aten.mm.default, torch.ops.aten.mm.out) and args[0].size(1) in (D, V):
            self.rows.add(args[0].size(0))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("scored", [1, 22, 63, 64, 65, 100])
def test_matmul_row_counts_are_a_multiple_of_64_and_padding_changes_nothing(scored, monkeypatch):
    # Every new row count costs a compiled kernel (bf16 on CPU), and the scored-token count changes every
    # batch: the rows are padded to a multiple of 64, without changing the loss or any gradient (fp64:
    # against the unpadded pass to rounding, against full logits to the fused pass's fp32 softmax).
    g = torch.Generator().manual_seed(scored)
    n = 128
    hidden = torch.randn(n, D, generator=g, dtype=torch.float64)
    weight = torch.randn(V, D, generator=g, dtype=torch.float64) * 0.3
    labels = torch.full((n,), -100)
    labels[torch.randperm(n, generator=g)[:scored]] = torch.randint(0, V, (scored,), generator=g)
    with _RecordMatmulRows() as record:
        got = _grads(lambda h, w: fused_linear_cross_entropy(h, w, labels, -100, 1000), hidden, weight)
    assert record.rows == {-(-scored // 64) * 64}
    torch.testing.assert_close(got, _grads(lambda h, w: _reference(h, w, labels), hidden, weight), rtol=1e-5, atol=1e-5)
    monkeypatch.setattr(linear_cross_entropy, "ROW_MULTIPLE", 1)
    with _RecordMatmulRows() as record:
        unpadded = _grads(lambda h, w: fused_linear_cross_entropy(h, w, labels, -100, 1000), hidden, weight)
    assert record.rows == {scored}
    torch.testing.assert_close(got, unpadded, rtol=1e-13, atol=1e-13)
