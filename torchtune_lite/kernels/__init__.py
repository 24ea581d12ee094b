"""Fused CPU kernels in plain C, built on first use (see `c_library`); each has a torch-ops fallback in its caller."""

from torchtune_lite.kernels.cross_entropy_rows import cross_entropy_rows_
from torchtune_lite.kernels.rms_norm import rms_norm_backward, rms_norm_forward

__all__ = ["cross_entropy_rows_", "rms_norm_backward", "rms_norm_forward"]
