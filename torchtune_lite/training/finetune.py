"""The steps of a fine-tuning run, as plain functions the recipes call in their own `setup`, `train`,
`save_checkpoint` and `cleanup`.

In order: `open_run` (output folder, what to start or resume from, the seed), `load_data`, `build_model`,
`prepare_training` (memory estimate, compile, optimizer, schedule, loss, logger, resumed state, the loop), then `run_training` and, at every save, `write_checkpoint`. `run_recipe`
turns the expected ways a run ends early into exit codes. Where the processes are (one device or a process
group) is the recipe's `World` (training/world.py).
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

import psutil
import torch
from omegaconf import DictConfig, OmegaConf

from torchtune_lite import config
from torchtune_lite.checkpointing.nf4_cache import nf4_cache_path
from torchtune_lite.config import Component
from torchtune_lite.data.saved_template import template_config
from torchtune_lite.modules.peft import get_adapter_params, get_adapter_state_dict, model_adapter_config, set_trainable_params
from torchtune_lite.modules.transformer import TransformerDecoderLayer
from torchtune_lite.training.activations import apply_activation_checkpointing
from torchtune_lite.training.compile import compile_loss, compile_model, compile_seconds, resolve_compile
from torchtune_lite.training.config_checks import check_finetune_config
from torchtune_lite.training.data_loading import batches_per_epoch, build_dataloader, collate_for
from torchtune_lite.training.device import get_device
from torchtune_lite.training.distributed import broadcast_object, peer_failure_message
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.memory import format_memory_stats, get_memory_stats, reset_peak_memory_stats
from torchtune_lite.training.metric_logging import MetricLogger, StdoutLogger
from torchtune_lite.training.model_from_checkpoint import build_model_from_checkpoint
from torchtune_lite.training.optimizer_state import load_optimizer_state, optimizer_state_for_checkpoint
from torchtune_lite.training.output_dir import RECIPE_STATE_FILE, find_latest_checkpoint, prepare_output_dir
from torchtune_lite.training.precision import enable_tf32_for_fp32, get_dtype
from torchtune_lite.training.seed import get_rng_state, seed_for_run, set_rng_state, set_seed
from torchtune_lite.training.train_loop import LoopSettings, NonFiniteLossError, Progress, TrainingInterrupted, TrainLoop
from torchtune_lite.training.world import World


@dataclass(kw_only=True)
class FinetuneConfig(LoopSettings):
    """The settings every fine-tuning recipe reads; `tune validate` rejects any other top-level key. The loop's
    own settings (epochs, accumulation, clipping, logging, saving and validation cadence) are `LoopSettings`'s
    fields: the loop reads them from this object."""

    model: Component
    tokenizer: Component
    checkpointer: Component
    dataset: Component
    optimizer: Component
    output_dir: str
    loss: Optional[Component] = None
    dataset_val: Optional[Component] = None  # held-out data: `val_loss` is logged beside `loss`
    lr_scheduler: Optional[Component] = None
    metric_logger: Optional[Component] = None
    seed: Optional[int] = None
    shuffle: bool = True
    batch_size: int = 2
    resume_from_checkpoint: bool = False
    overwrite_output_dir: bool = False
    compile: Union[bool, Literal["auto"]] = False  # auto: on for runs long enough to repay compile time
    device: str = "auto"
    dtype: str = "auto"
    enable_activation_checkpointing: bool = False
    log_memory_estimate: bool = True  # print `tune estimate`'s breakdown at setup and set it beside the peak
    generate_after_training: Optional[str] = None
    max_new_tokens: int = 48
    nf4_cache_dir: Optional[str] = None  # keep the quantized base here and reuse it on the next run (one device)

    @staticmethod
    def check_values(cfg: DictConfig) -> None:
        """Ranges, files and dependencies, checked by `tune validate` and at the start of the run alike."""
        check_finetune_config(cfg)


# ---------------------------------------------------------------------------------------------- setup
def run_device(cfg: FinetuneConfig) -> torch.device:
    return get_device(cfg.device)


def on_one_device(cfg: FinetuneConfig) -> World:
    """The world of a single-device run: this process alone, on the configured device."""
    return World(run_device(cfg))


def run_dtype(cfg: FinetuneConfig, device: torch.device) -> torch.dtype:
    """The run's dtype (`auto`: bf16 where the device computes it natively), with TF32 matmuls for fp32 on CUDA."""
    dtype = get_dtype(cfg.dtype, device)
    enable_tf32_for_fp32(device, dtype)
    return dtype


