import copy

import pytest
import torch

from torchtune_lite.modules.transformer import TransformerDecoderLayer
from torchtune_lite.training.activations import apply_activation_checkpointing, is_activation_checkpointed


def _grads(model, tokens, seed=1):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # same dropout masks in both runs
    model(tokens).float().pow(2).mean().backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _num_saved(model, tokens):
    count = 0

    def pack(t):
        nonlocal count
        count += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(tokens)
    return count


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_lora_llama", "tiny_qlora_llama"])
def test_same_keys_and_same_gradients(fixture, request):
    model = request.getfixturevalue(fixture)
    model.train()
    tokens = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(0))
    keys_before = list(model.state_dict().keys())
    names_before = [n for n, _ in model.named_parameters()]
    reference = _grads(model, tokens)
    saved_before = _num_saved(model, tokens)

    assert apply_activation_checkpointing(model, (TransformerDecoderLayer,)) == 2

    assert list(model.state_dict().keys()) == keys_before
    assert [n for n, _ in model.named_parameters()] == names_before
    checkpointed = _grads(model, tokens)
    assert checkpointed.keys() == reference.keys()
    for name in reference:
        torch.testing.assert_close(checkpointed[name], reference[name], rtol=0, atol=0, msg=name)
    # the layers' internals are no longer saved for backward: far fewer saved tensors
    assert _num_saved(model, tokens) < saved_before / 2


def test_state_dict_round_trips_into_an_unwrapped_model(tiny_llama):
    fresh = copy.deepcopy(tiny_llama)
    apply_activation_checkpointing(tiny_llama, TransformerDecoderLayer)
    with torch.no_grad():
        for p in tiny_llama.parameters():
            p.add_(0.01)
    fresh.load_state_dict(tiny_llama.state_dict())  # strict: keys match exactly
    tokens = torch.randint(0, 64, (1, 8))
    torch.testing.assert_close(fresh(tokens), tiny_llama(tokens))


def test_deepcopy_runs_the_copy_not_the_original(tiny_llama):
    apply_activation_checkpointing(tiny_llama, (TransformerDecoderLayer,))
    clone = copy.deepcopy(tiny_llama)
    assert all(is_activation_checkpointed(layer) for layer in clone.layers)
    with torch.no_grad():
        for p in clone.layers.parameters():
            p.zero_()
    tokens = torch.randint(0, 64, (1, 8))
    clone_out = clone(tokens).sum()
    clone_out.backward()
    assert not torch.allclose(clone(tokens), tiny_llama(tokens))
    assert clone.layers[0].attn.q_proj.weight.grad is not None
    assert tiny_llama.layers[0].attn.q_proj.weight.grad is None


def test_applying_twice_does_not_nest(tiny_llama):
    apply_activation_checkpointing(tiny_llama, (TransformerDecoderLayer,))
    forward = tiny_llama.layers[0].forward
    assert apply_activation_checkpointing(tiny_llama, (TransformerDecoderLayer,)) == 2
    assert tiny_llama.layers[0].forward is forward


def test_no_matching_layer_is_an_error(tiny_llama):
    with pytest.raises(ValueError, match="found no Conv2d"):
        apply_activation_checkpointing(tiny_llama, (torch.nn.Conv2d,))
