"""torch.compile of layers and loss on CPU, against the eager, non-checkpointed model (fp32).

LoRA and QLoRA, each compiled with activation checkpointing and the compiled loss: the combination the
recipes run with `compile=True enable_activation_checkpointing=True`. The models are tiny (2 layers, dim 64)
and both layers share one graph, so a cold compile takes ~10-20 s on 2 shared cores and a warm one (inductor's
on-disk cache) a few seconds.
"""

import pytest
import torch

from torchtune_lite.models.llama2 import lora_llama2, qlora_llama2
from torchtune_lite.modules.peft import get_adapter_params, set_trainable_params
from torchtune_lite.modules.transformer import TransformerDecoderLayer
from torchtune_lite.training.activations import apply_activation_checkpointing
from torchtune_lite.training.compile import compile_loss, compile_model
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss

SHAPE = dict(vocab_size=64, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=64, intermediate_dim=128, max_seq_len=32)


def _adapted_model(builder) -> torch.nn.Module:
    torch.manual_seed(0)
    model = builder(["q_proj", "v_proj"], apply_lora_to_mlp=True, lora_rank=4, lora_alpha=8.0, **SHAPE)
    adapters = get_adapter_params(model)
    for name, p in adapters.items():
        if "lora_b" in name:  # nonzero, so the base's and the adapters' gradients both matter
            torch.nn.init.normal_(p, std=0.1)
    set_trainable_params(model, adapters)
    return model


def _step(model, loss_fn):
    tokens = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    labels = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    labels[0, :4] = -100  # a masked prompt
    loss_sum, n = loss_fn(model(tokens, return_hidden=True), model.output, labels)
    (loss_sum / n).backward()
    return loss_sum.detach(), {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("builder", [lora_llama2, qlora_llama2], ids=["lora", "qlora"])
def test_compiled_checkpointed_model_and_compiled_loss_match_eager(builder):
    torch.set_num_threads(1)  # the same reduction order in every run, on any machine
    torch._dynamo.reset()
    model, eager = _adapted_model(builder), _adapted_model(builder)  # same seed: same weights (NF4 has no deepcopy)
    keys = list(model.state_dict().keys())
    apply_activation_checkpointing(model, (TransformerDecoderLayer,))
    assert compile_model(model, (TransformerDecoderLayer,)) == 2
    loss_fn = compile_loss(ChunkedCrossEntropyLoss(num_output_chunks=2))
    assert list(model.state_dict().keys()) == keys  # no `_orig_mod.` prefix

    expected_loss, expected_grads = _step(eager, ChunkedCrossEntropyLoss(num_output_chunks=2))
    loss, grads = _step(model, loss_fn)
    torch.testing.assert_close(loss, expected_loss, rtol=1e-5, atol=1e-5)
    assert grads.keys() == expected_grads.keys() and len(grads) == 2 * 2 * 5  # 5 adapted linears per layer
    for name in expected_grads:
        torch.testing.assert_close(grads[name], expected_grads[name], rtol=1e-4, atol=1e-6, msg=name)


def test_no_matching_layer_is_an_error():
    with pytest.raises(ValueError, match="compile found no Conv2d"):
        compile_model(_adapted_model(lora_llama2), (torch.nn.Conv2d,))


def test_compile_seconds_is_the_first_steps_excess_over_the_later_median():
    from torchtune_lite.training.compile import compile_seconds

    assert compile_seconds([12.0, 1.0, 3.0, 2.0]) == pytest.approx(10.0)
    assert compile_seconds([1.0, 2.0, 2.0]) == 0.0  # a first step no slower than the rest compiled nothing
    assert compile_seconds([5.0]) is None


def test_compile_auto_is_on_only_for_long_runs_with_a_compiler_where_it_pays(monkeypatch):
    from torchtune_lite.training import compile as compile_mod
    from torchtune_lite.training.compile import COMPILE_AUTO_MIN_STEPS, resolve_compile

    cpu, fp32, bf16 = torch.device("cpu"), torch.float32, torch.bfloat16
    assert resolve_compile(True, 1, cpu, bf16) and not resolve_compile(False, 10**6, cpu, fp32)
    assert not resolve_compile("auto", COMPILE_AUTO_MIN_STEPS - 1, cpu, fp32)
    monkeypatch.setattr(compile_mod, "_has_cpu_compiler", lambda: True)
    assert resolve_compile("auto", COMPILE_AUTO_MIN_STEPS, cpu, fp32)
    assert not resolve_compile("auto", 10**6, cpu, bf16)  # the C kernels already fuse what inductor would
    monkeypatch.setattr(compile_mod, "_has_cpu_compiler", lambda: False)
    assert not resolve_compile("auto", 10**6, cpu, fp32)  # no C++ compiler: auto stays eager instead of failing


def test_compile_setting_accepts_auto_and_rejects_other_strings():
    import typing

    from torchtune_lite.config._validate import ConfigError, _check_value
    from torchtune_lite.training.finetune import FinetuneConfig

    hint = typing.get_type_hints(FinetuneConfig)["compile"]
    for ok in (True, False, "auto"):
        _check_value("compile", ok, hint)
    with pytest.raises(ConfigError, match="compile"):
        _check_value("compile", "yes", hint)
