"""The bundled tiny tokenizer and the bundled data, shared by the data set tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import pytest

from torchtune_lite.models.llama2._tokenizer import Llama2Tokenizer

ASSETS = Path(__file__).resolve().parents[3] / "torchtune_lite" / "assets" / "tiny"


@pytest.fixture(scope="session")
def assets() -> Path:
    return ASSETS


@pytest.fixture(scope="session")
def make_tokenizer() -> Callable[[Optional[int]], Llama2Tokenizer]:
    return lambda max_seq_len=None: Llama2Tokenizer(str(ASSETS / "tokenizer.model"), max_seq_len=max_seq_len)


@pytest.fixture(scope="session")
def tokenizer(make_tokenizer) -> Llama2Tokenizer:
    return make_tokenizer()


@pytest.fixture
def write_json(tmp_path) -> Callable[[str, object], str]:
    def write(name: str, rows) -> str:
        path = tmp_path / name
        path.write_text(json.dumps(rows), encoding="utf-8")
        return str(path)

    return write
