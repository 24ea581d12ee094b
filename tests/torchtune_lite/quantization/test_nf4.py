"""NF4 kernels against torchao's reference implementation, bit for bit."""

import pytest
import torch
import torch.nn.functional as F

from torchtune_lite._torchao import NF4Tensor, to_nf4
from torchtune_lite.quantization import dequantize_nf4, linear_nf4, nf4_block_sizes, quantize_nf4

FIELDS = ("quantized_data", "quantized_scalers", "quantization_factor", "scaler_mean", "nf4")
DTYPES = (torch.bfloat16, torch.float32, torch.float16)


def _assert_same_nf4(ours: NF4Tensor, ref: NF4Tensor) -> None:
    for field in FIELDS:
        a, b = getattr(ours, field), getattr(ref, field)
        assert a.dtype == b.dtype and a.shape == b.shape, field
        assert torch.equal(a, b), field
    assert (ours.block_size, ours.n_blocks, ours.scaler_block_size) == (ref.block_size, ref.n_blocks, ref.scaler_block_size)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype


def _weight(shape, dtype, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * 0.02
    w = w.to(dtype)
    flat = w.view(-1)
    flat[:64] = 0  # a constant (all-zero) block: 0/0 in the scaling step
    flat[64:80] = 0.5  # exact ties between codes after scaling
    flat[80] = -flat[64:128].abs().max() * 3  # a block whose extreme is negative
    flat[200] = torch.finfo(dtype).max / 4
    return w


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(64, 128), (48, 96), (6, 40), (1024,)])
def test_quantize_and_dequantize_match_torchao(dtype, shape):
    numel = torch.Size(shape).numel()
    sizes = nf4_block_sizes(numel)
    assert sizes is not None
    w = _weight(shape, dtype)
    ref = to_nf4(w, *sizes)
    ours = quantize_nf4(w, *sizes)
    _assert_same_nf4(ours, ref)
    expected = ref.get_original_weight()
    got = dequantize_nf4(ref)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    # equal including NaNs from the all-zero block (bitwise comparison)
    assert torch.equal(got.view(-1).view(torch.uint8), expected.contiguous().view(-1).view(torch.uint8))


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float16))
def test_every_16bit_scaled_value_gets_torchaos_code(dtype):
    # Build a weight whose blocks scale to every finite value in [-1, 1] of the dtype: block absmax 1.
    values = torch.arange(1 << 16, dtype=torch.int32).to(torch.uint16).view(dtype)
    values = values[values.abs() <= 1]
    n = values.numel() // 62 * 62
    blocks = values[:n].view(-1, 62)
    w = torch.cat([blocks, torch.ones(blocks.shape[0], 1, dtype=dtype), -torch.ones(blocks.shape[0], 1, dtype=dtype)], 1)
    w = w[: w.shape[0] // 2 * 2]
    _assert_same_nf4(quantize_nf4(w, 64, 2), to_nf4(w, 64, 2))


def test_fp32_thresholds_near_code_midpoints():
    nf4 = torch.tensor([-1.0, -0.6962, -0.5251, -0.3949, -0.2844, -0.1848, -0.0911, 0.0, 0.0796, 0.1609, 0.2461, 0.3379, 0.4407, 0.5626, 0.7230, 1.0])
    mids = (nf4[1:] + nf4[:-1]) / 2
    near = torch.cat([mids, torch.nextafter(mids, torch.tensor(2.0)), torch.nextafter(mids, torch.tensor(-2.0)), nf4])
    row = torch.cat([near, torch.ones(64 - near.numel())])  # absmax 1: scaled values are the values themselves
    w = torch.stack([row, -row])
    _assert_same_nf4(quantize_nf4(w, 64, 2), to_nf4(w, 64, 2))


@pytest.mark.parametrize("numel", [4096 * 4096, 4096 * 11008, 32000 * 4096, 4096, 96, 6, 7, 1000, 1026, 2 * 3 * 5 * 7])
def test_block_sizes_are_accepted_by_torchao(numel):
    sizes = nf4_block_sizes(numel)
    if numel in (4096 * 4096, 4096 * 11008, 32000 * 4096):
        assert sizes == (64, 256)
    if sizes is None:
        return
    bs, sbs = sizes
    assert numel % bs == 0 and (numel // bs) % sbs == 0 and numel % 2 == 0 and bs >= 2 and sbs >= 2
    if numel <= 4096:  # check torchao really accepts it (small only, to stay fast)
        w = torch.randn(numel)
        _assert_same_nf4(quantize_nf4(w, bs, sbs), to_nf4(w, bs, sbs))


def test_block_sizes_none_for_odd_numel():
    assert nf4_block_sizes(7) is None
    assert nf4_block_sizes(0) is None


def test_bad_block_sizes_raise_value_error():
    with pytest.raises(ValueError, match="nf4_block_sizes"):
        quantize_nf4(torch.randn(8, 8), 64, 256)


@pytest.mark.parametrize("dtype", (torch.bfloat16, torch.float32))
def test_linear_nf4_forward_and_input_grad(dtype):
    torch.manual_seed(0)
    w = quantize_nf4(torch.randn(32, 64).to(dtype), 64, 2)
    x = torch.randn(3, 5, 64, dtype=dtype, requires_grad=True)
    out = linear_nf4(x, w)
    dense = dequantize_nf4(w)
    x_ref = x.detach().clone().requires_grad_(True)
    ref = F.linear(x_ref, dense)
    assert torch.equal(out, ref)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(x.grad, x_ref.grad)


def test_linear_nf4_saves_no_high_precision_weight():
    w = quantize_nf4(torch.randn(128, 64, dtype=torch.bfloat16), 64, 2)
    x = torch.randn(4, 64, dtype=torch.bfloat16, requires_grad=True)
    saved = []

    def pack(t):
        saved.append(t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = linear_nf4(x, w)
    for t in saved:
        assert isinstance(t, NF4Tensor) or t.numel() != w.numel()
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
