"""The reference is the policy's own weights: adapters off for a fresh adapter, the starting adapter swapped
in otherwise; the parameters come back unchanged, and only the policy pass carries gradients."""

from __future__ import annotations

import pytest
import torch

from torchtune_lite.models.llama2 import llama2, lora_llama2
from torchtune_lite.modules.peft import get_adapter_params, set_trainable_params
from torchtune_lite.training.completion_logps import completion_logps
from torchtune_lite.training.loss import IGNORE_INDEX, ChunkedCrossEntropyLoss
from torchtune_lite.training.preference_loss import PreferenceLoss
from torchtune_lite.training.preference_step import PreferenceObjective, ReferencePolicy

SIZES = dict(vocab_size=64, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, intermediate_dim=48, max_seq_len=32)


def _models():
    torch.manual_seed(0)
    lora = lora_llama2(["q_proj", "v_proj"], lora_rank=4, lora_alpha=8.0, **SIZES)
    base = llama2(**SIZES)
    base.load_state_dict({k: v for k, v in lora.state_dict().items() if ".lora_" not in k})
    with torch.no_grad():
        for param in get_adapter_params(lora).values():
            param.normal_(0, 0.2)  # a non-zero adapter, so policy and base differ
    set_trainable_params(lora, get_adapter_params(lora))
    return lora, base


def _batch():
    g = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, 64, (4, 10), generator=g)  # 2 pairs: rows 0-1 chosen, 2-3 rejected
    labels = tokens.clone()
    labels[:, :4] = IGNORE_INDEX  # the prompt
    labels[1, 8:] = IGNORE_INDEX  # padding
    return {"tokens": tokens, "labels": labels}


def test_fresh_adapter_reference_is_the_base():
    lora, base = _models()
    batch, loss_fn = _batch(), ChunkedCrossEntropyLoss()
    with torch.no_grad(), ReferencePolicy(lora).active():
        reference = completion_logps(lora, batch["tokens"], batch["labels"], loss_fn)
    with torch.no_grad():
        expected = completion_logps(base, batch["tokens"], batch["labels"], loss_fn)
        policy = completion_logps(lora, batch["tokens"], batch["labels"], loss_fn)
    torch.testing.assert_close(reference.total, expected.total)
    assert not torch.allclose(policy.total, expected.total)  # adapters are back on after the block
    assert reference.num_tokens.tolist() == [6, 4, 6, 6]  # labels 4..9 (4..7 in row 1), each predicted from the token before


def test_start_adapter_reference_survives_training_and_restores_parameters():
    lora, _ = _models()
    batch, loss_fn = _batch(), ChunkedCrossEntropyLoss()
    with torch.no_grad():
        at_start = completion_logps(lora, batch["tokens"], batch["labels"], loss_fn)
    reference = ReferencePolicy(lora, from_start_adapter=True)
    with torch.no_grad():  # a training step moves the adapter
        for param in get_adapter_params(lora).values():
            param.add_(0.1)
    trained = {k: v.detach().clone() for k, v in get_adapter_params(lora).items()}
    with torch.no_grad(), reference.active():
        ref = completion_logps(lora, batch["tokens"], batch["labels"], loss_fn)
    torch.testing.assert_close(ref.total, at_start.total)
    assert all(torch.equal(get_adapter_params(lora)[k], v) for k, v in trained.items())


def test_only_the_policy_pass_carries_gradients():
    lora, _ = _models()
    objective = PreferenceObjective(PreferenceLoss("dpo", beta=0.5), ReferencePolicy(lora))
    loss_sum, pairs = objective(lora, _batch(), torch.device("cpu"))
    assert int(pairs) == 2
    loss_sum.backward()
    grads = {name: p.grad for name, p in lora.named_parameters() if p.grad is not None}
    assert grads and set(grads) == set(get_adapter_params(lora))
    assert all(g.abs().sum() > 0 for name, g in grads.items() if "lora_b" in name)
    # rewards are beta * (policy - reference) per pair, so a non-zero adapter gives non-zero rewards
    first = objective.pop_metrics()
    assert set(first) == {"rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins", "logps/chosen", "logps/rejected"}
    assert first["rewards/chosen"] != 0 and first["rewards/margins"] == pytest.approx(first["rewards/chosen"] - first["rewards/rejected"])
    objective(lora, _batch(), torch.device("cpu"))  # the window restarts: the same batch gives the same means
    assert objective.pop_metrics() == pytest.approx(first) and objective.pop_metrics() == {}
