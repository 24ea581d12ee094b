"""evaluate_loss against a plain cross-entropy over the same tokens."""

import math

import torch
import torch.nn.functional as F

from torchtune_lite.data import padded_collate_sft
from torchtune_lite.training.evaluation import evaluate_loss


def test_token_weighted_loss_equals_plain_cross_entropy(tiny_llama):
    torch.manual_seed(1)
    samples = []
    for n in (5, 9, 7, 12):
        tokens = torch.randint(0, 64, (n,)).tolist()
        labels = [-100] * 3 + tokens[3:]  # the first three tokens are a masked prompt
        samples.append({"tokens": tokens, "labels": labels})
    batches = [padded_collate_sft(samples[:2]), padded_collate_sft(samples[2:])]

    total, count = 0.0, 0
    with torch.no_grad():
        for sample in samples:
            logits = tiny_llama(torch.tensor([sample["tokens"]]))[0, :-1]
            targets = torch.tensor(sample["labels"][1:])
            total += F.cross_entropy(logits.float(), targets, ignore_index=-100, reduction="sum").item()
            count += int((targets != -100).sum())

    tiny_llama.train()
    result = evaluate_loss(tiny_llama, batches, device=torch.device("cpu"))
    assert result.num_tokens == count and result.num_batches == 2
    assert math.isclose(result.loss, total / count, rel_tol=1e-5)
    assert math.isclose(result.perplexity, math.exp(total / count), rel_tol=1e-5)
    assert tiny_llama.training  # mode restored
    assert evaluate_loss(tiny_llama, batches, device=torch.device("cpu"), max_batches=1).num_batches == 1
