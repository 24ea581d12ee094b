"""The fast NF4 kernels against torchao's own NF4 implementation, bit for bit."""

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import C_COMPILER
from torchtune_lite._torchao import NF4Tensor, linear_nf4 as torchao_linear_nf4, to_nf4
from torchtune_lite.kernels import nf4 as nf4_c
from torchtune_lite.quantization import nf4_kernels
from torchtune_lite.quantization.nf4_kernels import (
    NF4ShapeError,
    dequantize_nf4,
    linear_nf4,
    nf4_block_sizes,
    quantize_nf4,
)

FIELDS = ("quantized_data", "quantized_scalers", "quantization_factor", "scaler_mean", "nf4")
DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@pytest.fixture(params=["c", "torch"], autouse=True)
def backend(request, monkeypatch):
    """Run every test on both CPU paths: the fused C kernels (on this CPU's widest path) and the torch ops."""
    monkeypatch.setenv("TORCHTUNE_LITE_C_KERNELS", "1" if request.param == "c" else "0")
    if request.param == "c" and C_COMPILER is None:
        pytest.skip("no C compiler here: the NF4 C kernels cannot build")
    return request.param


def _bits(t: torch.Tensor) -> torch.Tensor:
    # Compare raw bytes, so NaNs (from all-zero blocks) count as equal when torchao produces them too.
    return t.detach().flatten().clone(memory_format=torch.contiguous_format).view(torch.uint8)


def _assert_same_nf4(ours: NF4Tensor, ref: NF4Tensor) -> None:
    assert isinstance(ours, NF4Tensor)
    for field in FIELDS:
        a, b = getattr(ours, field), getattr(ref, field)
        assert (a.dtype, a.shape, a.device) == (b.dtype, b.shape, b.device), field
        assert torch.equal(_bits(a), _bits(b)), field
    assert (ours.block_size, ours.n_blocks, ours.scaler_block_size) == (ref.block_size, ref.n_blocks, ref.scaler_block_size)
    assert (ours.shape, ours.stride(), ours.dtype, ours.requires_grad) == (ref.shape, ref.stride(), ref.dtype, ref.requires_grad)


def _assert_roundtrip_matches_torchao(weight: torch.Tensor, block_size: int, scaler_block_size: int) -> None:
    ref = to_nf4(weight, block_size, scaler_block_size)
    ours = quantize_nf4(weight, block_size, scaler_block_size)
    _assert_same_nf4(ours, ref)
    expected = ref.get_original_weight()
    got = dequantize_nf4(ref)
    assert (got.dtype, got.shape, type(got)) == (expected.dtype, expected.shape, torch.Tensor)
    assert torch.equal(_bits(got), _bits(expected))


