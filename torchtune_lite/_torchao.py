"""Quiet import of torchao's NF4 pieces.

torchao tries to load CUDA/CUTLASS kernel libraries at import time and logs a warning for
each one that cannot load (always, on a CPU-only machine), and torch's pytree logs a
deprecation notice for one of its enums. Neither concerns NF4, so we silence those two
loggers for the duration of the import only.
"""

import logging

_NOISY_LOGGERS = ("torchao", "torch.utils._pytree")


def _import_quietly():
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    try:
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        from torchao.quantization import to_nf4
        from torchao.quantization.quantize_.workflows.nf4.nf4_tensor import (
            NF4Tensor,
            SubclassTensorArgs,
            linear_nf4,
        )
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)
    return to_nf4, NF4Tensor, SubclassTensorArgs, linear_nf4


to_nf4, NF4Tensor, SubclassTensorArgs, linear_nf4 = _import_quietly()

__all__ = ["to_nf4", "NF4Tensor", "SubclassTensorArgs", "linear_nf4"]