@dataclass
class RunStart:
    """What a run starts from: the checkpointer (pointed at a resumed run's folder), what it loaded besides the
    model weights (which stream into the built model later), the run's seed and its dtype."""

    dtype: torch.dtype
    checkpointer: Any
    checkpoint: dict
    seed: int
    resume_dir: Optional[Path]


def whole_model_from(resume_dir: Path) -> dict:
    """Checkpointer arguments for resuming a full fine-tune: every weight from the resumed folder."""
    return {"checkpoint_dir": str(resume_dir), "checkpoint_files": None, "recipe_checkpoint": str(resume_dir / RECIPE_STATE_FILE)}


def adapter_from(resume_dir: Path) -> dict:
    """Checkpointer arguments for resuming a LoRA run: the frozen base from the original checkpoint, the
    adapter and the recipe state from the resumed folder."""
    return {"adapter_checkpoint": str(resume_dir), "recipe_checkpoint": str(resume_dir / RECIPE_STATE_FILE)}


def open_run(cfg: FinetuneConfig, world: World, resume_from: Callable[[Path], dict]) -> RunStart:
    """Prepares the output folder (rank 0), finds the checkpoint to resume from (`resume_from(folder)`: the
    checkpointer arguments that read it), loads all but the model weights, seeds the run and picks its dtype."""
    dtype = run_dtype(cfg, world.device)
    if world.is_rank_zero:
        # First, so a checkpoint that a killed save had moved aside is back before we look for the latest.
        log_dir = cfg.metric_logger.get("log_dir") if cfg.metric_logger else None
        prepare_output_dir(Path(cfg.output_dir), resume=cfg.resume_from_checkpoint, overwrite=cfg.overwrite_output_dir,
                           log_dir=Path(log_dir) if log_dir else None)
    resume_dir = broadcast_object(_latest_checkpoint(cfg) if world.is_rank_zero else None)
    overrides = resume_from(resume_dir) if resume_dir is not None else {}
    checkpointer = config.instantiate(cfg.checkpointer, **overrides)
    checkpoint = checkpointer.load_checkpoint()
    # Seeded only now: a resumed run keeps the seed it started with (its data order depends on it).
    seed = set_seed(seed_for_run(cfg.seed, checkpoint.get("recipe_state", {}).get("seed")))
    return RunStart(dtype, checkpointer, checkpoint, seed, resume_dir)


def _latest_checkpoint(cfg: FinetuneConfig) -> Optional[Path]:
    if not cfg.resume_from_checkpoint:
        return None
    latest = find_latest_checkpoint(Path(cfg.output_dir))
    if latest is None:
        raise FileNotFoundError(
            f"resume_from_checkpoint=True but {cfg.output_dir} holds no complete checkpoint "
            f"(a folder epoch_N or step_N with {RECIPE_STATE_FILE}): start without resume_from_checkpoint"
        )
    return latest


@dataclass
class RunData:
    tokenizer: Any
    dataset: Any
    dataloader: Any
    sampler: Any
    val_dataloader: Optional[Any]


def load_data(cfg: FinetuneConfig, world: World, seed: int) -> RunData:
    """The tokenizer, the data set (every row tokenized and checked now, before the model is built: a bad row
    is one error line, not minutes later) and this rank's loaders; prints the data summary."""
    tokenizer = config.instantiate(cfg.tokenizer)
    dataset = config.instantiate(cfg.dataset, tokenizer)
    dataset_val = config.instantiate(cfg.dataset_val, tokenizer) if cfg.dataset_val else None
    loader_args = dict(batch_size=cfg.batch_size, seed=seed, rank=world.rank, world_size=world.size,
                       pin_memory=world.device.type == "cuda")
    dataloader, sampler = build_dataloader(dataset, shuffle=cfg.shuffle, collate_fn=collate_for(dataset, tokenizer.pad_id),
                                           **loader_args)
    # Every held-out sample counts (ranks pad with repeats to equal shares). Its own collator: packed training
    # data may be validated on unpacked samples.
    val_dataloader = build_dataloader(dataset_val, shuffle=False, drop_last=False,
                                      collate_fn=collate_for(dataset_val, tokenizer.pad_id), **loader_args)[0] if dataset_val else None
    if hasattr(dataset, "summary"):  # samples, tokens, what was cut, padding or packing efficiency
        world.print(dataset.summary(cfg.batch_size))
    return RunData(tokenizer, dataset, dataloader, sampler, val_dataloader)