def _awkward_weight(shape: tuple[int, ...], dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Gaussian weight plus the cases that trip naive kernels: a zero block, ties, huge and negative extremes."""
    g = torch.Generator().manual_seed(seed)
    w = (torch.randn(shape, generator=g) * 0.02).to(dtype)
    flat = w.view(-1)
    flat[:8] = 0  # with block size <= 8 a whole block is zero: 0/0 during scaling
    flat[8:16] = 0.5  # equal values: exact ties between scaled values
    flat[16] = -3.0  # a block whose extreme is negative
    flat[flat.numel() // 2] = torch.finfo(dtype).max / 8
    flat[-1] = torch.finfo(dtype).tiny
    return w


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 128), (48, 96), (6, 40), (2048,), (3, 42), (64, 64), (512, 512), (7 * 64,), (9, 704)])
def test_quantize_and_dequantize_match_torchao(dtype, shape):
    sizes = nf4_block_sizes(torch.Size(shape).numel())
    assert sizes is not None
    _assert_roundtrip_matches_torchao(_awkward_weight(shape, dtype), *sizes)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_size, scaler_block_size", [(64, 256), (32, 16), (16, 2), (2, 64), (60, 4)])
def test_explicit_block_sizes_match_torchao(dtype, block_size, scaler_block_size):
    numel = block_size * scaler_block_size * 3
    _assert_roundtrip_matches_torchao(_awkward_weight((numel // 2, 2), dtype, seed=1), block_size, scaler_block_size)


@pytest.mark.parametrize("dtype", DTYPES)
def test_constant_weight_matches_torchao(dtype):
    # Every block absmax equals the mean: the double-quantization factor is 256/0 = inf and the scalers NaN.
    _assert_roundtrip_matches_torchao(torch.full((32, 64), 0.25, dtype=dtype), 64, 32)
    _assert_roundtrip_matches_torchao(torch.zeros(32, 64, dtype=dtype), 64, 32)


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
def test_every_16bit_scaled_value_matches_torchao(dtype):
    # Blocks of 64 whose first entry is 1.0, so each scaled value is the weight value itself: this walks
    # every representable value in [-1, 1] (and the NaN patterns) through the whole quantizer.
    every = torch.arange(1 << 16, dtype=torch.int32).to(torch.uint16).view(dtype)
    keep = (every.abs() <= 1) & ~every.isnan()
    values = every[keep]
    values = torch.cat([values, values.new_zeros(-values.numel() % 63)]).view(-1, 63)
    blocks = torch.cat([torch.ones(values.shape[0], 1, dtype=dtype), values], dim=1)
    n_blocks = blocks.shape[0] - blocks.shape[0] % 16
    _assert_roundtrip_matches_torchao(blocks[:n_blocks].reshape(-1), 64, 16)


def test_fp32_values_next_to_every_code_boundary_match_torchao():
    # fp32 codes come from 15 switch points; probe a few ulps around each midpoint between codes.
    codes = to_nf4(torch.ones(128), 64, 2).nf4
    mids = (codes[:-1] + codes[1:]) / 2
    probes = [mids]
    for direction in (1.0, -1.0):
        nxt = mids.clone()
        for _ in range(4):
            nxt = torch.nextafter(nxt, torch.full_like(nxt, direction))
            probes.append(nxt)
    probes.extend([codes, -codes, torch.rand(1000, generator=torch.Generator().manual_seed(0)) * 2 - 1])
    values = torch.cat(probes)
    values = torch.cat([values, values.new_zeros(-values.numel() % 63)]).view(-1, 63)
    blocks = torch.cat([torch.ones(values.shape[0], 1), values], dim=1)
    n_blocks = blocks.shape[0] - blocks.shape[0] % 2
    _assert_roundtrip_matches_torchao(blocks[:n_blocks].reshape(-1), 64, 2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_nan_and_inf_weights_match_torchao(dtype):
    w = _awkward_weight((16, 64), dtype, seed=2)
    w[0, 5] = float("nan")
    w[3, 7] = float("inf")
    w[5, 1] = -float("inf")
    _assert_roundtrip_matches_torchao(w, 64, 4)


def test_non_contiguous_weight_matches_torchao():
    w = _awkward_weight((128, 64), torch.bfloat16).t()
    assert not w.is_contiguous()
    _assert_roundtrip_matches_torchao(w, 64, 128)


def test_requires_grad_flag_is_recorded_like_torchao():
    w = torch.randn(64, 64, requires_grad=True)
    _assert_same_nf4(quantize_nf4(w, 64, 64), to_nf4(w, 64, 64))


@pytest.mark.parametrize("dtype", DTYPES)
def test_meta_weight_gives_meta_nf4_tensor_laid_out_like_torchaos(dtype):
    w = torch.empty(256, 128, dtype=dtype, device="meta")
    q, ref = quantize_nf4(w, 64, 32), to_nf4(w, 64, 32)
    assert isinstance(q, NF4Tensor)
    assert (q.device.type, q.shape, q.dtype) == ("meta", w.shape, w.dtype)
    assert (q.block_size, q.n_blocks, q.scaler_block_size) == (ref.block_size, ref.n_blocks, ref.scaler_block_size)
    for field in FIELDS:
        a, b = getattr(q, field), getattr(ref, field)
        assert (a.shape, a.dtype, a.device) == (b.shape, b.dtype, b.device), field
    assert dequantize_nf4(q).device.type == "meta"


@pytest.mark.parametrize("numel", [1, 3, 6, 10, 24, 100, 250, 1000, 4096, 7 * 64, 11008 * 4096, 2 * 97, 2 * 257])
def test_nf4_block_sizes_fit_torchao(numel):
    sizes = nf4_block_sizes(numel)
    if sizes is None:
        return
    block_size, scaler_block_size = sizes
    assert 2 <= block_size <= 64 and block_size % 2 == 0 and 2 <= scaler_block_size <= 256
    assert numel % block_size == 0 and (numel // block_size) % scaler_block_size == 0
    if numel <= 1 << 16:  # torchao really accepts them (small sizes only, to stay fast)
        q = to_nf4(torch.randn(numel), block_size, scaler_block_size)
        assert q.get_original_weight().shape == (numel,)


def test_nf4_block_sizes_keeps_defaults_and_refuses_impossible():
    assert nf4_block_sizes(4096 * 4096) == (64, 256)
    assert nf4_block_sizes(4096 * 11008, 32, 128) == (32, 128)
    assert nf4_block_sizes(7 * 64) == (64, 7)
    assert nf4_block_sizes(3) is None  # odd: bytes hold two values
    assert nf4_block_sizes(2 * 97) == (2, 97)
    assert nf4_block_sizes(2 * 257) is None  # only blocks of 2 fit, and 257 (prime) blocks form no scaler blocks
    assert nf4_block_sizes(0) is None


def test_bad_layout_and_bad_input_raise_clear_errors():
    with pytest.raises(NF4ShapeError, match="nf4_block_sizes"):
        quantize_nf4(torch.randn(10, 10))
    with pytest.raises(NF4ShapeError, match="1-D or 2-D"):
        quantize_nf4(torch.randn(2, 64, 64))
    with pytest.raises(TypeError, match="NF4Tensor"):
        dequantize_nf4(torch.randn(64, 64))


@pytest.mark.parametrize("input_dtype", (torch.bfloat16, torch.float32))
def test_linear_nf4_forward_and_input_grad(input_dtype):
    weight = quantize_nf4(_awkward_weight((96, 128), torch.bfloat16), 64, 2)
    dense = dequantize_nf4(weight).to(input_dtype)
    x = torch.randn(2, 5, 128, dtype=input_dtype, generator=torch.Generator().manual_seed(3), requires_grad=True)
    out = linear_nf4(x, weight)
    assert torch.equal(out, F.linear(x.detach(), dense))
    assert torch.equal(out, torchao_linear_nf4(x.detach(), weight))
    grad = torch.randn_like(out)
    out.backward(grad)
    x_ref = x.detach().clone().requires_grad_(True)
    F.linear(x_ref, dense).backward(grad)
    torch.testing.assert_close(x.grad, x_ref.grad, rtol=0, atol=0)


def test_linear_nf4_saves_no_tensor_and_dequantizes_again_in_backward():
    # Nothing goes through save_for_backward (the frozen 4-bit weight rides on ctx), so activation
    # checkpointing's recompute has nothing of this matmul to wait for.
    weight = quantize_nf4(torch.randn(128, 64, dtype=torch.bfloat16), 64, 2)
    x = torch.randn(4, 64, dtype=torch.bfloat16, requires_grad=True)
    out, saved = _saved_by_linear_nf4(x, weight)
    assert saved == []
    grad = torch.randn_like(out)
    out.backward(grad)
    assert torch.equal(x.grad, grad @ dequantize_nf4(weight)) and weight.grad is None


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float32))
@pytest.mark.parametrize("tokens", (5, 200))  # below and above the weight's smaller side (kept dense weight)
def test_linear_nf4_adds_inside_its_gemm_and_passes_the_gradient_to_the_addend(dtype, tokens):
    weight = quantize_nf4(_awkward_weight((96, 128), dtype), 64, 2)
    dense = dequantize_nf4(weight)
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, tokens, 128, dtype=dtype, generator=g, requires_grad=True)
    add = torch.randn(2, tokens, 96, dtype=dtype, generator=g, requires_grad=True)
    out = linear_nf4(x, weight, add)
    reference = torch.addmm(add.detach().reshape(-1, 96), x.detach().reshape(-1, 128), dense.t()).view(out.shape)
    assert torch.equal(out, reference)
    torch.testing.assert_close(out, F.linear(x.detach(), dense) + add.detach(), rtol=1e-2 if dtype == torch.bfloat16 else 1e-5, atol=1e-2)
    grad = torch.randn_like(out)
    out.backward(grad)
    assert torch.equal(add.grad, grad) and torch.equal(x.grad, grad @ dense)


def _saved_by_linear_nf4(x: torch.Tensor, weight: NF4Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        out = linear_nf4(x, weight)
    return out, saved


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float32))
def test_linear_nf4_keeps_the_dense_weight_only_when_tokens_reach_its_smaller_side(dtype):
    weight = quantize_nf4(_awkward_weight((96, 128), dtype), 64, 2)
    few = torch.randn(95, 128, dtype=dtype, requires_grad=True)
    many = torch.randn(2, 48, 128, dtype=dtype, requires_grad=True)  # 96 tokens = min(96, 128)
    assert not nf4_kernels.keeps_dense_weight(few, weight) and nf4_kernels.keeps_dense_weight(many, weight)
    _, saved = _saved_by_linear_nf4(few, weight)
    assert saved == []  # the 4-bit weight rides on ctx
    _, saved = _saved_by_linear_nf4(many, weight)
    assert len(saved) == 1 and type(saved[0]) is torch.Tensor and torch.equal(saved[0], dequantize_nf4(weight))
    _, saved = _saved_by_linear_nf4(many.detach(), weight)  # no input grad: nothing to keep
    assert saved == []


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float32))
def test_kept_and_redequantized_weights_give_identical_grads_equal_to_torchao(dtype, monkeypatch):
    # The same input through the kept dense weight and through a backward that dequantizes again (the
    # policy switched off): outputs and input grads equal bit for bit, and equal torchao's linear_nf4.
    weight = quantize_nf4(_awkward_weight((64, 96), dtype), 64, 2)
    g = torch.Generator().manual_seed(5)
    x = torch.randn(80, 96, dtype=dtype, generator=g)
    grad = torch.randn(80, 64, dtype=dtype, generator=g)
    results = {}
    for path in ("kept", "redequantized", "torchao"):
        monkeypatch.setattr(nf4_kernels, "keeps_dense_weight", lambda *args: path == "kept")
        xi = x.clone().requires_grad_(True)
        out = (torchao_linear_nf4 if path == "torchao" else linear_nf4)(xi, weight)
        out.backward(grad)
        results[path] = (_bits(out), _bits(xi.grad))
    for path in ("redequantized", "torchao"):
        assert all(torch.equal(a, b) for a, b in zip(results["kept"], results[path])), path


def test_kept_dense_weight_supports_double_backward():
    weight = quantize_nf4(_awkward_weight((64, 96), torch.float32), 64, 2)
    x = torch.randn(64, 96, generator=torch.Generator().manual_seed(6), requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    dense = dequantize_nf4(weight)
    (grad,) = torch.autograd.grad(torch.tanh(linear_nf4(x, weight)).sum(), x, create_graph=True)
    (grad_ref,) = torch.autograd.grad(torch.tanh(F.linear(x_ref, dense)).sum(), x_ref, create_graph=True)
    assert torch.equal(grad, grad_ref)
    (second,) = torch.autograd.grad(grad.square().sum(), x)
    (second_ref,) = torch.autograd.grad(grad_ref.square().sum(), x_ref)
    torch.testing.assert_close(second, second_ref, rtol=0, atol=0)


def test_stacked_linear_nf4_layers_share_no_stale_weights():
    # Consecutive layers reuse one dequantization buffer; each backward must still see its own weight.
    g = torch.Generator().manual_seed(4)
    w1, w2 = torch.randn(48, 64, generator=g), torch.randn(64, 48, generator=g)
    q1, q2 = quantize_nf4(w1, 64, 2), quantize_nf4(w2, 64, 2)
    x = torch.randn(3, 64, generator=g, requires_grad=True)
    out = linear_nf4(torch.tanh(linear_nf4(x, q1)), q2)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = F.linear(torch.tanh(F.linear(x_ref, dequantize_nf4(q1))), dequantize_nf4(q2))
    assert torch.equal(out, ref)
    grad = torch.randn(out.shape, generator=g)
    (x_grad,) = torch.autograd.grad(out, x, grad, create_graph=True)
    (x_ref_grad,) = torch.autograd.grad(ref, x_ref, grad, create_graph=True)
    torch.testing.assert_close(x_grad, x_ref_grad, rtol=0, atol=0)
    (x.grad,) = torch.autograd.grad(out, x, grad)
    torch.testing.assert_close(x.grad, x_ref_grad, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float32))
def test_blocks_with_subnormal_or_huge_values_match_torchao(dtype):
    # bf16's vector rounding instruction flushes subnormals: blocks whose scale is tiny must still match.
    g = torch.Generator().manual_seed(3)
    magnitudes = torch.logspace(-45, 38, 64 * 4, dtype=torch.float64).clamp(max=torch.finfo(dtype).max / 4)
    w = (torch.randn(64 * 4, 64, generator=g, dtype=torch.float64) * magnitudes[:, None]).to(dtype)
    _assert_roundtrip_matches_torchao(w, 64, 4)


def test_small_weights_take_the_c_kernels(backend, monkeypatch):
    # No size threshold: a 64 x 64 weight is quantized and dequantized by the C kernels when they are on.
    calls = []
    for name in ("quantize_blocks", "dequantize_blocks"):
        real = getattr(nf4_c, name)
        monkeypatch.setattr(nf4_c, name, lambda *args, _real=real, _name=name, **kw: calls.append(_name) or _real(*args, **kw))
    _assert_roundtrip_matches_torchao(_awkward_weight((64, 64), torch.bfloat16), 64, 64)
    assert calls == (["quantize_blocks", "dequantize_blocks"] if backend == "c" else [])


@pytest.mark.parametrize("dtype", DTYPES)
def test_compiled_dequantize_is_one_opaque_op_on_the_kernels_path(backend, dtype, monkeypatch):
    # torch.compile turns the C kernels off while it traces; dequantization must not be traced into torch ops
    # (inductor's table lookup ran ~40x slower than the C pass at a 7B MLP weight), but kept as one op that
    # runs the C kernel (or, with them off, the torch ops) when the graph runs.
    calls, graphs = [], []
    real = nf4_c.dequantize_blocks
    monkeypatch.setattr(nf4_c, "dequantize_blocks", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    weight = _awkward_weight((128, 64), dtype)
    compiled = torch.compile(dequantize_nf4, backend=lambda gm, _: graphs.append(gm) or gm.forward, fullgraph=True)
    got = compiled(quantize_nf4(weight, 64, 32))
    assert torch.equal(_bits(got), _bits(to_nf4(weight, 64, 32).get_original_weight()))
    (graph,) = graphs
    assert [n.target for n in graph.graph.nodes if n.op == "call_function"] == [torch.ops.torchtune_lite.dequantize_nf4.default]
    assert calls == ([1] if backend == "c" else [])
