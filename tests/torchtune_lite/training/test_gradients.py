import pytest
import torch

from torchtune_lite.training.gradients import clip_grad_norm_, scale_grads


def _params_with_grads():
    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(4, 3)), torch.nn.Parameter(torch.zeros(5)), torch.nn.Parameter(torch.zeros(2))]
    params[0].grad = torch.randn(4, 3, generator=g)
    params[1].grad = torch.randn(5, generator=g)
    # params[2] has no gradient (frozen or unused): ignored
    return params


def _norm(params):
    return torch.cat([p.grad.flatten() for p in params if p.grad is not None]).norm()


def test_none_only_measures():
    params = _params_with_grads()
    before = [p.grad.clone() for p in params[:2]]
    norm = clip_grad_norm_(params, None)
    torch.testing.assert_close(norm, _norm(params))
    torch.testing.assert_close([p.grad for p in params[:2]], before)


def test_clips_to_max_norm_and_returns_norm_before():
    params = _params_with_grads()
    total = _norm(params)
    norm = clip_grad_norm_(params, max_norm=0.5)
    torch.testing.assert_close(norm, total)
    torch.testing.assert_close(_norm(params), torch.tensor(0.5), rtol=1e-5, atol=1e-6)


def test_small_gradients_are_left_alone():
    params = _params_with_grads()
    before = [p.grad.clone() for p in params[:2]]
    clip_grad_norm_(params, max_norm=1e6)
    torch.testing.assert_close([p.grad for p in params[:2]], before)


def test_no_gradients_gives_zero_and_bad_max_norm_is_an_error():
    assert clip_grad_norm_([torch.nn.Parameter(torch.ones(2))], 1.0).item() == 0.0
    with pytest.raises(ValueError, match="clip_grad_norm=0"):
        clip_grad_norm_(_params_with_grads(), 0)


@pytest.mark.parametrize("scale", [0.25, torch.tensor(0.25)])
def test_scale_grads(scale):
    params = _params_with_grads()
    before = [p.grad.clone() for p in params[:2]]
    scale_grads(params, scale)
    torch.testing.assert_close([p.grad for p in params[:2]], [b * 0.25 for b in before])
    assert params[2].grad is None