def build_model(cfg: FinetuneConfig, world: World, start: RunStart, data: RunData,
                adapter: Optional[dict] = None) -> torch.nn.Module:
    """The model component from the checkpoint in the run's dtype (see `build_model_from_checkpoint`), with activation
    checkpointing and per-layer compile (`compile: true`) applied, placed by `world`; LoRA adapters from
    `adapter`, else fresh from the run's seed. Every parameter is left trainable. Checks the tokenizer fits it
    and prints the memory it takes."""

    def prepare(model: torch.nn.Module) -> None:
        if cfg.enable_activation_checkpointing:
            apply_activation_checkpointing(model, (TransformerDecoderLayer,))
        if cfg.compile is True:  # "auto" is decided once the run's length is known (prepare_training)
            compile_model(model, (TransformerDecoderLayer,), device=world.device)

    dtype = start.dtype
    model = build_model_from_checkpoint(
        cfg.model, start.checkpointer, device=world.device, dtype=dtype, adapter=adapter, adapter_seed=start.seed,
        nf4_cache=_nf4_cache(cfg, world, start.checkpointer, dtype), prepare=prepare, place=world.place,
    )  # fmt: skip
    _report_model_ready(cfg, world, model, data.tokenizer, dtype)
    return model


def train_only_adapters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """Freezes every parameter but the LoRA adapters'; returns the adapters' (what the optimizer steps)."""
    adapters = get_adapter_params(model)
    set_trainable_params(model, adapters)
    return list(adapters.values())


def _nf4_cache(cfg: FinetuneConfig, world: World, checkpointer: Any, dtype: torch.dtype) -> Optional[Path]:
    """With `nf4_cache_dir` (one device), the cache file of this checkpoint, model config and dtype."""
    if cfg.nf4_cache_dir is None or world.size > 1:
        return None
    key = {"model": OmegaConf.to_container(cfg.model, resolve=True), "dtype": str(dtype)}
    return nf4_cache_path(cfg.nf4_cache_dir, checkpointer.weight_files(), key)


def _report_model_ready(cfg: FinetuneConfig, world: World, model: torch.nn.Module, tokenizer: Any, dtype: torch.dtype) -> None:
    """Refuses a tokenizer bigger than the model's embedding; prints the memory after loading and starts the
    peak counters afresh (CUDA: the logged peaks are training's, not loading's)."""
    vocab = model.tok_embeddings.num_embeddings
    if tokenizer.vocab_size > vocab:
        raise ValueError(
            f"tokenizer {cfg.tokenizer.get('path') or cfg.tokenizer.get('checkpoint_dir')} has {tokenizer.vocab_size} "
            f"tokens but the model's embedding has {vocab}: use the tokenizer that belongs to the checkpoint"
        )
    world.print(f"Model ready on {world.device} in {dtype}. Memory: {format_memory_stats(get_memory_stats(world.device))}")
    reset_peak_memory_stats(world.device)


def estimate_run_memory(cfg: FinetuneConfig, world: World, dataset: Any):
    """`tune estimate` for this run (one rank's share when sharded), batches as long as the longest of (up to)
    the first 512 samples; printed, and returned to set beside the peak. None with `log_memory_estimate: false`.
    Called with the data loaded and the model built: the resident set now, less the weights, is the runtime's.
    A preference loss in `cfg` makes each sample two batch rows (the estimate reads it from the config)."""
    if not cfg.log_memory_estimate:
        return None
    from torchtune_lite.training.memory_estimate import estimate_memory, row_length, run_batch_shapes

    as_cfg = config.as_config(cfg)
    if cfg.dataset.get("packed", False) or cfg.dataset.get("streaming", False):
        # packed batches are always max_seq_len long; a stream's longest is unknown: assume it
        seq_len, shapes = None, 1.0
    else:
        lengths = [row_length(dataset[i]) for i in range(min(len(dataset), 512))]
        seq_len, shapes = max(lengths), run_batch_shapes(as_cfg, lengths, len(dataset), world.size)
    estimate = estimate_memory(as_cfg, seq_len=seq_len, resident_with_model=psutil.Process().memory_info().rss,
                               world_size=world.size, batch_shapes=shapes)
    world.print(estimate.table())
    return estimate


