"""modules/sdpa.py: both kernel paths against torch's math SDPA (values and gradients; causal, packed
block-diagonal and additive masks; GQA; fp32 and bf16), and a memory probe that the path for long
sequences never materialises [b, h, s, kv] scores, and the short-sequence path saves no more of them than
the math reference does."""

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from torchtune_lite.modules import sdpa
from torchtune_lite.modules.sdpa import attention

B, H, S, D = 2, 4, 12, 8


@pytest.fixture(params=["matmul", "flash"])
def path(request, monkeypatch, kernel_path):  # the matmul path's softmax: C kernel or torch ops
    monkeypatch.setattr(sdpa, "MATMUL_SCORES_MAX_BYTES", 2**30 if request.param == "matmul" else 0)
    monkeypatch.setattr(sdpa, "MATMUL_DTYPES", (torch.bfloat16, torch.float32))  # fp32 checks it tightly
    return request.param


def _inputs(dtype, kv_heads=H, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, H, S, D, generator=g).to(dtype).requires_grad_()
    k = torch.randn(B, kv_heads, S, D, generator=g).to(dtype).requires_grad_()
    v = torch.randn(B, kv_heads, S, D, generator=g).to(dtype).requires_grad_()
    return q, k, v


def _packed_mask():
    # Two documents per row (block-diagonal, causal inside each), at different split points.
    mask = torch.zeros(B, 1, S, S, dtype=torch.bool)
    for b, split in enumerate((5, 8)):
        for lo, hi in ((0, split), (split, S)):
            mask[b, 0, lo:hi, lo:hi] = torch.ones(hi - lo, hi - lo, dtype=torch.bool).tril()
    return mask


def _run(fn, q, k, v, grad_seed=1):
    out = fn(q, k, v)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(grad_seed)).to(out.dtype))
    grads = [t.grad for t in (q, k, v)]
    for t in (q, k, v):
        t.grad = None
    return [out.detach(), *grads]


def _math_reference(q, k, v, **kw):
    q, k, v = (t.detach().float().requires_grad_() for t in (q, k, v))
    with sdpa_kernel(SDPBackend.MATH):
        return _run(lambda a, b, c: F.scaled_dot_product_attention(a, b, c, enable_gqa=b.size(1) != a.size(1), **kw), q, k, v)


CASES = {
    "causal": dict(is_causal=True),
    "packed": dict(mask=_packed_mask()),
    "additive": dict(mask=torch.randn(1, H, S, S, generator=torch.Generator().manual_seed(5))),
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kv_heads", [H, 2])
def test_fp32_matches_math_reference(path, case, kv_heads):
    kw = CASES[case]
    q, k, v = _inputs(torch.float32, kv_heads)
    got = _run(lambda a, b, c: attention(a, b, c, **kw), q, k, v)
    ref_kw = {"attn_mask": kw["mask"]} if "mask" in kw else {"is_causal": True}
    torch.testing.assert_close(got, _math_reference(q, k, v, **ref_kw), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["causal", "packed"])
def test_bf16_is_close_to_fp32_reference(path, case):
    kw = CASES[case]
    q, k, v = _inputs(torch.bfloat16, kv_heads=2)
    got = _run(lambda a, b, c: attention(a, b, c, **kw), q, k, v)
    assert all(t.dtype == torch.bfloat16 for t in got)
    ref_kw = {"attn_mask": kw["mask"]} if "mask" in kw else {"is_causal": True}
    ref = _math_reference(q, k, v, **ref_kw)
    torch.testing.assert_close([t.float() for t in got], ref, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rows_with_no_allowed_key_give_zeros_on_the_matmul_path(monkeypatch, kernel_path, dtype):
    monkeypatch.setattr(sdpa, "MATMUL_SCORES_MAX_BYTES", 2**30)
    monkeypatch.setattr(sdpa, "MATMUL_DTYPES", (dtype,))
    q, k, v = _inputs(dtype)
    mask = _packed_mask()
    mask[:, :, 3] = False
    out, gq, gk, gv = _run(lambda a, b, c: attention(a, b, c, mask=mask), q, k, v)
    assert out.isfinite().all() and gq.isfinite().all() and gk.isfinite().all()
    assert (out[:, :, 3] == 0).all()


class _LargestTensors(TorchDispatchMode):
    """Records every op output with at least `numel` elements (what the kernel materialises in aten ops)."""

    def __init__(self, numel):
        super().__init__()
        self.numel, self.big = numel, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.big += [str(func) for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor) and t.numel() >= self.numel]
        return out


def test_gqa_with_mask_in_fp32_never_materialises_scores_on_the_long_sequence_path(monkeypatch):
    # Sequences past the matmul budget: the [b, h, s, kv] scores must stay inside the fused kernel.
    monkeypatch.setattr(sdpa, "MATMUL_SCORES_MAX_BYTES", 0)
    q, k, v = _inputs(torch.float32, kv_heads=2)
    mask = _packed_mask()
    with _LargestTensors(B * H * S * S) as probe:
        attention(q, k, v, mask=mask).sum().backward()
    assert probe.big == [], probe.big
    with sdpa_kernel(SDPBackend.MATH), _LargestTensors(B * H * S * S) as probe:  # the probe does see them here
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True).sum().backward()
    assert probe.big


