"""torch.compile of layers and loss on CPU.

Cold-cache figures on 2 shared CPU cores (inductor builds C++ on the first step): layers only ~20 s,
plus activation checkpointing ~28 s, plus the compiled loss ~33 s; warm cache ~5 s. The unit test
compiles layers only; the full combination runs with TORCHTUNE_LITE_SLOW_TESTS=1.
"""

import copy
import os

import pytest
import torch

from torchtune_lite.modules.transformer import TransformerDecoderLayer
from torchtune_lite.training.activations import apply_activation_checkpointing
from torchtune_lite.training.compile import compile_loss, compile_model
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss


def _step(model, loss_fn):
    tokens = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(1))
    loss_sum, n = loss_fn(model(tokens, return_hidden=True), model.output, labels)
    (loss_sum / n).backward()
    return loss_sum.detach(), model.layers[0].attn.q_proj.weight.grad.clone(), model.output.weight.grad.clone()


def _check_against_eager(model, activation_checkpointing: bool, compiled_loss: bool):
    torch._dynamo.reset()
    eager = copy.deepcopy(model)
    keys = list(model.state_dict().keys())
    if activation_checkpointing:
        apply_activation_checkpointing(model, (TransformerDecoderLayer,))
    assert compile_model(model, (TransformerDecoderLayer,)) == 2
    loss_fn = ChunkedCrossEntropyLoss(num_output_chunks=2)
    if compiled_loss:
        loss_fn = compile_loss(loss_fn)
    assert list(model.state_dict().keys()) == keys  # no `_orig_mod.` prefix
    expected = _step(eager, ChunkedCrossEntropyLoss(num_output_chunks=2))
    torch.testing.assert_close(_step(model, loss_fn), expected, rtol=1e-4, atol=1e-5)


def test_compiled_layers_match_eager_and_keep_keys(tiny_llama):
    _check_against_eager(tiny_llama, activation_checkpointing=False, compiled_loss=False)


@pytest.mark.skipif(not os.environ.get("TORCHTUNE_LITE_SLOW_TESTS"), reason="~35 s cold compile; set TORCHTUNE_LITE_SLOW_TESTS=1")
def test_compiled_checkpointed_layers_and_compiled_loss_match_eager(tiny_llama):
    _check_against_eager(tiny_llama, activation_checkpointing=True, compiled_loss=True)


def test_no_matching_layer_is_an_error(tiny_llama):
    with pytest.raises(ValueError, match="compile found no Conv2d"):
        compile_model(tiny_llama, (torch.nn.Conv2d,))


def test_compile_seconds_is_the_first_steps_excess_over_the_later_median():
    from torchtune_lite.training.compile import compile_seconds

    assert compile_seconds([12.0, 1.0, 3.0, 2.0]) == pytest.approx(10.0)
    assert compile_seconds([1.0, 2.0, 2.0]) == 0.0  # a first step no slower than the rest compiled nothing
    assert compile_seconds([5.0]) is None


def test_compile_auto_is_on_only_for_long_runs_with_a_compiler(monkeypatch):
    from torchtune_lite.training import compile as compile_mod
    from torchtune_lite.training.compile import COMPILE_AUTO_MIN_STEPS, resolve_compile

    cpu = torch.device("cpu")
    assert resolve_compile(True, 1, cpu) and not resolve_compile(False, 10**6, cpu)
    assert not resolve_compile("auto", COMPILE_AUTO_MIN_STEPS - 1, cpu)
    monkeypatch.setattr(compile_mod, "_has_cpu_compiler", lambda: True)
    assert resolve_compile("auto", COMPILE_AUTO_MIN_STEPS, cpu)
    monkeypatch.setattr(compile_mod, "_has_cpu_compiler", lambda: False)
    assert not resolve_compile("auto", 10**6, cpu)  # no C++ compiler: auto stays eager instead of failing


def test_compile_setting_accepts_auto_and_rejects_other_strings():
    import typing

    from torchtune_lite.config._validate import ConfigError, _check_value
    from torchtune_lite.training.finetune import FinetuneConfig

    hint = typing.get_type_hints(FinetuneConfig)["compile"]
    for ok in (True, False, "auto"):
        _check_value("compile", ok, hint)
    with pytest.raises(ConfigError, match="compile"):
        _check_value("compile", "yes", hint)
