"""The NF4 C++ kernels' source is a real file that an installed (non-editable) package carries."""

import tomllib
from fnmatch import fnmatch
from pathlib import Path

from torchtune_lite.quantization import nf4_cpp

REPO = Path(__file__).resolve().parents[3]


def test_cpp_source_is_a_file_beside_the_builder_and_shipped_as_package_data():
    source = Path(nf4_cpp.__file__).with_name("nf4_kernels.cpp")
    text = source.read_text()
    for function in ("quantize_blocks", "dequantize_blocks", "advise_huge_pages", "dequantize_path"):
        assert function in text, function  # every function the build exposes is defined in the file
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch(source.name, pattern) for pattern in package_data.get("torchtune_lite.quantization", []))
