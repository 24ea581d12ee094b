import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def toy_recipe() -> Path:
    return HERE / "toy_recipe.py"


@pytest.fixture
def toy_config() -> Path:
    return HERE / "toy.yaml"


@pytest.fixture
def tune(tmp_path):
    """Runs the real `tune` entry point in a subprocess (cwd = tmp_path); returns the CompletedProcess."""

    def run(*args: str, env: dict | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
        full_env.pop("TUNE_TRACEBACK", None)
        return subprocess.run(
            [sys.executable, "-m", "torchtune_lite.cli.tune", *map(str, args)],
            cwd=tmp_path, env=full_env, capture_output=True, text=True, timeout=timeout,
        )

    return run