def _saved_scores(fn, numel):
    count = []

    def pack(t):
        count.append(t.numel() >= numel)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn().sum().backward()
    return sum(count)


def test_matmul_path_saves_no_more_scores_than_the_math_reference(monkeypatch):
    monkeypatch.setattr(sdpa, "MATMUL_SCORES_MAX_BYTES", 2**30)
    monkeypatch.setattr(sdpa, "MATMUL_DTYPES", (torch.float32,))
    q, k, v = _inputs(torch.float32, kv_heads=2)
    mask = _packed_mask()
    ours = _saved_scores(lambda: attention(q, k, v, mask=mask), B * H * S * S)
    with sdpa_kernel(SDPBackend.MATH):
        ref = _saved_scores(lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True), B * H * S * S)
    assert ours == 1 and ref >= ours


def test_kernel_choice():
    q = torch.empty(4, 8, 256, 64, dtype=torch.bfloat16)
    assert sdpa.use_matmul_attention(q, q, dropout_p=0.0)
    assert not sdpa.use_matmul_attention(q, q, dropout_p=0.1)  # dropout: torch's kernels
    assert not sdpa.use_matmul_attention(q.float(), q.float(), dropout_p=0.0)  # fp32: the flash kernel
    long = torch.empty(4, 8, 4096, 64, dtype=torch.bfloat16)
    assert not sdpa.use_matmul_attention(long, long, dropout_p=0.0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_scale_and_softcap(dtype):
    """`scale` reaches every path; a soft-cap far above the scores changes nothing; a binding one equals
    the capped reference (scores capped before the mask, as Gemma-2)."""
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 4, 16, 8, generator=gen).to(dtype) * 3 for _ in range(3))
    mask = torch.ones(16, 16, dtype=torch.bool).tril()
    scale = 24**-0.5
    reference = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, scale=scale)
    # bf16 rounds scores of this size (|s| up to ~10) by up to 0.05, and the softmax amplifies it
    tol = dict(atol=1e-5, rtol=1e-5) if dtype == torch.float32 else dict(atol=1e-1, rtol=1e-1)
    torch.testing.assert_close(attention(q, k, v, is_causal=True, scale=scale).float(), reference, **tol)
    torch.testing.assert_close(attention(q, k, v, mask=mask, scale=scale, softcap=1e4).float(), reference, **tol)
    scores = torch.tanh(q.float() @ k.float().transpose(-1, -2) * scale / 2.0) * 2.0
    capped = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1) @ v.float()
    out = attention(q, k, v, is_causal=True, scale=scale, softcap=2.0).float()
    torch.testing.assert_close(out, capped, **tol)
    assert (out - reference).abs().max() > 0.5  # the cap binds on these scores
