"""Training mechanics shared by every recipe: loggers, memory, precision, schedules, the loop (checkpointers: `torchtune_lite.checkpointing`)."""

from torchtune_lite.training.activations import apply_activation_checkpointing
from torchtune_lite.training.compile import compile_loss, compile_model
from torchtune_lite.training.data_loading import build_dataloader, epoch_batches
from torchtune_lite.training.device import get_device
from torchtune_lite.training.gradients import clip_grad_norm_, scale_grads
from torchtune_lite.training.loss import ChunkedCrossEntropyLoss
from torchtune_lite.training.preference_loss import PreferenceLoss
from torchtune_lite.training.lr_schedulers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup
from torchtune_lite.training.memory import format_memory_stats, get_memory_stats, reset_peak_memory_stats
from torchtune_lite.training.metric_logging import DiskLogger, StdoutLogger, TensorBoardLogger, WandBLogger
from torchtune_lite.training.precision import get_dtype, set_default_dtype
from torchtune_lite.training.seed import get_rng_state, set_rng_state, set_seed

__all__ = [
    "ChunkedCrossEntropyLoss",
    "PreferenceLoss",
    "DiskLogger",
    "StdoutLogger",
    "TensorBoardLogger",
    "WandBLogger",
    "apply_activation_checkpointing",
    "build_dataloader",
    "clip_grad_norm_",
    "compile_loss",
    "compile_model",
    "epoch_batches",
    "format_memory_stats",
    "get_constant_schedule_with_warmup",
    "get_cosine_schedule_with_warmup",
    "get_device",
    "get_dtype",
    "get_memory_stats",
    "get_rng_state",
    "reset_peak_memory_stats",
    "scale_grads",
    "set_default_dtype",
    "set_rng_state",
    "set_seed",
]