@dataclass
class Training:
    """What trains the model: optimizer, schedule, loss (compiled with the model when compile is on), where
    training stands, the metric logger, and the loop that runs it all."""

    optimizer: torch.optim.Optimizer
    lr_scheduler: Optional[Any]
    loss_fn: torch.nn.Module
    compiled: bool
    progress: Progress
    metric_logger: MetricLogger
    memory_estimate: Optional[Any]  # set beside the peak when training ends
    loop: Optional[TrainLoop] = None


def prepare_training(cfg: FinetuneConfig, world: World, model: torch.nn.Module, params: list[torch.nn.Parameter],
                     data: RunData, start: RunStart, save_checkpoint: Callable[[Progress, bool], None],
                     objective: Optional[Any] = None) -> Training:
    """The memory estimate, compile (`auto`: for a run long enough to repay it), the optimizer over `params`,
    the LR schedule, the loss, the metric logger, a resumed run's progress, optimizer, schedule and RNG state,
    and the shared loop over `data` (its settings read from `cfg`), which calls
    `save_checkpoint(progress, end_of_epoch)`.

    `objective` replaces the token loss (preference tuning): called like the loop's forward, it logs its own
    metrics through `pop_metrics(world_size)`, holds its loss as `loss` and compiles its losses with `compile()`."""
    memory_estimate = estimate_run_memory(cfg, world, data.dataset)
    total_steps = cfg.epochs * cfg.steps_per_epoch(batches_per_epoch(data.dataloader))
    compiled = cfg.compile is True
    if cfg.compile == "auto":
        compiled = resolve_compile(cfg.compile, total_steps, world.device, start.dtype)
        world.print(f"compile=auto: {'on' if compiled else 'off'} for {total_steps} steps in {start.dtype} on {world.device.type}")
        if compiled:  # compilation is lazy: compiling the placed model here is the same as at build
            compile_model(model, (TransformerDecoderLayer,), device=world.device)
    # Logs start only once the checkpoint and data have proven readable: bad input leaves nothing behind.
    metric_logger = config.instantiate(cfg.metric_logger) if cfg.metric_logger else StdoutLogger()
    if world.is_rank_zero:
        metric_logger.log_config(config.as_config(cfg))
    optimizer = config.instantiate(cfg.optimizer, params)
    lr_scheduler = config.instantiate(cfg.lr_scheduler, optimizer, num_training_steps=total_steps) if cfg.lr_scheduler else None
    if objective is not None:
        loss_fn = objective.loss
    else:
        loss_fn = config.instantiate(cfg.loss) if cfg.loss else ChunkedCrossEntropyLoss()
    if compiled:
        objective.compile() if objective is not None else compile_loss(loss_fn)
    training = Training(optimizer, lr_scheduler, loss_fn, compiled, Progress(), metric_logger, memory_estimate)
    state = start.checkpoint.get("recipe_state")
    if state is not None:
        training.progress.load_state_dict(state["progress"])
        load_optimizer_state(model, optimizer, state["optimizer"])
        if lr_scheduler is not None and state.get("lr_scheduler") is not None:
            lr_scheduler.load_state_dict(state["lr_scheduler"])
        set_rng_state(state["rng"])
        world.print(f"Resuming from {start.resume_dir} at epoch_{training.progress.epoch}, step {training.progress.global_step}")
    training.loop = TrainLoop(
        model=model, loss_fn=training.loss_fn, optimizer=optimizer, lr_scheduler=lr_scheduler,
        dataloader=data.dataloader, sampler=data.sampler, trainable_params=params, device=world.device, settings=cfg,
        metric_logger=metric_logger, save_checkpoint=save_checkpoint, progress=training.progress,
        is_rank_zero=world.is_rank_zero, world_size=world.size, val_dataloader=data.val_dataloader,
        after_first_step=world.after_first_step, forward=objective,
        extra_metrics=functools.partial(objective.pop_metrics, world.size) if objective is not None else dict,
    )  # fmt: skip
    return training


# ---------------------------------------------------------------------------------------------- train
def run_training(world: World, training: Training) -> None:
    """Runs the training loop to the end, then reports the compile time and the peak memory (against the estimate;
    in a process group also each rank's own)."""
    loop = training.loop
    loop.run()
    seconds = compile_seconds(loop.step_seconds) if training.compiled else None
    if seconds is not None:
        world.print(f"torch.compile: the first step took {loop.step_seconds[0]:.1f} s, about {seconds:.1f} s of it compiling")
        if world.is_rank_zero:
            training.metric_logger.log_dict({"compile_seconds": seconds}, step=training.progress.global_step)
    peak = get_memory_stats(world.device)
    world.print(f"Training done. Peak memory: {format_memory_stats(peak)}")
    if training.memory_estimate is not None:
        world.print(training.memory_estimate.compare(peak))
    if world.process_group:
        print(f"rank {world.rank}: peak memory {format_memory_stats(get_memory_stats(world.device))}", flush=True)


