import pytest
import torch
import transformers

from torchtune_lite.training.lr_schedulers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup


def _lrs(make, steps=30, **kw):
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    sched = make(opt, **kw)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


@pytest.mark.parametrize("warmup, total, cycles", [(5, 25, 0.5), (0, 20, 0.5), (3, 20, 1.5)])
def test_cosine_matches_transformers(warmup, total, cycles):
    kw = dict(num_warmup_steps=warmup, num_training_steps=total, num_cycles=cycles)
    ours = _lrs(get_cosine_schedule_with_warmup, **kw)
    assert ours == pytest.approx(_lrs(transformers.get_cosine_schedule_with_warmup, **kw), abs=1e-12)
    if warmup:
        assert ours[0] == 0.0 and ours[warmup] == pytest.approx(0.1)


def test_constant_matches_transformers():
    ours = _lrs(get_constant_schedule_with_warmup, num_warmup_steps=4, num_training_steps=30)
    assert ours == pytest.approx(_lrs(transformers.get_constant_schedule_with_warmup, num_warmup_steps=4), abs=1e-12)
    assert ours[4:] == [0.1] * 26


def test_state_dict_resume_continues_the_schedule():
    def make():
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        return opt, get_cosine_schedule_with_warmup(opt, num_warmup_steps=3, num_training_steps=12)

    opt, sched = make()
    for _ in range(5):
        opt.step()
        sched.step()
    saved_opt, saved_sched = opt.state_dict(), sched.state_dict()
    expected = []
    for _ in range(4):
        opt.step()
        sched.step()
        expected.append(opt.param_groups[0]["lr"])

    opt2, sched2 = make()
    opt2.load_state_dict(saved_opt)
    sched2.load_state_dict(saved_sched)
    resumed = []
    for _ in range(4):
        opt2.step()
        sched2.step()
        resumed.append(opt2.param_groups[0]["lr"])
    assert resumed == pytest.approx(expected)


def test_negative_warmup_is_an_error():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match="num_warmup_steps=-1"):
        get_cosine_schedule_with_warmup(opt, num_warmup_steps=-1, num_training_steps=10)
