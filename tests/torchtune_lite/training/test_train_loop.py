"""shift_labels, Progress, and TrainLoop's step (token-weighted loss, gradient accumulation, clipping, FSDP2
gradient sync) against gradients computed by hand with F.cross_entropy on one batch."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F

from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.loss import IGNORE_INDEX, shift_labels
from torchtune_lite.training.train_loop import LoopSettings, Progress, TrainLoop


def test_shift_labels():
    labels = torch.tensor([[1, 2, 3, 4], [-100, -100, 7, 8]])
    assert shift_labels(labels).tolist() == [[2, 3, 4, -100], [-100, 7, 8, -100]]
    assert IGNORE_INDEX == -100


def test_shift_labels_matches_next_token_targets():
    tokens = torch.randint(0, 50, (3, 9))
    shifted = shift_labels(tokens.clone())
    assert torch.equal(shifted[:, :-1], tokens[:, 1:])
    assert (shifted[:, -1] == -100).all() and shifted.dtype == tokens.dtype


def test_progress_round_trip():
    progress = Progress(epoch=2, step_in_epoch=7, global_step=31)
    buffer = io.BytesIO()
    torch.save(progress.state_dict(), buffer)
    buffer.seek(0)
    restored = Progress()
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored == progress
    restored.load_state_dict({"epoch": torch.tensor(1), "step_in_epoch": 0, "global_step": 5})
    assert restored == Progress(1, 0, 5) and isinstance(restored.epoch, int)


# ---------------------------------------------------------------- TrainLoop against a hand-computed step
SHAPE = dict(vocab_size=64, num_layers=2, num_heads=4, num_kv_heads=2, embed_dim=32, intermediate_dim=48, max_seq_len=32)


def _model() -> torch.nn.Module:
    from torchtune_lite.models.llama2 import llama2

    torch.manual_seed(0)
    return llama2(**SHAPE)


def _padded_batch(lengths: list[int], seed: int, width: int = None) -> dict[str, torch.Tensor]:
    """Samples of unequal `lengths`, right-padded to `width` (default: the longest) with ignored labels."""
    g = torch.Generator().manual_seed(seed)
    width = width or max(lengths)
    tokens = torch.zeros(len(lengths), width, dtype=torch.long)
    labels = torch.full((len(lengths), width), IGNORE_INDEX)
    for row, n in enumerate(lengths):
        tokens[row, :n] = torch.randint(1, 64, (n,), generator=g)
        labels[row, :n] = tokens[row, :n]
        labels[row, : n // 3] = IGNORE_INDEX  # a masked prompt, as SFT data has
    return {"tokens": tokens, "labels": labels}


def _one_batch(batches: list[dict]) -> dict[str, torch.Tensor]:
    """The micro-batches' samples as one batch, padded to the longest (right padding changes nothing)."""
    width = max(b["tokens"].shape[1] for b in batches)
    pad = lambda t, value: F.pad(t, (0, width - t.shape[1]), value=value)  # noqa: E731
    return {"tokens": torch.cat([pad(b["tokens"], 0) for b in batches]),
            "labels": torch.cat([pad(b["labels"], IGNORE_INDEX) for b in batches])}


def _reference_grads(model: torch.nn.Module, batch: dict) -> tuple[float, dict[str, torch.Tensor]]:
    """Token-mean next-token cross-entropy of one batch and its gradients, with F.cross_entropy on the logits."""
    model.zero_grad(set_to_none=True)
    logits = model(batch["tokens"])[:, :-1]
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch["labels"][:, 1:].reshape(-1), ignore_index=IGNORE_INDEX)
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()}


class _Batches:
    """The loader interface TrainLoop reads: a length, iteration, and no generator to reseed."""

    generator = None

    def __init__(self, batches: list[dict]) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


class _Metrics:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def log_dict(self, metrics: dict, step: int) -> None:
        self.rows.append({"step": step, **metrics})


def _one_loop_step(model, batches, accum: int, clip=None, world_size: int = 1) -> tuple[_Metrics, dict[str, torch.Tensor]]:
    """Runs one TrainLoop optimizer step with SGD(lr=1): each parameter moves by exactly minus its gradient."""
    before = {n: _full(p).clone() for n, p in model.named_parameters()}
    metrics = _Metrics()
    loop = TrainLoop(
        model=model, loss_fn=ChunkedCrossEntropyLoss(num_output_chunks=2), optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
        lr_scheduler=None, dataloader=_Batches(batches), sampler=None, trainable_params=list(model.parameters()),
        device=torch.device("cpu"), settings=LoopSettings(gradient_accumulation_steps=accum, clip_grad_norm=clip, log_peak_memory_stats=False),
        metric_logger=metrics, save_checkpoint=lambda progress, end: None, world_size=world_size,
    )
    loop.run()
    return metrics, {n: before[n] - _full(p) for n, p in model.named_parameters()}


def _full(p: torch.Tensor) -> torch.Tensor:
    return p.full_tensor().detach() if hasattr(p, "full_tensor") else p.detach()


