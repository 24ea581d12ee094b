"""The story of a fine-tuning run, shared by every recipe.

`FinetuneRecipe` reads top to bottom: `setup` (output dir, logger, checkpoint, model, data, optimizer,
loss, resume state), `train` (the shared `TrainLoop`), `save_checkpoint`, `cleanup`. A recipe subclass
says only what is its own: how the model is built from the checkpoint, which parameters train, and
what a checkpoint holds. The distributed recipe also overrides how the model is placed on devices.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import psutil
import torch
from omegaconf import DictConfig, OmegaConf

from torchtune_lite import config
from torchtune_lite.config import Component
from torchtune_lite.data.saved_template import template_config
from torchtune_lite.modules.transformer import TransformerDecoderLayer
from torchtune_lite.training.activations import apply_activation_checkpointing
from torchtune_lite.training.config_checks import check_finetune_config
from torchtune_lite.training.compile import compile_loss, compile_model, compile_seconds, resolve_compile
from torchtune_lite.training.data_loading import batches_per_epoch, build_dataloader, collate_for
from torchtune_lite.training.device import get_device
from torchtune_lite.training.distributed import broadcast_object, peer_failure_message
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.memory import format_memory_stats, get_memory_stats, reset_peak_memory_stats
from torchtune_lite.training.optimizer_state import load_optimizer_state, optimizer_state_for_checkpoint
from torchtune_lite.training.metric_logging import StdoutLogger, scrub_secrets
from torchtune_lite.training.output_dir import RECIPE_STATE_FILE, find_latest_checkpoint, prepare_output_dir
from torchtune_lite.training.precision import enable_tf32_for_fp32, get_dtype
from torchtune_lite.training.progress_bars import write_above_bar
from torchtune_lite.training.seed import get_rng_state, seed_for_run, set_rng_state, set_seed
from torchtune_lite.quantization.nf4_cache import nf4_cache_path
from torchtune_lite.training.model_from_checkpoint import build_model_from_checkpoint
from torchtune_lite.training.weight_loading import allocate_empty
from torchtune_lite.training.train_loop import LoopSettings, NonFiniteLossError, Progress, TrainingInterrupted, TrainLoop


@dataclass
class FinetuneConfig:
    """The settings every fine-tuning recipe reads; `tune validate` rejects any other top-level key."""

    model: Component
    tokenizer: Component
    checkpointer: Component
    dataset: Component
    optimizer: Component
    output_dir: str
    loss: Optional[Component] = None
    dataset_val: Optional[Component] = None  # held-out data: `val_loss` is logged beside `loss`
    run_val_every_n_steps: Optional[int] = None  # None: validate once, after the last step
    max_val_batches: Optional[int] = None
    lr_scheduler: Optional[Component] = None
    metric_logger: Optional[Component] = None
    seed: Optional[int] = None
    shuffle: bool = True
    batch_size: int = 2
    epochs: int = 1
    max_steps_per_epoch: Optional[int] = None
    gradient_accumulation_steps: int = 1
    clip_grad_norm: Optional[float] = None
    save_every_n_steps: Optional[int] = None
    resume_from_checkpoint: bool = False
    overwrite_output_dir: bool = False
    compile: Union[bool, Literal["auto"]] = False  # auto: on for runs long enough to repay compile time
    device: str = "auto"
    dtype: str = "auto"
    enable_activation_checkpointing: bool = False
    log_every_n_steps: int = 1
    log_peak_memory_stats: bool = True
    log_memory_estimate: bool = True  # print `tune estimate`'s breakdown at setup and set it beside the peak
    generate_after_training: Optional[str] = None
    max_new_tokens: int = 48
    nf4_cache_dir: Optional[str] = None  # keep the quantized base here and reuse it on the next run (one device)

    @staticmethod
    def check_values(cfg: DictConfig) -> None:
        """Ranges, files and dependencies, checked by `tune validate` and at the start of the run alike."""
        check_finetune_config(cfg)


class FinetuneRecipe:
    """Base of the fine-tuning recipes. Subclasses implement `setup_model` and `trainable_params`."""

    rank: int = 0
    world_size: int = 1
    compiled: bool = False  # compile applied (compile=True, or compile=auto for a long enough run)

    def __init__(self, cfg: DictConfig) -> None:
        self.cfg = cfg
        self.device = get_device(cfg.device)
        self.dtype = get_dtype(cfg.dtype, self.device)
        enable_tf32_for_fp32(self.device, self.dtype)
        self.output_dir = Path(cfg.output_dir)

    @property
    def is_rank_zero(self) -> bool:
        return self.rank == 0

    # ------------------------------------------------------------------ the story
    def run(self) -> None:
        """setup, train, cleanup; turns the expected ways a run ends early into exit codes."""
        try:
            self.setup()
            self.train()
        except TrainingInterrupted as stop:
            self.print(f"Stopped by signal after step {self.progress.global_step}; resume with resume_from_checkpoint=True")
            sys.exit(stop.exit_code)
        except NonFiniteLossError as err:
            self.print(f"error: {err}", error=True)
            sys.exit(1)
        except RuntimeError as err:  # torch.distributed.DistBackendError (NCCL) is a RuntimeError too
            message = peer_failure_message(self.rank, err) if self.world_size > 1 else None
            if message is None:
                raise
            print(message, file=sys.stderr, flush=True)
            sys.exit(1)
        finally:
            self.cleanup()

    def setup(self) -> None:
        cfg = self.cfg
        if self.is_rank_zero:
            # First, so a checkpoint that a killed save had moved aside is back before we look for the latest.
            log_dir = cfg.metric_logger.get("log_dir") if cfg.metric_logger else None
            prepare_output_dir(self.output_dir, resume=cfg.resume_from_checkpoint, overwrite=cfg.overwrite_output_dir,
                               log_dir=Path(log_dir) if log_dir else None)
        resume_dir = broadcast_object(self._find_resume_dir() if self.is_rank_zero else None)

        self.checkpointer = self._build_checkpointer(resume_dir)
        # Model weights are streamed into the built model (see build_model), not loaded here.
        checkpoint = self.checkpointer.load_checkpoint(include_model=False)
        # Seeded only now: a resumed run keeps the seed it started with (its data order depends on it).
        self.seed = set_seed(seed_for_run(cfg.seed, checkpoint.get("recipe_state", {}).get("seed")))
        self.tokenizer = config.instantiate(cfg.tokenizer)
        # The data first: a bad row is one error line before minutes of model building are spent.
        self.dataset = config.instantiate(cfg.dataset, self.tokenizer)
        dataset_val = config.instantiate(cfg.dataset_val, self.tokenizer) if cfg.dataset_val else None

        self.model = self.setup_model(checkpoint)
        self._check_tokenizer_fits_model()
        self.print(f"Model ready on {self.device} in {self.dtype}. Memory: {format_memory_stats(get_memory_stats(self.device))}")
        reset_peak_memory_stats(self.device)  # CUDA: the logged peaks are training's, not loading's

        collate_fn = collate_for(self.dataset, self.tokenizer.pad_id)
        self.dataloader, self.sampler = build_dataloader(
            self.dataset,
            batch_size=cfg.batch_size,
            shuffle=cfg.shuffle,
            seed=self.seed,
            collate_fn=collate_fn,
            rank=self.rank,
            world_size=self.world_size,
            pin_memory=self.device.type == "cuda",
        )

        if hasattr(self.dataset, "summary"):  # samples, tokens, what was cut, padding or packing efficiency
            self.print(self.dataset.summary(cfg.batch_size))

        self.val_dataloader = None
        if dataset_val is not None:
            self.val_dataloader, _ = build_dataloader(
                dataset_val,
                batch_size=cfg.batch_size,
                shuffle=False,
                seed=self.seed,
                collate_fn=collate_fn,
                drop_last=False,  # every held-out sample counts (ranks pad with repeats to equal shares)
                rank=self.rank,
                world_size=self.world_size,
                pin_memory=self.device.type == "cuda",
            )

        # One rank's share in a sharded run (rank 0 prints it and sets it beside its own peak).
        self.memory_estimate = self._estimate_memory(psutil.Process().memory_info().rss) if cfg.log_memory_estimate else None

        # Logs start only once the checkpoint and data have proven readable: bad input leaves nothing behind.
        self.metric_logger = config.instantiate(cfg.metric_logger) if cfg.metric_logger else StdoutLogger()
        if self.is_rank_zero:
            self.metric_logger.log_config(cfg)

        self.optimizer = config.instantiate(cfg.optimizer, self.trainable_params())
        settings = LoopSettings(
            epochs=cfg.epochs,
            max_steps_per_epoch=cfg.max_steps_per_epoch,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            clip_grad_norm=cfg.clip_grad_norm,
            log_every_n_steps=cfg.log_every_n_steps,
            save_every_n_steps=cfg.save_every_n_steps,
            log_peak_memory_stats=cfg.log_peak_memory_stats,
            run_val_every_n_steps=cfg.run_val_every_n_steps,
            max_val_batches=cfg.max_val_batches,
        )
        self.lr_scheduler = None
        total_steps = cfg.epochs * settings.steps_per_epoch(batches_per_epoch(self.dataloader))
        if cfg.compile == "auto":
            self.compiled = resolve_compile(cfg.compile, total_steps, self.device)
            self.print(f"compile=auto: {'on' if self.compiled else 'off'} for {total_steps} steps")
            if self.compiled:  # compilation is lazy: compiling the placed model here is the same as at build
                compile_model(self.model, (TransformerDecoderLayer,), device=self.device)
        if cfg.lr_scheduler:
            self.lr_scheduler = config.instantiate(cfg.lr_scheduler, self.optimizer, num_training_steps=total_steps)
        self.loss_fn = config.instantiate(cfg.loss) if cfg.loss else ChunkedCrossEntropyLoss()
        if self.compiled:
            self.loss_fn = compile_loss(self.loss_fn)

        self.progress = Progress()
        if "recipe_state" in checkpoint:
            self._restore_recipe_state(checkpoint["recipe_state"])
            self.print(f"Resuming from {resume_dir} at epoch_{self.progress.epoch}, step {self.progress.global_step}")

        self.loop = TrainLoop(
            model=self.model,
            loss_fn=self.loss_fn,
            optimizer=self.optimizer,
            lr_scheduler=self.lr_scheduler,
            dataloader=self.dataloader,
            sampler=self.sampler,
            trainable_params=self.trainable_params(),
            device=self.device,
            settings=settings,
            metric_logger=self.metric_logger,
            save_checkpoint=self.save_checkpoint,
            progress=self.progress,
            is_rank_zero=self.is_rank_zero,
            world_size=self.world_size,
            val_dataloader=self.val_dataloader,
            after_first_step=self.after_first_step,
        )

    def train(self) -> None:
        self.loop.run()
        if self.compiled:
            self.report_compile_time(self.loop.step_seconds)
        peak = get_memory_stats(self.device)
        self.print(f"Training done. Peak memory: {format_memory_stats(peak)}")
        if self.memory_estimate is not None:
            self.print(self.memory_estimate.compare(peak))
        if self.cfg.generate_after_training:
            # Every rank generates: a sharded model's forward needs all of them (each gathers the layers'
            # weights in turn); greedy decoding on the same gathered weights picks the same tokens on every
            # rank, so they stop together. Rank 0 prints.
            self.show_generation(self.cfg.generate_after_training)

    def report_compile_time(self, step_seconds: list[float]) -> None:
        seconds = compile_seconds(step_seconds)
        if seconds is None:
            return
        self.print(f"torch.compile: the first step took {step_seconds[0]:.1f} s, about {seconds:.1f} s of it compiling")
        if self.is_rank_zero:
            self.metric_logger.log_dict({"compile_seconds": seconds}, step=self.progress.global_step)

    def save_checkpoint(self, progress: Progress, end_of_epoch: bool) -> None:
        """Writes `epoch_N` (end of an epoch) or `step_N`; the recipe state goes last, so a
        checkpoint without it is incomplete and never resumed from."""
        self._check_trainable_params_finite(progress)
        payload = self.checkpoint_payload()
        payload["tokenizer_config"] = template_config(self.tokenizer, getattr(self.dataset, "prompt_format", None))
        payload["recipe_state"] = {
            "progress": progress.state_dict(),
            "seed": self.seed,
            "optimizer": optimizer_state_for_checkpoint(self.model, self.optimizer),
            "lr_scheduler": self.lr_scheduler.state_dict() if self.lr_scheduler else None,
            "rng": get_rng_state(),
        }
        if self.is_rank_zero:
            # `progress.epoch` already counts the finished epoch, so the first epoch saves to epoch_0.
            step = None if end_of_epoch else progress.global_step
            path = self.checkpointer.save_checkpoint(payload, epoch=progress.epoch - int(end_of_epoch), step=step)
            self.print(f"Checkpoint saved to {path}")
        self.after_save()

    def _check_trainable_params_finite(self, progress: Progress) -> None:
        # A finite loss can still come with an update that overflowed the weights (e.g. a huge learning
        # rate): saving them would make the newest checkpoint unusable. The ranks agree on the answer.
        finite = torch.ones((), device=self.device)
        for param in self.trainable_params():
            local = param.to_local() if hasattr(param, "to_local") else param
            if not bool(torch.isfinite(local).all()):
                finite.zero_()
                break
        if self.world_size > 1:
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if not bool(finite):
            raise NonFiniteLossError(
                f"the weights became NaN or inf at step {progress.global_step} (epoch_{progress.epoch}); not saving "
                "them, the last good checkpoint stays: lower the learning rate, use dtype=fp32, or check the data"
            )

    def cleanup(self) -> None:
        logger = getattr(self, "metric_logger", None)
        if logger is not None:
            logger.close()

    # ------------------------------------------------------------------ what subclasses say
    def setup_model(self, checkpoint: dict) -> torch.nn.Module:
        raise NotImplementedError

    def trainable_params(self) -> list[torch.nn.Parameter]:
        raise NotImplementedError

    def checkpoint_payload(self) -> dict:
        """What goes into a checkpoint besides the recipe state: by default the whole model."""
        return {"model": self.parameters_for_checkpoint()}

    def parameters_for_checkpoint(self) -> dict[str, torch.Tensor]:
        """Every parameter, whole, by name, as stored (NF4 stays NF4: the checkpointer converts one tensor
        at a time while writing). The distributed recipe gathers them to rank 0 instead."""
        return {name: param.detach() for name, param in self.model.named_parameters()}

    def place_model(self, model: torch.nn.Module) -> None:
        """Gives the meta-built model (empty) storage where it trains; the distributed recipe shards it instead."""
        allocate_empty(model, self.device)

    def after_save(self) -> None:
        """Runs on every rank once rank 0 has written a checkpoint."""

    def after_first_step(self) -> None:
        """Runs once this process's first optimizer step (the one that compiles) is done."""

    # ------------------------------------------------------------------ mechanics
    def build_model(self, adapter: Optional[dict] = None) -> torch.nn.Module:
        """The model component from the checkpoint in the run's dtype (see `build_model_from_checkpoint`), with
        activation checkpointing and per-layer compile applied as configured, placed by `place_model`;
        LoRA adapters from `adapter` (a resumed run's) or fresh from the run's seed."""
        self.compiled = self.cfg.compile is True  # "auto" is decided once the run's length is known
        return build_model_from_checkpoint(
            self.cfg.model, self.checkpointer, device=self.device, dtype=self.dtype, adapter=adapter,
            adapter_seed=self.seed, nf4_cache=self._nf4_cache(), prepare=self._prepare_model, place=self.place_model,
        )  # fmt: skip

    def _prepare_model(self, model: torch.nn.Module) -> None:
        if self.cfg.enable_activation_checkpointing:
            apply_activation_checkpointing(model, (TransformerDecoderLayer,))
        if self.compiled:
            compile_model(model, (TransformerDecoderLayer,), device=self.device)

    def print(self, message: str, error: bool = False) -> None:
        if self.is_rank_zero:
            if error:
                print(message, file=sys.stderr, flush=True)
            else:
                write_above_bar(message)  # a checkpoint saved mid-run is announced above the training bar

    def _nf4_cache(self) -> Optional[Path]:
        """With `nf4_cache_dir` (one device), the cache file of this checkpoint, model config and dtype."""
        if self.cfg.nf4_cache_dir is None or self.world_size > 1:
            return None
        key = {"model": OmegaConf.to_container(self.cfg.model, resolve=True), "dtype": str(self.dtype)}
        return nf4_cache_path(self.cfg.nf4_cache_dir, self.checkpointer.weight_files(), key)

    def _find_resume_dir(self) -> Optional[Path]:
        if not self.cfg.resume_from_checkpoint:
            return None
        latest = find_latest_checkpoint(self.output_dir)
        if latest is None:
            raise FileNotFoundError(
                f"resume_from_checkpoint=True but {self.output_dir} holds no complete checkpoint "
                f"(a folder epoch_N or step_N with {RECIPE_STATE_FILE}): start without resume_from_checkpoint"
            )
        return latest

    def _build_checkpointer(self, resume_dir: Optional[Path]):
        if resume_dir is None:
            return config.instantiate(self.cfg.checkpointer)
        return config.instantiate(self.cfg.checkpointer, **self.resume_checkpoint_args(resume_dir))

    def resume_checkpoint_args(self, resume_dir: Path) -> dict:
        """Where to read a resumed run from: by default the whole model from the last checkpoint."""
        return {"checkpoint_dir": str(resume_dir), "checkpoint_files": None,
                "recipe_checkpoint": str(resume_dir / RECIPE_STATE_FILE)}

    def _restore_recipe_state(self, state: dict) -> None:
        self.progress.load_state_dict(state["progress"])
        load_optimizer_state(self.model, self.optimizer, state["optimizer"])
        if self.lr_scheduler is not None and state.get("lr_scheduler") is not None:
            self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        set_rng_state(state["rng"])

    def _estimate_memory(self, resident_rss: int, lengths: Optional[list[int]] = None, rows_per_sample: int = 1):
        """`tune estimate` for this run, batches as long as the longest of (up to) the first 512 samples.

        `resident_rss`: the resident set now, data loaded and model built (the estimate subtracts the weights to get
        the runtime's share). `lengths`: each sample's padded row length (default: its `tokens`); `rows_per_sample`: rows a sample
        puts in a batch (2 for a preference pair's chosen and rejected sequences)."""
        from torchtune_lite.training.memory_estimate import estimate_memory, run_batch_shapes

        fixed_length = getattr(self.cfg.dataset, "packed", False) or getattr(self.cfg.dataset, "streaming", False)
        if fixed_length:  # packed batches are always max_seq_len long; a stream's longest is unknown: assume it
            seq_len, shapes = None, 1.0
        else:
            if lengths is None:
                lengths = [len(self.dataset[i]["tokens"]) for i in range(min(len(self.dataset), 512))]
            seq_len, shapes = max(lengths), run_batch_shapes(self.cfg, lengths, len(self.dataset), self.world_size)
        estimate = estimate_memory(self.cfg, seq_len=seq_len, resident_with_model=resident_rss, world_size=self.world_size,
                                   batch_shapes=shapes, rows_per_sample=rows_per_sample)
        self.print(estimate.table())
        return estimate

    def _check_tokenizer_fits_model(self) -> None:
        vocab = self.model.tok_embeddings.num_embeddings
        if self.tokenizer.vocab_size > vocab:
            raise ValueError(
                f"tokenizer {self.cfg.tokenizer.get('path') or self.cfg.tokenizer.get('checkpoint_dir')} has "
                f"{self.tokenizer.vocab_size} tokens but the model's "
                f"embedding has {vocab}: use the tokenizer that belongs to the checkpoint"
            )

    def show_generation(self, prompt: str) -> None:
        from torchtune_lite.generation import generate_text

        text = generate_text(self.model, self.tokenizer, prompt, max_new_tokens=self.cfg.max_new_tokens,
                             instruct_template=getattr(self.dataset, "prompt_format", "alpaca") == "alpaca")
        self.print(f"\nPrompt: {scrub_secrets(prompt)}\nGeneration: {scrub_secrets(text)}\n")
