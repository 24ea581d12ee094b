"""The training loop every recipe shares.

A recipe builds the pieces (model, loss, optimizer, data) and hands them to `TrainLoop`; the loop owns
what is the same for every fine-tune: label shifting, token-weighted gradient accumulation, clipping,
the progress bar, metric logging, checkpoint cadence, resuming mid-epoch, stopping on a non-finite loss,
and stopping cleanly on SIGINT/SIGTERM. What differs between recipes (which parameters train, what a
checkpoint holds, how tensors are reduced across ranks) comes in through the constructor.
"""

from __future__ import annotations

import functools
import math
import signal
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
import torch.distributed as dist
from tqdm import tqdm

from torchtune_lite.progress_bars import progress_bar
from torchtune_lite.training.compile import uncompiled
from torchtune_lite.training.data_loading import batches_per_epoch, epoch_batches
from torchtune_lite.training.distributed import max_over_ranks
from torchtune_lite.training.evaluation import evaluate_loss
from torchtune_lite.training.gradients import clip_grad_norm_, scale_grads
from torchtune_lite.training.loss import forward_loss
from torchtune_lite.training.memory import get_memory_stats

Forward = Callable[[torch.nn.Module, dict, torch.device], tuple[torch.Tensor, torch.Tensor]]


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or inf; the run stops and keeps its last good checkpoint."""


class TrainingInterrupted(Exception):
    """SIGINT/SIGTERM arrived; a resumable checkpoint was written. `exit_code` is 130 or 143."""

    def __init__(self, signum: int) -> None:
        self.exit_code = 128 + signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


@dataclass
class LoopSettings:
    epochs: int = 1
    max_steps_per_epoch: Optional[int] = None
    gradient_accumulation_steps: int = 1
    clip_grad_norm: Optional[float] = None
    log_every_n_steps: int = 1
    save_every_n_steps: Optional[int] = None
    log_peak_memory_stats: bool = True
    run_val_every_n_steps: Optional[int] = None  # also after the last step; None: only after the last step
    max_val_batches: Optional[int] = None

    def steps_per_epoch(self, num_batches: Optional[int]) -> int:
        """Optimizer steps in an epoch of `num_batches` micro-batches (None: a stream of unknown length)."""
        if num_batches is None:
            if self.max_steps_per_epoch is None:
                raise ValueError("a streamed data set (dataset.streaming=True) has no length: set max_steps_per_epoch "
                                 "to the steps an epoch should run")
            return self.max_steps_per_epoch
        steps = num_batches // self.gradient_accumulation_steps
        return steps if self.max_steps_per_epoch is None else min(steps, self.max_steps_per_epoch)


@dataclass
class Progress:
    """Where training stands, in optimizer steps. Saved in the recipe state and restored on resume."""

    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch, "global_step": self.global_step}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step_in_epoch, self.global_step = (
            int(state["epoch"]), int(state["step_in_epoch"]), int(state["global_step"])
        )


class TrainLoop:
    """Runs epochs of optimizer steps. `save_checkpoint(progress, end_of_epoch)` is the recipe's."""

    def __init__(
        self,
        *,
        model: torch.nn.Module,
        loss_fn: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler: Optional[torch.optim.lr_scheduler.LRScheduler],
        dataloader: Iterable,
        sampler,
        trainable_params: list[torch.nn.Parameter],
        device: torch.device,
        settings: LoopSettings,
        metric_logger,
        save_checkpoint: Callable[[Progress, bool], None],
        progress: Optional[Progress] = None,
        is_rank_zero: bool = True,
        world_size: int = 1,
        val_dataloader: Optional[Iterable] = None,
        after_first_step: Callable[[], None] = lambda: None,
        forward: Optional[Forward] = None,
        extra_metrics: Callable[[], dict[str, float]] = dict,
    ) -> None:
        self.model, self.loss_fn = model, loss_fn
        self.optimizer, self.lr_scheduler = optimizer, lr_scheduler
        self.dataloader, self.sampler = dataloader, sampler
        self.val_dataloader = val_dataloader
        self.trainable_params = trainable_params
        self.device, self.settings = device, settings
        self.metric_logger, self.save_checkpoint = metric_logger, save_checkpoint
        self.progress = progress or Progress()
        self.is_rank_zero, self.world_size = is_rank_zero, world_size
        self._signal = None
        self._after_first_step: Optional[Callable[[], None]] = after_first_step
        # (model, batch, device) -> (summed loss, how many it is summed over): the SFT token loss by default;
        # another objective (preference tuning) plugs in here and reports its own metrics via extra_metrics.
        self.forward: Forward = forward or functools.partial(_token_loss, loss_fn)
        self.extra_metrics = extra_metrics
        self.step_seconds: list[float] = []  # wall time of each optimizer step run by this process

    @property
    def steps_per_epoch(self) -> int:
        return self.settings.steps_per_epoch(batches_per_epoch(self.dataloader))

    def run(self) -> None:
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the data set gives {len(self.dataloader)} batches per epoch, fewer than "
                f"gradient_accumulation_steps={self.settings.gradient_accumulation_steps}: "
                "lower batch_size or gradient_accumulation_steps, or add data"
            )
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        # One bar for the whole run (its ETA is the run's), closed on any exit so an error line never lands in it.
        bar = progress_bar(total=self.settings.epochs * self.steps_per_epoch, initial=self.progress.global_step,
                           enabled=self.is_rank_zero, unit="step", desc="Training")
        try:
            with bar:
                while self.progress.epoch < self.settings.epochs:
                    self._run_epoch_steps(bar)
                    self.progress.epoch += 1
                    self.progress.step_in_epoch = 0
                    self.save_checkpoint(self.progress, True)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def _on_signal(self, signum, frame) -> None:
        # Finish the current step, save, then stop: never leave a half-updated model behind.
        self._signal = signum

    def _batches_for_epoch(self):
        accum = self.settings.gradient_accumulation_steps
        # Resuming mid-epoch replays the sampler's order and skips what earlier steps consumed.
        return epoch_batches(
            self.dataloader,
            self.sampler,
            self.progress.epoch,
            skip_batches=self.progress.step_in_epoch * accum,
            max_batches=self.steps_per_epoch * accum,
        )

    def _run_epoch_steps(self, pbar: tqdm) -> None:
        s = self.settings
        accum = s.gradient_accumulation_steps
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=self.device)
        num_tokens = torch.zeros((), device=self.device, dtype=torch.long)
        window = _LogWindow(self.device)
        t0 = time.perf_counter()
        for i, batch in enumerate(self._batches_for_epoch(), start=1):
            # Under FSDP2, gradients are reduce-scattered only after the step's last micro-batch; the
            # others accumulate locally (otherwise every micro-batch pays a full gradient reduction).
            _set_gradient_sync(self.model, i % accum == 0)
            batch_loss, batch_tokens = self._forward_backward(batch)
            loss_sum += batch_loss.detach()
            num_tokens += batch_tokens
            if i % accum:
                continue

            loss, grad_norm, tokens, stop = self._optimizer_step(loss_sum, num_tokens)
            if self._after_first_step is not None:
                self._after_first_step()
                self._after_first_step = None
            seconds = time.perf_counter() - t0
            self.step_seconds.append(seconds)
            self.progress.step_in_epoch += 1
            self.progress.global_step += 1
            step = self.progress.global_step
            window.add(step, self.progress.epoch, loss, tokens, seconds)
            pbar.update(1)
            loss_sum.zero_()
            num_tokens.zero_()

            last_step = self.progress.step_in_epoch == self.steps_per_epoch
            every = s.run_val_every_n_steps
            final = last_step and self.progress.epoch + 1 == s.epochs
            validate = self.val_dataloader is not None and ((every and step % every == 0) or final)
            save = bool(s.save_every_n_steps and step % s.save_every_n_steps == 0 and not last_step)
            log = step % s.log_every_n_steps == 0
            if not (log or stop or validate or save or last_step):
                t0 = time.perf_counter()
                continue  # no host sync on this step: the device runs ahead into the next one

            # A sync point: the losses since the last one are read (one transfer), checked, and logged.
            losses = window.losses_checked()
            # Epochs count from 0 on screen as in the checkpoint folders (epoch_0 is the first epoch's).
            pbar.set_postfix_str(f"epoch_{self.progress.epoch} step {step} loss {losses[-1]:.4f}", refresh=False)
            if log:
                metrics = {
                    "loss": losses[-1],
                    "lr": self.optimizer.param_groups[0]["lr"],
                    # what the loss is averaged over, per second: tokens for SFT, pairs for preference tuning
                    f"{getattr(self.forward, 'count_unit', 'tokens')}_per_second": window.tokens_per_second(),
                    "grad_norm": float(grad_norm),
                }
                metrics.update(self.extra_metrics())
                if s.log_peak_memory_stats:
                    metrics.update(max_over_ranks(get_memory_stats(self.device), self.device))
                if self.is_rank_zero:
                    self.metric_logger.log_dict(metrics, step=step)
            window.clear()
            stop = stop or (self.world_size > 1 and bool(stop_flag_over_ranks(self._signal, self.device)))
            if validate:  # before a stop too: a resumed run starts after this step and would never validate it
                self.log_validation(step)
            if stop:
                self.save_checkpoint(self.progress, False)
                raise TrainingInterrupted(self._signal or signal.SIGTERM)
            if save:
                self.save_checkpoint(self.progress, False)
            t0 = time.perf_counter()  # validation and saving are not part of the next step's time

    def validation_loss(self) -> float:
        """Token-weighted mean loss over the validation loader, over all ranks' tokens."""
        self.extra_metrics()  # close the training window: what validation adds is logged as val_*
        with uncompiled():
            result = evaluate_loss(
                self.model, self.val_dataloader, device=self.device, forward=self.forward, max_batches=self.settings.max_val_batches
            )
        if self.world_size == 1:
            return result.loss
        stats = torch.tensor([result.loss * result.num_tokens, result.num_tokens], dtype=torch.float64, device=self.device)
        dist.all_reduce(stats)
        return float(stats[0] / stats[1])

    def log_validation(self, step: int) -> None:
        val_loss = self.validation_loss()
        extra = {f"val_{name}": value for name, value in self.extra_metrics().items()}
        if self.is_rank_zero:
            self.metric_logger.log_dict({"val_loss": val_loss, **extra}, step=step)

    def _forward_backward(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        loss_sum, num_tokens = self.forward(self.model, batch, self.device)
        # Unnormalized backward: gradients are divided by the step's token count in _optimizer_step,
        # so every token weighs the same however tokens are spread over micro-batches (and ranks).
        loss_sum.backward()
        return loss_sum, num_tokens

    def _optimizer_step(
        self, loss_sum: torch.Tensor, num_tokens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]:
        """One optimizer step over the accumulated gradients. Returns the step's mean loss, grad norm and
        token count as device tensors (read only at sync points), and whether a signal asks to stop here.

        Nothing here waits for the device: a NaN/inf loss is caught at the next sync point, which names
        the step it first appeared at and stops before anything is logged or saved past it.
        """
        if self.world_size > 1:
            # FSDP averages gradients over ranks; undo that so we divide by the global token count.
            stats = torch.stack([loss_sum.float(), num_tokens.float()])
            dist.all_reduce(stats)
            loss_sum, num_tokens = stats[0], stats[1]
        total = num_tokens.float().clamp(min=1)
        scale_grads(self.trainable_params, self.world_size / total)
        grad_norm = clip_grad_norm_(self.trainable_params, self.settings.clip_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.lr_scheduler is not None:
            self.lr_scheduler.step()
        # One device: stop at once on a signal. Several ranks agree at the next sync point instead, so
        # they all stop (and save) after the same step.
        stop = self.world_size == 1 and self._signal is not None
        return loss_sum.float() / total, grad_norm, num_tokens, stop


def _token_loss(loss_fn: torch.nn.Module, model: torch.nn.Module, batch: dict, device: torch.device):
    return forward_loss(model, loss_fn, batch, device)


def _set_gradient_sync(model: torch.nn.Module, enabled: bool) -> None:
    if hasattr(model, "set_requires_gradient_sync"):  # an FSDP2-sharded model
        model.set_requires_gradient_sync(enabled)


def stop_flag_over_ranks(signum: Optional[int], device: torch.device) -> torch.Tensor:
    """1 if a stop signal reached any rank (the ranks must all stop after the same step), else 0."""
    flag = torch.tensor(float(signum is not None), device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return flag


class _LogWindow:
    """The steps since the last sync point: their losses stay on the device until read all at once."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.clear()

    def clear(self) -> None:
        self.steps: list[tuple[int, int]] = []  # (global step, epoch)
        self.losses: list[torch.Tensor] = []
        self.tokens = torch.zeros((), device=self.device)
        self.seconds = 0.0

    def add(self, step: int, epoch: int, loss: torch.Tensor, tokens: torch.Tensor, seconds: float) -> None:
        self.steps.append((step, epoch))
        self.losses.append(loss.detach())
        self.tokens += tokens
        self.seconds += seconds

    def losses_checked(self) -> list[float]:
        """The window's losses as floats; raises NonFiniteLossError naming the first NaN/inf step."""
        values = torch.stack(self.losses).tolist()
        for (step, epoch), loss in zip(self.steps, values):
            if not math.isfinite(loss):
                raise NonFiniteLossError(
                    f"loss is {loss} at step {step} (epoch_{epoch}); "
                    "stopping and keeping the last good checkpoint: lower the learning rate, use dtype=fp32, "
                    "or check the data"
                )
        return values

    def tokens_per_second(self) -> float:
        return float(self.tokens) / max(self.seconds, 1e-9)