MICRO_LENGTHS = [[5, 11], [16, 3], [9, 9]]  # 3 micro-batches of 2 samples, padded to 11, 16 and 9


def test_accumulated_step_equals_one_batch_k_times_larger():
    torch.set_num_threads(1)
    micro = [_padded_batch(lengths, seed=i) for i, lengths in enumerate(MICRO_LENGTHS)]
    expected_loss, expected = _reference_grads(_model(), _one_batch(micro))
    metrics, update = _one_loop_step(_model(), micro, accum=3)
    assert [r["step"] for r in metrics.rows] == [1]
    assert metrics.rows[0]["loss"] == pytest.approx(expected_loss, rel=1e-6)
    for name, grad in expected.items():
        torch.testing.assert_close(update[name], grad, rtol=1e-6, atol=1e-6, msg=name)
    total_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in expected.values()]))
    assert metrics.rows[0]["grad_norm"] == pytest.approx(total_norm.item(), rel=1e-5)


def test_clipping_scales_the_step_to_the_max_norm():
    torch.set_num_threads(1)
    micro = [_padded_batch(lengths, seed=i) for i, lengths in enumerate(MICRO_LENGTHS)]
    _, expected = _reference_grads(_model(), _one_batch(micro))
    norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in expected.values()]))
    metrics, update = _one_loop_step(_model(), micro, accum=3, clip=0.1)
    assert norm > 0.1 and metrics.rows[0]["grad_norm"] == pytest.approx(norm.item(), rel=1e-5)  # logged before clipping
    for name, grad in expected.items():
        torch.testing.assert_close(update[name], grad * (0.1 / (norm + 1e-6)), rtol=1e-5, atol=1e-6, msg=name)


def _sharded_accumulated_step(rank: int, world_size: int, accum: int) -> dict:
    """Each rank's own micro-batches through FSDP2 and TrainLoop; counts the gradient reduce-scatters."""
    import torch.distributed as dist

    from torchtune_lite.modules.transformer import TransformerDecoderLayer
    from torchtune_lite.training.distributed import shard_model

    calls = []

    def counting(collective):
        def call(*args, **kwargs):
            calls.append(collective.__name__)
            return collective(*args, **kwargs)
        return call

    # Spies on the real collective FSDP2 reduces gradients with (its name differs between torch versions).
    for name in ("reduce_scatter_tensor", "reduce_scatter_single"):
        if hasattr(dist, name):
            setattr(dist, name, counting(getattr(dist, name)))
    model = _model()
    shard_model(model, (TransformerDecoderLayer,), torch.device("cpu"))
    micro = [_padded_batch(lengths, seed=10 * rank + i) for i, lengths in enumerate(MICRO_LENGTHS[:accum])]
    _, update = _one_loop_step(model, micro, accum=accum, world_size=world_size)
    return {"update": update, "reduce_scatters": len(calls)}


def test_two_ranks_accumulating_equal_one_device_on_all_their_data_and_reduce_once_per_step():
    from tests.torchtune_lite.training.ranks import run_on_ranks

    torch.set_num_threads(1)
    results = run_on_ranks(2, _sharded_accumulated_step, 2)
    everything = [_padded_batch(lengths, seed=10 * rank + i) for rank in range(2) for i, lengths in enumerate(MICRO_LENGTHS[:2])]
    _, expected = _reference_grads(_model(), _one_batch(everything))
    for name, grad in expected.items():
        torch.testing.assert_close(results[0]["update"][name], grad, rtol=1e-6, atol=1e-6, msg=name)
    # gradients are reduce-scattered once per FSDP unit for the step (3 units: 2 layers and the root), not per micro-batch
    assert results[0]["reduce_scatters"] == 3


class _NaNOnCall(ChunkedCrossEntropyLoss):
    """The real loss, made NaN on one call (as a blown-up model would give)."""

    def __init__(self, bad_call: int) -> None:
        super().__init__(num_output_chunks=1)
        self.calls, self.bad_call = 0, bad_call

    def forward(self, *args):
        self.calls += 1
        loss_sum, n = super().forward(*args)
        return (loss_sum * float("nan"), n) if self.calls == self.bad_call else (loss_sum, n)


def test_a_nan_between_logged_steps_is_reported_at_its_own_step_and_nothing_after_it_is_logged():
    from torchtune_lite.training.train_loop import NonFiniteLossError

    model = _model()
    metrics, saves = _Metrics(), []
    loop = TrainLoop(
        model=model, loss_fn=_NaNOnCall(bad_call=2), optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        lr_scheduler=None, dataloader=_Batches([_padded_batch([6, 4], seed=i) for i in range(6)]), sampler=None,
        trainable_params=list(model.parameters()), device=torch.device("cpu"),
        settings=LoopSettings(log_every_n_steps=3, log_peak_memory_stats=False), metric_logger=metrics,
        save_checkpoint=lambda progress, end: saves.append(progress.global_step),
    )
    with pytest.raises(NonFiniteLossError, match=r"^loss is nan at step 2 \(epoch_0\); stopping"):
        loop.run()
    assert metrics.rows == [] and saves == []  # step 3's sync point found it before logging or saving
