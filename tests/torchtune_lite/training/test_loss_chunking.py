"""ChunkedCrossEntropyLoss: what the chunking must preserve (a LoRA'd output layer, token weighting) and
what it is for (no fp32 logits saved for backward). Value/gradient parity is in test_loss.py."""

import torch
import torch.nn.functional as F
from torch import nn

from torchtune_lite.modules.peft.lora import LoRALinear
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss

VOCAB, DIM = 97, 16  # a vocab size no other dimension shares, so saved logits are recognizable


def _data(batch=2, seq=10, ignore_every=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(batch, seq, DIM, generator=g)
    labels = torch.randint(0, VOCAB, (batch, seq), generator=g)
    labels[:, ::ignore_every] = -100
    return hidden, labels


def test_lora_output_layer_keeps_its_adapter():
    # The output module is called per chunk: a LoRA'd vocab projection must contribute its adapter.
    torch.manual_seed(0)
    output = LoRALinear(DIM, VOCAB, rank=4, alpha=8.0)
    nn.init.normal_(output.lora_b.weight, std=0.5)
    hidden, labels = _data()

    loss_sum, n = ChunkedCrossEntropyLoss(num_output_chunks=4, chunk_above_mb=0)(hidden, output, labels)
    (loss_sum / n).backward()
    grads = [output.lora_a.weight.grad.clone(), output.lora_b.weight.grad.clone()]
    output.zero_grad()

    ref = F.cross_entropy(output(hidden).flatten(0, 1), labels.flatten())
    ref.backward()
    torch.testing.assert_close(loss_sum / n, ref)
    torch.testing.assert_close(grads, [output.lora_a.weight.grad, output.lora_b.weight.grad])
    base_only = F.cross_entropy(F.linear(hidden, output.weight).flatten(0, 1), labels.flatten())
    assert not torch.allclose(ref, base_only)  # the adapter really changes the loss


def _saved_shapes(fn):
    shapes = []

    def pack(t):
        shapes.append(tuple(t.shape))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return shapes


def test_no_logits_are_saved_for_backward():
    torch.manual_seed(0)
    output = nn.Linear(DIM, VOCAB, bias=False)
    hidden, labels = _data(seq=16)
    hidden.requires_grad_()

    chunked = _saved_shapes(lambda: ChunkedCrossEntropyLoss(num_output_chunks=4, chunk_above_mb=0)(hidden, output, labels))
    naive = _saved_shapes(lambda: F.cross_entropy(output(hidden).float().flatten(0, 1), labels.flatten()))
    assert any(s and s[-1] == VOCAB for s in naive)  # the probe does see logits when they are saved
    assert not any(s and s[-1] == VOCAB for s in chunked), chunked


def test_token_weighted_accumulation_equals_one_big_batch():
    # Two micro-batches with different numbers of real tokens: sum / total tokens is the big batch's mean.
    torch.manual_seed(0)
    output = nn.Linear(DIM, VOCAB, bias=False)
    h_a, y_a = _data(seed=1, ignore_every=2)
    h_b, y_b = _data(seed=2, ignore_every=5)
    loss = ChunkedCrossEntropyLoss(num_output_chunks=2, chunk_above_mb=0)
    (sa, na), (sb, nb) = loss(h_a, output, y_a), loss(h_b, output, y_b)
    assert na != nb
    ref = F.cross_entropy(output(torch.cat([h_a, h_b])).flatten(0, 1), torch.cat([y_a, y_b]).flatten())
    torch.testing.assert_close((sa + sb) / (na + nb), ref)


def test_small_logits_take_the_one_matmul_path_with_the_same_result():
    # A LoRA'd output layer takes the module-calling path, where the budget picks one matmul or chunks.
    torch.manual_seed(0)
    output = LoRALinear(DIM, VOCAB, rank=4, alpha=8.0)
    hidden, labels = _data(seq=16)
    results = []
    for budget in (0, 256):  # always chunk + recompute; whole logits fit the default budget
        h = hidden.clone().requires_grad_()
        loss = ChunkedCrossEntropyLoss(num_output_chunks=4, chunk_above_mb=budget)
        saved = _saved_shapes(lambda: loss(h, output, labels))
        loss_sum, count = loss(h, output, labels)
        loss_sum.backward()
        results.append((loss_sum.detach(), count, h.grad, any(s and s[-1] == VOCAB for s in saved)))
    (chunked_sum, chunked_n, chunked_grad, chunked_saves), (whole_sum, whole_n, whole_grad, whole_saves) = results
    torch.testing.assert_close(whole_sum, chunked_sum)
    assert whole_n == chunked_n
    torch.testing.assert_close(whole_grad, chunked_grad)
    assert whole_saves and not chunked_saves  # the fast path keeps its logits; the chunked one recomputes