# ---------------------------------------------------------------------------------------------- save
def model_payload(model: torch.nn.Module, world: World) -> dict:
    """A full fine-tune's checkpoint contents: every parameter whole (see `World.gather_parameters`)."""
    return {"model": world.gather_parameters(model)}


def adapter_payload(model: torch.nn.Module, world: World, adapter_only: bool) -> dict:
    """A LoRA checkpoint's contents: the parameters as they are (NF4 stays NF4: the checkpointer dequantizes and
    merges the adapters one tensor at a time while writing, so saving never holds a high-precision model copy),
    or the adapter alone, with the adapter config the layers carry."""
    state = world.gather_parameters(model)
    adapter_config = model_adapter_config(model)
    if adapter_only:
        return {"adapter": get_adapter_state_dict(state), "adapter_config": adapter_config}
    return {"model": state, "adapter_config": adapter_config}


def write_checkpoint(world: World, start: RunStart, data: RunData, model: torch.nn.Module, training: Training,
                     params: list[torch.nn.Parameter], payload: Callable[[], dict], progress: Progress, end_of_epoch: bool) -> None:
    """Writes `epoch_N` (end of an epoch) or `step_N` with `payload()` (called on every rank: gathering is a
    collective), the prompt layout and the recipe state; the recipe state goes last, so a checkpoint without it
    is incomplete and never resumed from. Refuses to save weights that became NaN or inf."""
    # A finite loss can still come with an update that overflowed the weights (e.g. a huge learning rate):
    # saving them would make the newest checkpoint unusable. The ranks agree on the answer.
    local = (p.to_local() if hasattr(p, "to_local") else p for p in params)
    if not world.all_agree(all(bool(torch.isfinite(t).all()) for t in local)):
        raise NonFiniteLossError(
            f"the weights became NaN or inf at step {progress.global_step} (epoch_{progress.epoch}); not saving "
            "them, the last good checkpoint stays: lower the learning rate, use dtype=fp32, or check the data"
        )
    contents = payload()
    contents["tokenizer_config"] = template_config(data.tokenizer, getattr(data.dataset, "prompt_format", None))
    contents["recipe_state"] = {
        "progress": progress.state_dict(),
        "seed": start.seed,
        "optimizer": optimizer_state_for_checkpoint(model, training.optimizer),
        "lr_scheduler": training.lr_scheduler.state_dict() if training.lr_scheduler else None,
        "rng": get_rng_state(),
    }
    if world.is_rank_zero:
        # `progress.epoch` already counts the finished epoch, so the first epoch saves to epoch_0.
        step = None if end_of_epoch else progress.global_step
        path = start.checkpointer.save_checkpoint(contents, epoch=progress.epoch - int(end_of_epoch), step=step)
        world.print(f"Checkpoint saved to {path}")
    world.after_save()


# ---------------------------------------------------------------------------------------------- run
def run_recipe(recipe: Any) -> None:
    """`recipe.setup()`, `recipe.train()`, then always `recipe.cleanup()`; a signal, a non-finite loss or a
    peer rank's failure ends the process with its exit code and one line instead of a traceback."""
    world: World = recipe.world
    try:
        recipe.setup()
        recipe.train()
    except TrainingInterrupted as stop:
        world.print(f"Stopped by signal after step {recipe.training.progress.global_step}; resume with resume_from_checkpoint=True")
        sys.exit(stop.exit_code)
    except NonFiniteLossError as err:
        world.print(f"error: {err}", error=True)
        sys.exit(1)
    except RuntimeError as err:  # torch.distributed.DistBackendError (NCCL) is a RuntimeError too
        message = peer_failure_message(world.rank, err) if world.size > 1 else None
        if message is None:
            raise
        print(message, file=sys.stderr, flush=True)
        sys.exit(1)
    finally:
        recipe.cleanup()


def close_run(world: World, training: Optional[Training]) -> None:
    """Closes the metric logger (if the run got that far) and leaves the process group."""
    if training is not None:
        training.metric_logger.close()
    world.close()
