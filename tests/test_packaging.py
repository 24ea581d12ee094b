"""What a plain (non-editable) `pip install` ships: pyproject lists its packages by hand (recipes/ and configs/
are mapped in from the repo root), so every package folder must be listed, and every kernel source matched
by package data, or an installed copy fails at import or falls back without its kernels."""

import tomllib
from fnmatch import fnmatch
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUPTOOLS = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_folder_is_listed():
    folders = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "torchtune_lite").rglob("__init__.py")}
    missing = sorted(folders - set(SETUPTOOLS["packages"]))
    assert not missing, f"add {missing} to [tool.setuptools] packages in pyproject.toml"


def test_every_kernel_source_is_package_data():
    for source in (path for pattern in ("*.c", "*.h", "*.cpp") for path in (REPO / "torchtune_lite").rglob(pattern)):
        package = ".".join(source.parent.relative_to(REPO).parts)
        patterns = SETUPTOOLS["package-data"].get(package, [])
        assert any(fnmatch(source.name, pattern) for pattern in patterns), f"{source} is not shipped as package data"
