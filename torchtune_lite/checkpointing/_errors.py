"""Errors a user can cause with a checkpoint: each says which file or key is wrong and how to fix it."""


class CheckpointNotFoundError(FileNotFoundError):
    """A checkpoint folder or file that the config names does not exist."""


class CheckpointFormatError(ValueError):
    """A checkpoint file is truncated, corrupt, or holds keys/shapes that do not fit the model."""


class UnsafeCheckpointError(CheckpointFormatError):
    """A pickle would need to run code to load; we refuse it instead of executing it."""


class CheckpointWriteError(OSError):
    """Writing a checkpoint failed (disk full, permissions); the previous checkpoint is left as it was."""
